"""Whisper encoder frontend: log-mel features computed in the graph + the pretrained
Whisper encoder, run on the batch's real length."""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option, merge
from espnet.nets.pytorch_backend.frontend.audio.mel import slaney_mel_filters
from espnet.nets.pytorch_backend.frontend.hf_base import (
    HFFrontend,
    load_preprocessor_config,
    load_pretrained,
    mono_waveform,
    valid_mask,
)


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
        self.n_fft, self.hop_length, self.sampling_rate = int(n_fft), int(hop_length), int(sampling_rate)
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

    Input ``(B, S, 1)`` 16 kHz audio at its recorded level (the dataset does not
    normalise audio for this frontend: Whisper's log-mel depends on the absolute level),
    lengths in samples. Output ``(B, T', d_model)`` at 50 Hz (the encoder's stride-2
    convolution over 100 Hz mel frames).

    Variable length (default, ``pad_seconds=0``): the encoder runs on the batch's longest
    item only (the positional embedding is sliced, no padding to 30 s); mel frames and
    first-convolution outputs after an item's end are zeroed (what the convolutions' own
    zero padding gives an item run alone) and the self-attention masks padded frames, so
    an item's outputs do not depend on its batch-mates. Lengths
    ``ceil((samples // 160) / 2)``. Fastest, and right for a model trained on top of the
    encoder; a pretrained Whisper *decoder* used as is needs trailing silence to know
    where the speech ends (without it, it repeats the sentence), so pad for it.

    ``pad_seconds=S`` (``0 < S <= 30``; 30 means the model's whole input window): each clip shorter than S seconds gets silence
    appended up to S seconds, and the silence is part of the input: its frames are valid
    (lengths count them), so a decoder cross-attending to them sees where the speech
    ends. ``S = 30`` (``--whisper-pad-30s``) is exactly what ``WhisperFeatureExtractor``
    + the pretrained encoder compute (3000 mel frames, no attention mask, 1500 output
    frames); a smaller S is a cheaper approximation (see ``benchmarks/whisper_zero_shot.py``).
    Clips over 30 s are an error.

    Only the encoder is kept in memory: the checkpoint is loaded as ``WhisperModel`` and
    its decoder is dropped right away.
    """

    frame_rate = 50.0
    default_model_name = "openai/whisper-base"
    options = merge(HFFrontend.options, (
        Option("pad_seconds", 0.0, "Append silence to each clip up to S seconds before the Whisper encoder "
               "(0 < S <= 30; the silence counts as input). A pretrained Whisper decoder needs it to see where "
               "speech ends. 0 = real length.", minimum=0.0, flag="--whisper-pad-seconds",
               aliases=(("--whisper-pad-30s", 30.0),)),
    ))

    def __init__(self, model_name: str, freeze: bool = True, pad_seconds: float = 0.0,
                 dtype: torch.dtype = torch.float32) -> None:
        full = load_pretrained("WhisperModel", model_name, "--audio-model-name", "the Whisper frontend", ("whisper",),
                               dtype=dtype)
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
        self.max_samples = 2 * self.max_positions * self.mel.hop_length  # 30 s
        if not 0.0 <= float(pad_seconds) <= 30.0:
            raise ValueError(f"--whisper-pad-seconds must be in [0, 30], got {pad_seconds}")
        # 30 s = the model's whole input window (3000 mel frames for every released Whisper)
        self.pad_samples = min(int(round(float(pad_seconds) * self.mel.sampling_rate)), self.max_samples)

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
        wave = mono_waveform(x, "Whisper frontend")
        lengths = lengths.to(torch.long)
        if self.pad_samples:
            if int(lengths.max()) > self.max_samples:
                raise ValueError(f"Whisper frontend: a clip of {int(lengths.max())} samples is longer than the "
                                 f"model's {self.max_samples}-sample (30 s) window")
            wave = wave * valid_mask(lengths, wave.size(1)).to(wave.dtype)  # what follows an item is silence
            lengths = lengths.clamp(min=self.pad_samples)
            wave = torch.nn.functional.pad(wave, (0, max(0, int(lengths.max()) - wave.size(1))))
        out_len = self.output_lengths(lengths)
        mel_len = self.mel.num_frames(lengths)
        with self.model_context():
            mel = self.mel(wave, lengths)
            # a batch of equal lengths needs no mask (30 s padding: Whisper's own computation)
            feats = self.encode(mel, None if bool((mel_len == mel.size(-1)).all()) else mel_len)
        feats = feats * valid_mask(out_len, feats.size(1)).unsqueeze(-1).to(feats.dtype)
        return feats, out_len
