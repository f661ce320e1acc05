"""Multi-head attention: plain (decoder) and relative-position (Conformer encoder).

By default both compute the scores, softmax and weighted sum step by step, as the original
Auto-AVSR did. ``set_sdpa(model, True)`` switches them to
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA: one fused kernel), the
Conformer's relative-position term entering it as an additive float bias, which is exact (the
scores are ``(q_u k^T + bd) / sqrt(d_k)`` either way); the two paths agree to float rounding.
SDPA is not the default because on this project's 2-core CPU it was slower for one full-size
relative-position layer's forward + backward (CPU time 0.68x at 50 frames, 0.92x at 150; see
docs/benchmarks.md). Nothing reads the attention weights, so neither path keeps them.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from espnet.nets.pytorch_backend.dropout import Dropout


class MultiHeadedAttention(torch.nn.Module):
    """Scaled dot-product multi-head attention.

    Args:
        n_head: Number of heads H.
        n_feat: Model size D (must be divisible by H).
        dropout_rate: Dropout on the attention weights.

    Shapes:
        query ``(B, T1, D)``, key/value ``(B, T2, D)``, mask ``(B, 1, T2)`` or
        ``(B, T1, T2)`` (bool, ``True`` = attend) -> ``(B, T1, D)``.
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float) -> None:
        super().__init__()
        if n_feat % n_head != 0:
            raise ValueError(f"attention size {n_feat} is not divisible by {n_head} heads")
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = torch.nn.Linear(n_feat, n_feat)
        self.linear_k = torch.nn.Linear(n_feat, n_feat)
        self.linear_v = torch.nn.Linear(n_feat, n_feat)
        self.linear_out = torch.nn.Linear(n_feat, n_feat)
        self.dropout = Dropout(p=dropout_rate)
        self.use_sdpa = False  # step by step (see the module docstring)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, H, T, d_k)``."""
        return x.view(x.size(0), -1, self.h, self.d_k).transpose(1, 2)

    def forward_qkv(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self._split_heads(self.linear_q(query))
        k = self._split_heads(self.linear_k(key))
        v = self._split_heads(self.linear_v(value))
        return q, k, v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
               bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Attention of projected, head-split queries ``(B, H, T1, d_k)`` over keys/values
        ``(B, H, T2, d_k)`` -> ``(B, T1, D)`` (used by :meth:`forward` and by incremental
        decoding with cached keys/values). ``bias`` ``(B, H, T1, T2)``, already divided by
        ``sqrt(d_k)``, is added to the scaled scores (the relative-position term)."""
        if self.use_sdpa:
            return self.linear_out(self._merge_heads(self._sdpa(q, k, v, mask, bias)))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        if bias is not None:
            scores = scores + bias
        return self.forward_attention(v, scores, mask)

    def _merge_heads(self, context: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, d_k) -> (B, T, D)``."""
        return context.transpose(1, 2).reshape(context.size(0), -1, self.h * self.d_k)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor],
              bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The fused kernel, with the step-by-step path's handling of padding: masked keys
        get zero weight, and a query whose keys are all masked (an utterance of length 0)
        gets a zero context, as :meth:`forward_attention` gives it (SDPA alone would spread
        its weight over the masked keys).

        Returns:
            Context ``(B, H, T1, d_k)``.
        """
        dropout = self.dropout.p if self.training else 0.0
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        valid = mask.unsqueeze(1)  # (B, 1, T1 or 1, T2), True = attend
        if bias is None:
            attn_mask = valid
        else:
            # a large finite negative, not -inf: a fully masked row stays finite (zeroed below)
            attn_mask = bias.masked_fill(~valid, torch.finfo(bias.dtype).min)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return context.masked_fill(~valid.any(dim=-1, keepdim=True), 0.0)  # (B, 1, T1 or 1, 1)

    def forward_attention(
        self, value: torch.Tensor, scores: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Softmax over ``scores`` ``(B, H, T1, T2)`` with masked keys set to zero weight."""
        if mask is not None:
            blocked = mask.unsqueeze(1).eq(0)  # (B, 1, *, T2)
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
            attn = torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        context = torch.matmul(self.dropout(attn), value)  # (B, H, T1, d_k)
        return self.linear_out(self._merge_heads(context))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        return self.attend(*self.forward_qkv(query, key, value), mask)


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """Multi-head self-attention with Transformer-XL relative positions
    (content bias ``pos_bias_u``, position bias ``pos_bias_v``).

    Shapes:
        query/key/value ``(B, T, D)``, ``pos_emb`` ``(1, 2T-1, D)``, mask ``(B, 1, T)``
        -> ``(B, T, D)``.
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float) -> None:
        super().__init__(n_head, n_feat, dropout_rate)
        self.linear_pos = torch.nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = torch.nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = torch.nn.Parameter(torch.empty(self.h, self.d_k))
        torch.nn.init.xavier_uniform_(self.pos_bias_u)
        torch.nn.init.xavier_uniform_(self.pos_bias_v)

    @staticmethod
    def rel_shift(x: torch.Tensor) -> torch.Tensor:
        """Turn scores against relative offsets ``(B, H, T1, 2T1-1)`` into scores
        against key positions ``(B, H, T1, T1)``."""
        b, h, t1, n_rel = x.shape
        padded = torch.nn.functional.pad(x, (1, 0))  # (B, H, T1, 2T1)
        padded = padded.view(b, h, n_rel + 1, t1)
        return padded[:, :, 1:].reshape(b, h, t1, n_rel)[..., : n_rel // 2 + 1]

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        q, k, v = self.forward_qkv(query, key, value)  # (B, H, T, d_k)
        p = self._split_heads(self.linear_pos(pos_emb))  # (1, H, 2T-1, d_k)
        q_u = q + self.pos_bias_u.unsqueeze(1)
        q_v = q + self.pos_bias_v.unsqueeze(1)
        matrix_bd = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))  # (B, H, T, T)
        if self.use_sdpa:
            return self.attend(q_u, k, v, mask, bias=matrix_bd / math.sqrt(self.d_k))
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        return self.forward_attention(v, (matrix_ac + matrix_bd) / math.sqrt(self.d_k), mask)


def set_sdpa(model: torch.nn.Module, enabled: bool) -> int:
    """Switch every attention layer of ``model`` to the fused kernel (``True``) or to the
    step-by-step computation of the original Auto-AVSR (``False``, the default); the number
    of layers switched."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadedAttention)]
    for layer in layers:
        layer.use_sdpa = enabled
    return len(layers)
