"""Building blocks of the generated GRID-style audio-visual corpus (``preparation.synthetic_av``).

- :mod:`.grammar`: the GRID sentence grammar and sentence sampling.
- :mod:`.espeak`: eSpeak NG through ctypes (int16 speech at 22050 Hz + phoneme timeline).
- :mod:`.speakers`: speaker id -> voice, prosody and face appearance.
- :mod:`.visemes`: phonemes -> viseme targets -> smooth articulator trajectories at 25 fps.
- :mod:`.render`: vectorised torch renderer of the 96x96 grayscale mouth region.
- :mod:`.utterance`: one utterance end to end (speech, video, files).
- :mod:`.babble`: babble noise mixed from training utterances.
"""
