"""Conformer encoder (macaron FFN, relative-position MHA, convolution module)."""

from typing import Any, Dict, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.encoder.base_encoder import BaseEncoder
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask
from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.pytorch_backend.transformer.repeat import repeat


class ConvolutionModule(torch.nn.Module):
    """Pointwise conv + GLU -> depthwise conv -> BatchNorm -> SiLU -> pointwise conv.

    With ``mask_padding`` the padded frames are zeroed before the depthwise convolution
    so that padding never leaks into valid frames. The original Auto-AVSR did not do
    this; legacy models keep it off so that their numbers are reproduced exactly.

    Shapes:
        ``(B, T, D) -> (B, T, D)``; ``mask`` ``(B, 1, T)`` bool (``True`` = valid).
    """

    def __init__(self, channels: int, kernel_size: int, mask_padding: bool = False) -> None:
        super().__init__()
        self.mask_padding = mask_padding
        if (kernel_size - 1) % 2 != 0:
            raise ValueError(f"convolution kernel size must be odd, got {kernel_size}")
        self.pointwise_cov1 = torch.nn.Conv1d(channels, 2 * channels, 1)
        self.depthwise_conv = torch.nn.Conv1d(
            channels, channels, kernel_size, padding=(kernel_size - 1) // 2, groups=channels
        )
        self.norm = torch.nn.BatchNorm1d(channels)
        self.pointwise_cov2 = torch.nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = torch.nn.functional.glu(self.pointwise_cov1(x.transpose(1, 2)), dim=1)
        if self.mask_padding and mask is not None:
            x = x.masked_fill(~mask, 0.0)
        x = torch.nn.functional.silu(self.norm(self.depthwise_conv(x)))
        return self.pointwise_cov2(x).transpose(1, 2)


class ConformerBlock(torch.nn.Module):
    """One pre-norm Conformer block: ½FFN -> MHSA -> Conv -> ½FFN -> LayerNorm.

    Shapes:
        ``x`` ``(B, T, D)``, ``pos_emb`` ``(1, 2T-1, D)``, ``mask`` ``(B, 1, T)``.
    """

    def __init__(
        self, size: int, heads: int, linear_units: int, kernel_size: int, dropout_rate: float,
        attention_dropout_rate: float = 0.0, mask_conv_padding: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = RelPositionMultiHeadedAttention(heads, size, attention_dropout_rate)
        self.feed_forward = PositionwiseFeedForward(size, linear_units, dropout_rate)
        self.feed_forward_macaron = PositionwiseFeedForward(size, linear_units, dropout_rate)
        self.conv_module = ConvolutionModule(size, kernel_size, mask_conv_padding)
        self.norm_ff = LayerNorm(size)
        self.norm_mha = LayerNorm(size)
        self.norm_ff_macaron = LayerNorm(size)
        self.norm_conv = LayerNorm(size)
        self.norm_final = LayerNorm(size)
        self.dropout = Dropout(dropout_rate)

    def forward(
        self, x: torch.Tensor, pos_emb: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x = x + 0.5 * self.dropout(self.feed_forward_macaron(self.norm_ff_macaron(x)))
        h = self.norm_mha(x)
        x = x + self.dropout(self.self_attn(h, h, h, pos_emb, mask))
        x = x + self.dropout(self.conv_module(self.norm_conv(x), mask))
        x = x + 0.5 * self.dropout(self.feed_forward(self.norm_ff(x)))
        return self.norm_final(x), pos_emb, mask


class ConformerEncoder(BaseEncoder):
    """Stack of Conformer blocks on already-projected features (``--encoder conformer``, the
    Auto-AVSR encoder and the default).

    Args:
        attention_dim: Model size D (``adim``).
        attention_heads: Heads (``aheads``).
        linear_units: FFN inner size (option ``linear_units``, flag ``--eunits``).
        num_blocks: Number of blocks (option ``num_blocks``, flag ``--elayers``).
        cnn_module_kernel: Depthwise kernel size (31 in Auto-AVSR; odd).
        dropout_rate: Dropout in FFN/residual/positional paths.
        mask_conv_padding: Zero padded frames before the depthwise convolution (exact
            padding invariance; off for legacy Auto-AVSR numerics).

    Shapes:
        ``forward(xs (B, T, D), lengths (B,)) -> (B, T, D), lengths (B,)`` at the input
        frame rate (25 Hz for the legacy frontends).
    """

    options = (
        Option("linear_units", 3072, "Feed-forward units of each encoder block (3072 = Auto-AVSR; the bottleneck "
               "fusion's layers take it too).", minimum=1, flag="--eunits"),
        Option("num_blocks", 12, "Encoder blocks (12 = Auto-AVSR); --elayers 0 = --encoder none (no encoder: the "
               "projected/fused frontend output goes to the decoder and CTC).", minimum=1, flag="--elayers"),
        Option("cnn_module_kernel", 31, "Kernel size (odd) of the Conformer's depthwise convolution (31 = Auto-AVSR).",
               minimum=1, flag="--cnn-module-kernel"),
        Option("mask_conv_padding", False, "Zero padded frames before the Conformer convolution (exact padding "
               "invariance; off by default to reproduce Auto-AVSR numerics).", flag="--mask-conv-padding"),
    )

    def __init__(
        self,
        attention_dim: int = 768,
        attention_heads: int = 12,
        linear_units: int = 3072,
        num_blocks: int = 12,
        cnn_module_kernel: int = 31,
        dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        mask_conv_padding: bool = False,
    ) -> None:
        super().__init__()
        self.embed = torch.nn.Sequential(RelPositionalEncoding(attention_dim, dropout_rate))
        self.encoders = repeat(
            num_blocks,
            lambda _: ConformerBlock(
                attention_dim, attention_heads, linear_units, cnn_module_kernel,
                dropout_rate, attention_dropout_rate, mask_conv_padding,
            ),
        )
        self.after_norm = LayerNorm(attention_dim)
        self.output_dim = attention_dim

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "ConformerEncoder":
        if options["cnn_module_kernel"] % 2 == 0:
            raise ValueError(f"--cnn-module-kernel must be odd, got {options['cnn_module_kernel']}")
        return cls(attention_dim=config.adim, attention_heads=config.aheads, dropout_rate=config.dropout_rate,
                   **options)

    def forward_masked(
        self, xs: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Encode with an explicit bool mask ``(B, 1, T)`` (or ``None`` for no padding)."""
        xs, pos_emb = self.embed(xs)
        xs, _, _ = self.encoders(xs, pos_emb, mask)
        return self.after_norm(xs)

    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        mask = make_non_pad_mask(lengths.to(xs.device), xs.size(1)).unsqueeze(1)
        return self.forward_masked(xs, mask), lengths

    def forward_padding_invariant(
        self, xs: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with padded frames zeroed before every depthwise convolution,
        whatever ``mask_conv_padding`` says: each utterance's output frames equal those of
        its encoding alone (up to float rounding), because the convolution's own zero
        padding sees zeros there too. Lets a model trained without the masking (the legacy
        Auto-AVSR ones) encode a padded batch for decoding."""
        convs = [block.conv_module for block in self.encoders]
        saved = [conv.mask_padding for conv in convs]
        try:
            for conv in convs:
                conv.mask_padding = True
            return self.forward(xs, lengths)
        finally:
            for conv, flag in zip(convs, saved):
                conv.mask_padding = flag
