"""Audio-visual fusion: align frame rates and lengths, stand in for missing streams, then a
registered fusion layer."""

from typing import Optional, Tuple

import torch

from espnet.nets.pytorch_backend.fusion.base_fusion import BaseFusion
from espnet.nets.pytorch_backend.fusion.temporal_alignment import resample_stream
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask

# (features (B, T, D) or None, lengths (B,) or None, frame rate in Hz[, present (B,) bool or None])
Stream = Tuple


class MultimodalFusion(torch.nn.Module):
    """Brings both streams to one rate (the fusion layer's choice: the slower one by default),
    makes their lengths agree per item (the shorter one; the longer stream's tail is dropped),
    and fuses.

    A stream may be missing, for the whole batch (features ``None``) or for some utterances
    (``present`` ``False`` there). A missing stream is not zeros, which the fusion could take
    for silence or a dark frame: with ``missing_embeddings`` a learned vector per stream
    (``missing_vision`` ``(Dv,)``, ``missing_audio`` ``(Da,)``, trained by
    ``--modality-dropout``) takes the place of its features at every frame, before the fusion
    layer, so every fusion type (concat, add, gated, attention, bottleneck) handles it; the
    utterance's length is then the other stream's. An utterance needs at least one stream.

    Args:
        layer: The fusion layer (a registered ``BaseFusion``).
        target_rate: Output frame rate in Hz; ``None`` = the layer's ``output_rate``.
        missing_embeddings: Create the learned stand-ins (models configured before they
            existed have none and need both streams).

    Shapes:
        ``forward((v (B, Tv, Dv) | None, v_lengths, v_rate[, v_present (B,)]),
        (a (B, Ta, Da) | None, a_lengths, a_rate[, a_present (B,)])) -> (B, T, D), lengths (B,)``
        at the output rate.
    """

    def __init__(self, layer: BaseFusion, target_rate: Optional[float] = None, missing_embeddings: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.target_rate = target_rate
        if missing_embeddings:
            self.missing_vision = torch.nn.Parameter(torch.zeros(layer.vision_dim))
            self.missing_audio = torch.nn.Parameter(torch.zeros(layer.audio_dim))
        else:
            self.missing_vision = self.missing_audio = None

    def output_rate(self, v_rate: float, a_rate: float) -> float:
        return self.target_rate if self.target_rate is not None else self.layer.output_rate(v_rate, a_rate)

    def forward(self, vision: Stream, audio: Stream) -> Tuple[torch.Tensor, torch.Tensor]:
        v, v_len, v_rate, v_present = _unpack(vision)
        a, a_len, a_rate, a_present = _unpack(audio)
        rate = self.output_rate(v_rate, a_rate)
        if v is None and a is None:
            raise ValueError("an audio-visual model needs the video or the audio of every utterance; got neither")
        if v is not None:
            v, v_len = resample_stream(v, v_len, v_rate, rate)
        if a is not None:
            a, a_len = resample_stream(a, a_len, a_rate, rate)
        if v_present is None and a_present is None and v is not None and a is not None:
            lengths = torch.minimum(v_len, a_len)  # both streams everywhere: the original path
            t = int(lengths.max())
            v, a = self._fit(v, t), self._fit(a, t)
        else:
            v, a, lengths = self._stand_in(v, v_len, v_present, a, a_len, a_present)
        mask = make_non_pad_mask(lengths, int(lengths.max())).to(v.device)
        return self.layer(v, a, mask), lengths

    def _stand_in(self, v, v_len, v_present, a, a_len, a_present):
        """Both streams ``(B, T, D)`` with the learned embedding where one is missing, and the
        per-utterance lengths (the shorter stream's, or the one that is there)."""
        ref = v if v is not None else a
        b, device = ref.size(0), ref.device
        v_present = _presence(v, v_present, b, device)
        a_present = _presence(a, a_present, b, device)
        neither = ~(v_present | a_present)
        if bool(neither.any()):
            raise ValueError(f"{int(neither.sum())} utterance(s) of the batch have neither video nor audio")
        if self.missing_vision is None and not bool((v_present & a_present).all()):
            raise ValueError("this audio-visual model has no embeddings for a missing stream (its config was written "
                             "before they existed), so every utterance needs both video and audio")
        zeros = torch.zeros(b, dtype=torch.long, device=device)
        v_len = v_len.to(device) if v is not None else zeros
        a_len = a_len.to(device) if a is not None else zeros
        lengths = torch.where(v_present & a_present, torch.minimum(v_len, a_len), torch.where(v_present, v_len, a_len))
        t = int(lengths.max())
        v = self._fill(v, v_present, self.missing_vision, b, t)
        a = self._fill(a, a_present, self.missing_audio, b, t)
        return v, a, lengths

    def _fill(self, x: Optional[torch.Tensor], present: torch.Tensor, embedding: torch.Tensor, b: int,
              t: int) -> torch.Tensor:
        stand_in = embedding.view(1, 1, -1).expand(b, t, -1)
        if x is None:
            return stand_in
        return torch.where(present.view(-1, 1, 1), self._fit(x, t), stand_in)

    @staticmethod
    def _fit(x: torch.Tensor, t: int) -> torch.Tensor:
        if x.size(1) >= t:
            return x[:, :t]
        return torch.nn.functional.pad(x, (0, 0, 0, t - x.size(1)))


def _unpack(stream: Stream):
    """``(x, lengths, rate)`` or ``(x, lengths, rate, present)`` -> four values."""
    if len(stream) == 3:
        return (*stream, None)
    return tuple(stream)


def _presence(x: Optional[torch.Tensor], present: Optional[torch.Tensor], b: int, device) -> torch.Tensor:
    if x is None:
        return torch.zeros(b, dtype=torch.bool, device=device)
    if present is None:
        return torch.ones(b, dtype=torch.bool, device=device)
    return present.to(device=device, dtype=torch.bool)
