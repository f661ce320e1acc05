"""Log-mel audio frontend trained from scratch: log-mel filter bank features + two stride-2
convolutions (ESPnet's ``Conv2dSubsampling``), 25 Hz like the legacy 1-D ResNet.

Far fewer multiply-adds per second of audio than the 1-D ResNet-18 on the raw waveform (counted
by ``torch.utils.flop_counter``: 8.8 M with 32 channels, 25.3 M with 64, against 175 M for the
ResNet at width 16; the STFT not counted), on filter-bank features, the usual input of
speech recognisers trained from scratch: the choice for small models and small corpora
(``tutorials/quickstart.sh``). Under bf16 autocast the mel filter product runs in bf16 like
the rest of the model (the quickstart's measured run computed it so).
"""

from typing import Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.frontend.audio.mel import slaney_mel_filters
from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask

SAMPLE_RATE = 16000
HOP = 160  # 10 ms: 100 mel frames per second
WINDOW = 400  # 25 ms
SUBSAMPLING = 4  # two stride-2 convolutions: 100 Hz -> 25 Hz
SAMPLES_PER_FRAME = HOP * SUBSAMPLING  # 640, one output frame per video frame


class LogMel(torch.nn.Module):
    """Log-mel filter bank of a padded batch, normalised per utterance.

    Power spectrum of 25-ms Hann windows every 10 ms (window ``t`` centred on sample
    ``160 t``; samples outside the item are zeros), ``n_mels`` Slaney mel filters up to
    8 kHz, natural log (floor 1e-6), then each mel bin's mean and standard deviation over the
    item's valid frames removed (utterance mean-variance normalisation); frames after an
    item's end are zero. Every item's features are what it gets alone.

    Shapes: ``wave`` ``(B, S)`` float samples at 16 kHz, ``frames`` ``(B,)`` valid frames per
    item -> ``(B, T, n_mels)`` with ``T = S // 160``.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WINDOW), persistent=False)
        self.register_buffer("filters", slaney_mel_filters(WINDOW, int(n_mels), SAMPLE_RATE), persistent=False)

    def forward(self, wave: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        n_frames = wave.size(1) // HOP
        half = WINDOW // 2
        x = torch.nn.functional.pad(wave.float(), (half, half))
        spec = torch.stft(x, WINDOW, HOP, window=self.window, center=False, return_complex=True)
        power = spec.real.pow(2) + spec.imag.pow(2)  # (B, F, frames + 1)
        mel = torch.matmul(power[..., :n_frames].transpose(1, 2), self.filters)  # (B, T, n_mels)
        feats = torch.clamp(mel, min=1e-6).log()
        valid = make_non_pad_mask(frames, n_frames).unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
        count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (feats * valid).sum(dim=1, keepdim=True) / count
        var = ((feats - mean).pow(2) * valid).sum(dim=1, keepdim=True) / count
        return (feats - mean) / torch.sqrt(var + 1e-5) * valid


class LogMelFrontend(BaseFrontend):
    """Log-mel features (``LogMel``, 80 bins at 100 Hz) + two 3x3 stride-2 convolutions
    (``channels`` each, ReLU) + a linear layer to ``dim``: one ``dim``-d vector per 640
    samples (``--audio-encoder logmel``).

    Shapes:
        ``x`` ``(B, S, 1)`` or ``(B, S)`` samples at 16 kHz, ``lengths`` ``(B,)`` in
        samples -> ``(B, S // 640, dim)``, ``lengths // 640`` (the 1-D ResNet's frames).

    Samples after an item's last whole 640-sample block are left out (zeroed, as the 1-D
    ResNet drops them), and the padded convolutions' last valid outputs read valid frames
    only, so an item's outputs do not depend on its batch-mates.
    """

    options = (
        Option("channels", 32, "Channels of the log-mel frontend's two stride-2 convolutions.", minimum=1,
               flag="--logmel-channels"),
        Option("dim", 128, "Output size of the log-mel frontend (the projection maps it to --adim).", minimum=1,
               flag="--logmel-dim"),
    )
    frame_rate = 25.0
    utterance_norm_input = True
    n_mels = 80

    def __init__(self, channels: int = 32, dim: int = 128) -> None:
        super().__init__()
        self.output_dim = int(dim)
        self.mel = LogMel(self.n_mels)
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.out = torch.nn.Linear(channels * (self.n_mels // SUBSAMPLING), self.output_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 3 and x.size(-1) == 1:
            x = x.squeeze(-1)
        if x.dim() != 2:
            raise ValueError(f"log-mel frontend expects (B, S, 1) or (B, S) waveforms, got {tuple(x.shape)}")
        out_lengths = torch.div(lengths.to(torch.long), SAMPLES_PER_FRAME, rounding_mode="trunc")
        n_out = x.size(1) // SAMPLES_PER_FRAME
        wave = x[:, : n_out * SAMPLES_PER_FRAME]
        wave = wave * make_non_pad_mask(out_lengths * SAMPLES_PER_FRAME, wave.size(1)).to(wave.dtype)
        feats = self.mel(wave, out_lengths * SUBSAMPLING)  # (B, 4 T', n_mels)
        h = self.conv(feats.unsqueeze(1).to(self.out.weight.dtype))  # (B, C, T', n_mels / 4)
        h = h.transpose(1, 2).flatten(2)  # (B, T', C * n_mels / 4)
        return self.out(h), out_lengths
