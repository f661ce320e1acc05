"""Self-attention keys/values of the decoded prefixes during incremental decoding."""

from typing import Tuple

import torch


class PrefixCache:
    """Keys and values of the first ``length`` positions of ``rows`` hypotheses, for every
    layer of a decoder.

    Stored step-major, ``(L, layers, 2, N, H, d_k)`` (step, layer, key/value, hypothesis,
    head, channel), in a flat buffer that grows by doubling: appending a step writes
    after the previous ones, and reordering the hypotheses after a beam step is one
    ``index_select`` into a second buffer. Neither allocates once the buffers are large
    enough (re-allocating and copying every cache each step costs as much as the
    attention itself).

    A cache is updated in place: after :meth:`start_step` or :meth:`select`, views
    returned earlier are stale.
    """

    def __init__(self, layers: int, heads: int, d_k: int, dtype: torch.dtype, device: torch.device) -> None:
        self.layers, self.heads, self.d_k = layers, heads, d_k
        self.data = torch.empty(0, dtype=dtype, device=device)
        self.spare = torch.empty(0, dtype=dtype, device=device)
        self.length = 0
        self.rows = 0

    def _view(self, buf: torch.Tensor, length: int, rows: int) -> torch.Tensor:
        numel = length * self.layers * 2 * rows * self.heads * self.d_k
        return buf[:numel].view(length, self.layers, 2, rows, self.heads, self.d_k)

    @staticmethod
    def _reserve(buf: torch.Tensor, numel: int, keep: int) -> torch.Tensor:
        """``buf`` with room for ``numel`` elements, its first ``keep`` ones preserved."""
        if buf.numel() >= numel:
            return buf
        grown = torch.empty(max(numel, 2 * buf.numel()), dtype=buf.dtype, device=buf.device)
        grown[:keep].copy_(buf[:keep])
        return grown

    def start_step(self, rows: int) -> None:
        """Make room for one more position of the current ``rows`` hypotheses."""
        if self.length == 0:
            self.rows = rows
        elif rows != self.rows:
            raise ValueError(f"the cache holds {self.rows} hypotheses, the step has {rows}")
        step = self.layers * 2 * rows * self.heads * self.d_k
        self.data = self._reserve(self.data, (self.length + 1) * step, self.length * step)
        self.length += 1

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Store the newest position's ``key``/``value`` ``(N, H, 1, d_k)`` of ``layer`` and
        return all its keys and values ``(N, H, L, d_k)`` (strided views)."""
        view = self._view(self.data, self.length, self.rows)
        view[-1, layer, 0] = key.squeeze(2)
        view[-1, layer, 1] = value.squeeze(2)
        return view[:, layer, 0].permute(1, 2, 0, 3), view[:, layer, 1].permute(1, 2, 0, 3)

    def select(self, rows: torch.Tensor) -> None:
        """Keep hypotheses ``rows`` ``(N',)`` (indices into the current ones, repeats allowed)."""
        n = rows.numel()
        numel = self.length * self.layers * 2 * n * self.heads * self.d_k
        self.spare = self._reserve(self.spare, numel, 0)
        torch.index_select(self._view(self.data, self.length, self.rows), 3, rows,
                           out=self._view(self.spare, self.length, n))
        self.data, self.spare = self.spare, self.data
        self.rows = n
