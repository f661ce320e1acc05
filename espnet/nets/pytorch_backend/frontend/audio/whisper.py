"""Whisper encoder frontend: log-mel features computed in the graph + the pretrained
Whisper encoder, run on the batch's real length."""

import math
from typing import Tuple

import torch

from espnet.nets.pytorch_backend.frontend.hf_base import (
    HFFrontend,
    load_preprocessor_config,
    load_pretrained,
    mono_waveform,
    valid_mask,
)


def hz_to_mel_slaney(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    linear = 3.0 * freq / 200.0
    log = 15.0 + torch.log(torch.clamp(freq, min=1e-10) / 1000.0) * (27.0 / math.log(6.4))
    return torch.where(freq >= 1000.0, log, linear)


def mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    linear = 200.0 * mel / 3.0
    log = 1000.0 * torch.exp((mel - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(mel >= 15.0, log, linear)


def slaney_mel_filters(n_fft: int, n_mels: int, sampling_rate: int, f_min: float = 0.0, f_max: float = 8000.0) -> torch.Tensor:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters on the Slaney mel scale with
    Slaney area normalisation (2 / bandwidth), as used by Whisper (librosa defaults)."""
    n_bins = n_fft // 2 + 1
    fft_freqs = torch.linspace(0, sampling_rate // 2, n_bins, dtype=torch.float64)
    mels = torch.linspace(
        float(hz_to_mel_slaney(torch.tensor(f_min, dtype=torch.float64))),
        float(hz_to_mel_slaney(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    edges = mel_to_hz_slaney(mels)  # (n_mels + 2,) Hz
    width = edges[1:] - edges[:-1]
    rise = (fft_freqs[:, None] - edges[None, :-2]) / width[None, :-1]
    fall = (edges[None, 2:] - fft_freqs[:, None]) / width[None, 1:]
    filters = torch.clamp(torch.minimum(rise, fall), min=0.0)
    filters = filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return filters.to(torch.float32)


class WhisperLogMel(torch.nn.Module):
    """Whisper's log-mel spectrogram on a padded batch, in torch (differentiable, on the
    model's device), equal to ``transformers.WhisperFeatureExtractor`` on each item.

    STFT (``n_fft`` 400, hop 160, Hann window, power), Slaney mel filters, ``log10``
    (floor 1e-10), per item ``max(x, x.max() - 8)``, ``(x + 4) / 4``. Samples after an
    item's length are treated as zeros (as the feature extractor's zero padding), so an
    item's features do not depend on the batch: the left edge is reflect-padded (as
    ``torch.stft(center=True)``), the right edge zero-padded, and the per-item maximum is
    taken over every frame that overlaps the item. Output ``(B, n_mels, S // hop)``.
    """

    def __init__(self, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160, sampling_rate: int = 16000) -> None:
        super().__init__()
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("filters", slaney_mel_filters(self.n_fft, int(n_mels), int(sampling_rate)), persistent=False)

    def num_frames(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.div(samples, self.hop_length, rounding_mode="floor")

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``wave`` ``(B, S)``, ``lengths`` ``(B,)`` samples -> ``(B, n_mels, S // hop)``."""
        s = wave.size(1)
        wave = wave.float()  # features in float32 whatever the model's dtype
        wave = wave * valid_mask(lengths, s).to(wave.dtype)
        half = self.n_fft // 2
        x = wave.unsqueeze(1)
        if s > half:
            x = torch.nn.functional.pad(x, (half, 0), mode="reflect")
        else:  # too short to reflect: reflect the implicit zero padding
            x = torch.nn.functional.pad(x, (0, half + 1 - s))
            x = torch.nn.functional.pad(x, (half, 0), mode="reflect")[..., : half + s]
        # zero right padding of n_fft: every frame that overlaps a sample is computed
        x = torch.nn.functional.pad(x, (0, self.n_fft)).squeeze(1)
        spec = torch.stft(x, self.n_fft, self.hop_length, window=self.window.float(), center=False, return_complex=True)
        power = spec.real.pow(2) + spec.imag.pow(2)  # (B, F, frames)
        mel = torch.matmul(self.filters.float().t(), power)  # (B, n_mels, frames)
        log_mel = torch.clamp(mel, min=1e-10).log10()
        peak = log_mel.amax(dim=(1, 2), keepdim=True)
        log_mel = torch.maximum(log_mel, peak - 8.0)
        return ((log_mel + 4.0) / 4.0)[..., : s // self.hop_length]


class WhisperFrontend(HFFrontend):
    """Encoder of a pretrained Whisper model (``--audio-encoder whisper``).

    Input ``(B, S, 1)`` 16 kHz audio, lengths in samples. Output ``(B, T', d_model)`` at
    50 Hz (the encoder's stride-2 convolution over 100 Hz mel frames), lengths
    ``ceil((samples // 160) / 2)``.

    Variable length (default): the encoder runs on the batch's longest item only (the
    positional embedding is sliced, no padding to 30 s); mel frames and first-convolution
    outputs after an item's end are zeroed (what the convolutions' own zero padding gives
    an item run alone) and the self-attention masks padded frames, so an item's outputs
    do not depend on its batch-mates. ``pad_to_30s=True``: every clip is padded with
    silence to 30 s (3000 mel frames, no attention mask: exactly what Whisper saw in
    training) and the full 1500-frame output is returned (for a pretrained Whisper
    decoder); lengths are still the valid lengths. Clips over 30 s are an error.

    Input scale: the dataset gives utterance-layer-normed audio (zero mean, unit RMS),
    while Whisper was trained on raw audio in [-1, 1]. The log-mel features depend on
    the absolute level, so the input is multiplied by ``input_gain`` (default 0.1, i.e.
    an RMS of -20 dBFS, typical of normalised speech recordings) before the log-mel.
    Set ``input_gain=1.0`` for raw-scale input.

    Only the encoder is kept in memory: the checkpoint is loaded as ``WhisperModel`` and
    its decoder is dropped right away.
    """

    frame_rate = 50.0

    def __init__(self, model_name: str, freeze: bool = True, pad_to_30s: bool = False, input_gain: float = 0.1) -> None:
        full = load_pretrained("WhisperModel", model_name, "--audio-model-name", "the Whisper frontend", ("whisper",))
        encoder = full.get_encoder()
        del full
        super().__init__(encoder, freeze)
        cfg = encoder.config
        pre = load_preprocessor_config(model_name)
        self.mel = WhisperLogMel(
            n_mels=int(cfg.num_mel_bins),
            n_fft=int(pre.get("n_fft", 400)),
            hop_length=int(pre.get("hop_length", 160)),
            sampling_rate=int(pre.get("sampling_rate", 16000)),
        )
        self.output_dim = int(cfg.d_model)
        self.max_positions = int(cfg.max_source_positions)
        self.pad_to_30s = bool(pad_to_30s)
        self.input_gain = float(input_gain)

    @classmethod
    def from_config(cls, config) -> "WhisperFrontend":
        from espnet.nets.pytorch_backend.registry import AUDIO_ENCODERS

        name = cls.model_name(config, "audio_model_name", AUDIO_ENCODERS, "whisper")
        return cls(name, freeze=not config.unfreeze_audio, pad_to_30s=config.whisper_pad_30s)

    def output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        frames = self.mel.num_frames(samples.to(torch.long))
        return torch.div(frames + 1, 2, rounding_mode="floor")

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor = None) -> torch.Tensor:
        """Whisper encoder on ``(B, n_mels, T)``; with ``mel_lengths``, padded frames are
        zeroed/masked as described in the class docstring."""
        enc = self.model
        t_out = (mel.size(-1) + 1) // 2
        if t_out > self.max_positions:
            raise ValueError(
                f"Whisper frontend: {mel.size(-1)} mel frames give {t_out} encoder frames, more than the "
                f"model's {self.max_positions} positions (30 s); cut the audio into shorter clips"
            )
        attn_mask = None
        mel = mel.to(enc.conv1.weight.dtype)
        if mel_lengths is not None:
            mel = mel * valid_mask(mel_lengths, mel.size(-1)).unsqueeze(1).to(mel.dtype)
        h = torch.nn.functional.gelu(enc.conv1(mel))
        if mel_lengths is not None:
            h = h * valid_mask(mel_lengths, h.size(-1)).unsqueeze(1).to(h.dtype)
        h = torch.nn.functional.gelu(enc.conv2(h)).transpose(1, 2)  # (B, T', D)
        h = h + enc.embed_positions.weight[:t_out].to(h.dtype)
        h = torch.nn.functional.dropout(h, p=enc.dropout, training=enc.training)
        if mel_lengths is not None:
            keep = valid_mask(torch.div(mel_lengths + 1, 2, rounding_mode="floor"), t_out)
            attn_mask = torch.zeros(keep.shape, dtype=h.dtype, device=h.device)
            attn_mask = attn_mask.masked_fill(~keep, torch.finfo(h.dtype).min)[:, None, None, :]
        for layer in enc.layers:
            if enc.training and enc.layerdrop > 0.0 and torch.rand([]) < enc.layerdrop:
                continue
            h = layer(h, attn_mask)
            if isinstance(h, tuple):
                h = h[0]
        return enc.layer_norm(h)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = mono_waveform(x, "Whisper frontend")
        lengths = lengths.to(torch.long)
        out_len = self.output_lengths(lengths)
        wave = x * self.input_gain
        if self.pad_to_30s:
            n_samples = 2 * self.max_positions * self.mel.hop_length
            if wave.size(1) > n_samples:
                raise ValueError(f"Whisper frontend: {wave.size(1)} samples are longer than 30 s")
            wave = torch.nn.functional.pad(wave, (0, n_samples - wave.size(1)))
        with self.model_context():
            mel = self.mel(wave, lengths)
            if self.pad_to_30s:
                feats = self.encode(mel)
            else:
                feats = self.encode(mel, self.mel.num_frames(lengths))
        if not self.pad_to_30s:
            feats = feats * valid_mask(out_len, feats.size(1)).unsqueeze(-1).to(feats.dtype)
        return feats, out_len
