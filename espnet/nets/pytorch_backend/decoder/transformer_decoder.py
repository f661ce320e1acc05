"""Transformer decoder (ESPnet / Auto-AVSR layout) with the batched scorer interface."""

from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask, th_accuracy
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask, target_mask
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.pytorch_backend.transformer.repeat import repeat
from espnet.nets.scorer_interface import BatchScorerInterface


class DecoderLayer(torch.nn.Module):
    """Pre-norm block: masked self-attention -> source attention -> FFN.

    With ``cache`` (this layer's output for the first ``L-1`` positions, ``(B, L-1, D)``)
    only the last position is computed and appended.
    """

    def __init__(self, size: int, heads: int, linear_units: int, dropout_rate: float) -> None:
        super().__init__()
        self.size = size
        self.self_attn = MultiHeadedAttention(heads, size, dropout_rate)
        self.src_attn = MultiHeadedAttention(heads, size, dropout_rate)
        self.feed_forward = PositionwiseFeedForward(size, linear_units, dropout_rate)
        self.norm1 = LayerNorm(size)
        self.norm2 = LayerNorm(size)
        self.norm3 = LayerNorm(size)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        memory: torch.Tensor,
        memory_mask: Optional[torch.Tensor],
        cache: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
        residual = tgt
        tgt = self.norm1(tgt)
        if cache is None:
            query, query_mask = tgt, tgt_mask
        else:
            query = tgt[:, -1:]
            residual = residual[:, -1:]
            query_mask = None if tgt_mask is None else tgt_mask[:, -1:]
        x = residual + self.dropout(self.self_attn(query, tgt, tgt, query_mask))
        h = self.norm2(x)
        x = x + self.dropout(self.src_attn(h, memory, memory, memory_mask))
        x = x + self.dropout(self.feed_forward(self.norm3(x)))
        if cache is not None:
            x = torch.cat([cache, x], dim=1)
        return x, tgt_mask, memory, memory_mask


class TransformerDecoder(BaseDecoder, BatchScorerInterface):
    """Autoregressive Transformer decoder over a SentencePiece vocabulary.

    Args:
        odim: Vocabulary size V (``<blank>`` + units + ``<eos>``; sos = eos = V-1).
        attention_dim: Model size D (must equal the encoder output size).
        attention_heads: Heads.
        linear_units: FFN inner size (``dunits``).
        num_blocks: Layers (``dlayers``).
        dropout_rate: Dropout everywhere.
        lsm_weight: Label smoothing for the attention loss.
        ignore_id: Padding id of targets.

    Shapes:
        ``forward(tgt (B, L), tgt_mask (B, L, L), memory (B, T, D), memory_mask (B, 1, T))
        -> logits (B, L, V)``.
    """

    def __init__(
        self,
        odim: int,
        attention_dim: int = 768,
        attention_heads: int = 12,
        linear_units: int = 3072,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        lsm_weight: float = 0.1,
        ignore_id: int = -1,
    ) -> None:
        super().__init__()
        self.odim = odim
        self.sos = self.eos = odim - 1
        self.ignore_id = ignore_id
        self.embed = torch.nn.Sequential(
            torch.nn.Embedding(odim, attention_dim),
            PositionalEncoding(attention_dim, dropout_rate),
        )
        self.decoders = repeat(
            num_blocks,
            lambda _: DecoderLayer(attention_dim, attention_heads, linear_units, dropout_rate),
        )
        self.after_norm = LayerNorm(attention_dim)
        self.output_layer = torch.nn.Linear(attention_dim, odim)
        self.criterion = LabelSmoothingLoss(odim, ignore_id, lsm_weight)

    @classmethod
    def from_config(cls, config) -> "TransformerDecoder":
        return cls(
            odim=config.odim,
            attention_dim=config.adim,
            attention_heads=config.aheads,
            linear_units=config.dunits,
            num_blocks=config.dlayers,
            dropout_rate=config.dropout_rate,
            lsm_weight=config.lsm_weight,
        )

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(tgt)
        x, tgt_mask, _, _ = self.decoders(x, tgt_mask, memory, memory_mask)
        return self.output_layer(self.after_norm(x)), tgt_mask

    def forward_train(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor
    ) -> Dict[str, Any]:
        ys_in, ys_out = add_sos_eos(targets, self.sos, self.eos, self.ignore_id)
        ys_mask = target_mask(ys_in, self.ignore_id)
        memory_mask = make_non_pad_mask(memory_lengths.to(memory.device), memory.size(1)).unsqueeze(1)
        logits, _ = self.forward(ys_in, ys_mask, memory, memory_mask)
        loss = self.criterion(logits, ys_out)
        acc = th_accuracy(logits.view(-1, self.odim), ys_out, self.ignore_id)
        return {"loss_att": loss, "acc": acc, "logits": logits, "ys_in": ys_in}

    def forward_one_step(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        cache: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Log-probabilities ``(B, V)`` of the next token and the per-layer cache."""
        x = self.embed(tgt)
        if cache is None:
            cache = [None] * len(self.decoders)
        new_cache = []
        for c, layer in zip(cache, self.decoders):
            x, tgt_mask, memory, _ = layer(x, tgt_mask, memory, None, cache=c)
            new_cache.append(x)
        y = self.output_layer(self.after_norm(x[:, -1]))
        return torch.log_softmax(y, dim=-1), new_cache

    # ---- batched scorer interface -------------------------------------------------
    def batch_score(
        self, ys: torch.Tensor, state: Any, xs: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        ys_mask = subsequent_mask(ys.size(-1), device=xs.device).unsqueeze(0)
        return self.forward_one_step(ys, ys_mask, xs, cache=state)

    def select_state(self, state: Any, prev_ids: torch.Tensor, token_ids: torch.Tensor) -> Any:
        return None if state is None else [layer_cache[prev_ids] for layer_cache in state]
