"""Auto-AVSR single-modality model: frontend -> proj_encoder -> Conformer -> CTC + decoder.

Attribute names match the original Auto-AVSR ``E2E`` so that its ``model_avg_*.pth``
files load with ``strict=True``.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

import torch

from espnet.nets.pytorch_backend.ctc import CTC
from espnet.nets.pytorch_backend.decoder.transformer_decoder import TransformerDecoder
from espnet.nets.pytorch_backend.encoder.conformer_encoder import ConformerEncoder
from espnet.nets.pytorch_backend.frontend.base_frontend import BaseFrontend
from espnet.nets.pytorch_backend.frontend.resnet import VideoResNet
from espnet.nets.pytorch_backend.frontend.resnet1d import AudioResNet1D

MODALITIES = ("video", "audio")


@dataclass
class E2EConfig:
    """Everything needed to rebuild an :class:`E2E` (stored in every checkpoint we write).

    Defaults are the legacy Auto-AVSR sizes.
    """

    odim: int = 5049
    modality: str = "video"
    adim: int = 768
    aheads: int = 12
    eunits: int = 3072
    elayers: int = 12
    dunits: int = 3072
    dlayers: int = 6
    cnn_module_kernel: int = 31
    dropout_rate: float = 0.1
    lsm_weight: float = 0.1
    ctc_weight: float = 0.1
    mask_conv_padding: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "E2EConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)


def build_frontend(modality: str) -> BaseFrontend:
    """The legacy frontend of a modality."""
    if modality == "video":
        return VideoResNet()
    if modality == "audio":
        return AudioResNet1D()
    raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")


class E2E(torch.nn.Module):
    """Hybrid CTC/attention recogniser.

    Shapes:
        video ``(B, T, 1, 88, 88)`` with lengths in frames (25 fps) or audio
        ``(B, S, 1)`` with lengths in samples (16 kHz); targets ``(B, L)`` padded with -1.
    """

    def __init__(self, config: E2EConfig) -> None:
        super().__init__()
        self.config = config
        self.modality = config.modality
        self.odim = config.odim
        self.blank = 0
        self.sos = self.eos = config.odim - 1
        self.ignore_id = -1
        self.ctc_weight = config.ctc_weight

        self.frontend = build_frontend(config.modality)
        self.proj_encoder = torch.nn.Linear(self.frontend.output_dim, config.adim)
        self.encoder = ConformerEncoder(
            attention_dim=config.adim,
            attention_heads=config.aheads,
            linear_units=config.eunits,
            num_blocks=config.elayers,
            cnn_module_kernel=config.cnn_module_kernel,
            dropout_rate=config.dropout_rate,
            mask_conv_padding=config.mask_conv_padding,
        )
        self.decoder = TransformerDecoder(
            odim=config.odim,
            attention_dim=config.adim,
            attention_heads=config.aheads,
            linear_units=config.dunits,
            num_blocks=config.dlayers,
            dropout_rate=config.dropout_rate,
            lsm_weight=config.lsm_weight,
            ignore_id=self.ignore_id,
        )
        self.ctc = CTC(config.odim, config.adim, config.dropout_rate, self.ignore_id)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Raw input -> encoder output ``(B, T, adim)`` at 25 Hz and its lengths."""
        feats, lengths = self.frontend(x, lengths)
        return self.encoder(self.proj_encoder(feats), lengths)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, label: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """Hybrid loss ``ctc_weight * ctc + (1 - ctc_weight) * att``.

        Returns:
            ``loss, loss_ctc, loss_att, acc``.
        """
        enc, enc_lengths = self.encode(x, lengths)
        loss_ctc, _ = self.ctc(enc, enc_lengths, label)
        out = self.decoder.forward_train(enc, enc_lengths, label)
        loss_att = out["loss_att"]
        loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        return loss, loss_ctc, loss_att, out["acc"]
