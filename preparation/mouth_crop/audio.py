"""Audio of a clip as 16 kHz mono: PyAV decoding, channel averaging, band-limited resampling."""

import os
from typing import Optional, Tuple

import numpy as np
import torch

#: Kaiser-windowed sinc resampling with a long filter: the pass band reaches ~95 % of the
#: lower Nyquist frequency and everything above it is attenuated by roughly 80-100 dB.
RESAMPLE_OPTIONS = dict(lowpass_filter_width=64, rolloff=0.9475937167399596,
                        resampling_method="sinc_interp_kaiser", beta=14.769656459379492)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling of float ``(..., S)`` from ``orig_rate`` to ``new_rate`` Hz
    (anti-aliased: content above the new Nyquist frequency is filtered out)."""
    if orig_rate == new_rate:
        return waveform
    import torchaudio.functional as AF

    return AF.resample(waveform, int(orig_rate), int(new_rate), **RESAMPLE_OPTIONS)


def decode_audio(path: str) -> Optional[Tuple[np.ndarray, int, float]]:
    """Decode the first audio stream, averaging the channels.

    Returns:
        ``(samples, sample_rate, start_time)``: float32 ``(S,)`` mono samples in [-1, 1] at the
        stream's own rate (Hz), and the presentation time of the first sample (s); ``None``
        when the file has no audio stream.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the audio stream cannot be decoded (FFmpeg's error, naming the file).
    """
    import av

    if not os.path.isfile(path):
        raise FileNotFoundError(f"media file not found: {path}")
    chunks = []
    start_time: Optional[float] = None
    rate: Optional[int] = None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            # planar float at the stream's own rate and layout: (channels, samples) per frame
            converter = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                if start_time is None:
                    start_time = frame.time if frame.time is not None else 0.0
                    rate = frame.sample_rate
                for converted in converter.resample(frame):
                    chunks.append(converted.to_ndarray().mean(axis=0))
            for converted in converter.resample(None):
                chunks.append(converted.to_ndarray().mean(axis=0))
    except av.FFmpegError as err:
        raise ValueError(f"{path}: cannot decode the audio stream: {err}") from err
    if not chunks or rate is None:
        return np.zeros(0, dtype=np.float32), int(stream.rate or 0), 0.0
    return np.concatenate(chunks).astype(np.float32), int(rate), float(start_time)


def extract_audio(path: str, start_time: float, num_samples: int,
                  sample_rate: int) -> Optional[Tuple[torch.Tensor, int]]:
    """The clip's audio from ``start_time`` for ``num_samples`` samples at ``sample_rate``, mono.

    Args:
        path: Media file.
        start_time: Presentation time (s) of the first output sample, e.g. the first video
            frame's, so that audio and video start together.
        num_samples: Output length; audio missing at either end is filled with silence.
        sample_rate: Output rate (Hz).

    Returns:
        ``(waveform, covered)``: float32 ``(num_samples,)`` and how many of its samples came
        from the file (the rest is silence); ``None`` when the file has no audio stream.
    """
    decoded = decode_audio(path)
    if decoded is None:
        return None
    samples, rate, audio_start = decoded
    if len(samples) == 0:
        return torch.zeros(num_samples), 0
    waveform = resample(torch.from_numpy(samples), rate, sample_rate)
    offset = int(round((start_time - audio_start) * sample_rate))  # output sample 0 in the resampled audio
    out = torch.zeros(num_samples)
    first, last = max(offset, 0), min(offset + num_samples, len(waveform))
    if last > first:
        out[first - offset:last - offset] = waveform[first:last]
    return out, max(last - first, 0)
