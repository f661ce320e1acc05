"""Transcribing recordings of any length and format (``transcribe.py``): media decoding
(:mod:`.media`), segmentation (:mod:`.segments`), batched decoding of the segments
(:mod:`.decode`) and the txt / json / srt / vtt outputs (:mod:`.writers`)."""
