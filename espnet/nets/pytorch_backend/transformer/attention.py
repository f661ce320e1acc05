"""Multi-head attention: plain (decoder) and relative-position (Conformer encoder)."""

import math
from typing import Optional, Tuple

import torch


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
        self.dropout = torch.nn.Dropout(p=dropout_rate)

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

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attention of projected, head-split queries ``(B, H, T1, d_k)`` over keys/values
        ``(B, H, T2, d_k)`` -> ``(B, T1, D)`` (used by :meth:`forward` and by incremental
        decoding with cached keys/values)."""
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask)

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
        context = context.transpose(1, 2).reshape(value.size(0), -1, self.h * self.d_k)
        return self.linear_out(context)

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
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        matrix_bd = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.forward_attention(v, scores, mask)
