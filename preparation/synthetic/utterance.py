"""One synthetic utterance end to end: eSpeak speech -> 16 kHz waveform, phoneme timeline ->
articulator trajectory -> rendered 25 fps mouth video, then the ``.mp4``/``.wav``/``.txt``.

Everything random is drawn from generators seeded with ``(corpus seed, utterance index)``,
so an utterance does not depend on which process made it or in what order.
"""

import functools
import os
import random
from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

import numpy as np
import torch

from preparation.synthetic import grammar, visemes
from preparation.synthetic.espeak import ESpeak, ESpeakServer
from preparation.synthetic.render import render
from preparation.synthetic.speakers import speaker

FPS, SR = 25, 16000
SAMPLES_PER_FRAME = SR // FPS  # 640


@dataclass(frozen=True)
class Job:
    """What to make: utterance ``index`` of the corpus, spoken by speaker ``speaker_id``."""

    index: int
    speaker_id: int
    words: Tuple[str, ...]
    seed: int
    mp4_path: str


def _rngs(seed: int, index: int) -> Tuple[random.Random, torch.Generator]:
    """Independent per-utterance generators derived from ``(seed, index)``."""
    state = np.random.SeedSequence([seed, index, 0x5EED]).generate_state(2)
    return random.Random(int(state[0])), torch.Generator().manual_seed(int(state[1]))


Engine = Union[ESpeak, ESpeakServer]


@functools.lru_cache(maxsize=4)
def _resampler(orig: int, new: int):
    """Cached windowed-sinc resampler (the filter is built once per rate pair)."""
    import torchaudio.transforms as AT

    return AT.Resample(orig, new)


def synthesize(job: Job, engine: Engine) -> Dict[str, object]:
    """Make one utterance in memory.

    Returns:
        dict with ``audio`` float ``(T * 640,)`` in [-1, 1] at 16 kHz, ``frames`` uint8
        ``(T, 96, 96)``, ``phonemes`` list of ``(mnemonic, start_s)`` and ``transcript``.
    """
    spk = speaker(job.speaker_id)
    rng, gen = _rngs(job.seed, job.index)
    speech = engine.synthesize(grammar.spoken_text(job.words), spk.voice)
    native = speech.sample_rate
    wav = torch.from_numpy(speech.samples.astype(np.float32) / 32768.0)
    # silence before and after the sentence, as in GRID recordings
    lead = int(native * rng.uniform(0.15, 0.4))
    tail = int(native * rng.uniform(0.1, 0.3))
    wav = torch.cat([torch.zeros(lead), wav, torch.zeros(tail)])
    with torch.no_grad():
        audio = _resampler(native, SR)(wav)  # windowed-sinc low-pass resampling
    n_frames = max(1, int(round(audio.numel() / SAMPLES_PER_FRAME)))
    target = n_frames * SAMPLES_PER_FRAME  # differs from the resampled length by < 1 frame
    audio = audio[:target] if audio.numel() >= target else torch.cat([audio, torch.zeros(target - audio.numel())])
    peak = audio.abs().max().clamp_min(1e-6)
    audio = audio * (rng.uniform(0.35, 0.8) / peak)
    audio = audio + rng.uniform(3e-4, 1.5e-3) * torch.randn(target, generator=gen)  # recording noise floor

    phonemes: List[Tuple[str, float]] = [("_", 0.0)]
    phonemes += [(name, (lead + sample) / native) for name, sample in speech.phonemes]
    params = visemes.trajectory(phonemes, target / SR, n_frames, rng, fps=FPS,
                                articulation=spk.face.articulation)
    frames = render(params, spk.face, gen, fps=FPS)
    return {"audio": audio.clamp(-1.0, 1.0), "frames": frames, "phonemes": phonemes,
            "transcript": grammar.transcript(job.words)}


def make(job: Job, engine: Engine) -> int:
    """Make utterance ``job`` and write ``<utt>.mp4``, ``.wav`` and ``.txt``; returns its number
    of video frames."""
    from datamodule.media import write_video, write_wav

    sample = synthesize(job, engine)
    os.makedirs(os.path.dirname(job.mp4_path), exist_ok=True)
    write_video(job.mp4_path, sample["frames"], fps=FPS)
    write_wav(job.mp4_path[:-4] + ".wav", sample["audio"], sample_rate=SR)
    with open(job.mp4_path[:-4] + ".txt", "w", encoding="utf8") as handle:
        handle.write(sample["transcript"] + "\n")
    return int(sample["frames"].size(0))


_ENGINE = None


def init_worker() -> None:
    """Pool initializer: one torch thread per process and this process's eSpeak helper."""
    global _ENGINE
    torch.set_num_threads(1)
    _ENGINE = ESpeakServer()


def run_job(job: Job) -> int:
    """Pool task: :func:`make` with the process's engine; returns the number of frames."""
    return make(job, _ENGINE)
