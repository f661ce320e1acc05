"""Transformer decoder (ESPnet / Auto-AVSR layout), a batch scorer of the joint CTC/attention beam search."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder, SentencePieceVocabulary
from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.nets_utils import (make_non_pad_mask, rows_by_candidate, rows_by_utterance,
                                                    th_accuracy)
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos, sos_eos_from_lists
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.embedding import PositionalEncoding
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.mask import target_mask
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.pytorch_backend.transformer.prefix_cache import PrefixCache
from espnet.nets.pytorch_backend.transformer.repeat import repeat


def source_mask(lengths: torch.Tensor, frames: int) -> Optional[torch.Tensor]:
    """The source attention's ``(B, 1, T)`` bool mask of the real frames of an encoder output
    ``T`` frames long (``lengths`` ``(B,)``), ``None`` when nothing is padded."""
    if int(lengths.min()) == frames:
        return None
    return make_non_pad_mask(lengths, frames).unsqueeze(1)


class DecoderLayer(torch.nn.Module):
    """Pre-norm block: masked self-attention -> source attention -> FFN.

    Shapes:
        ``tgt`` ``(B, L, D)``, ``tgt_mask`` ``(B, L, L)``, ``memory`` ``(B, T, D)``,
        ``memory_mask`` ``(B, 1, T)`` -> ``(B, L, D)`` (masks passed through).
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
        self.dropout = Dropout(dropout_rate)

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: Optional[torch.Tensor],
        memory: torch.Tensor,
        memory_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
        x = self.block(tgt, lambda h: self.self_attn(h, h, h, tgt_mask),
                       lambda h: self.src_attn(h, memory, memory, memory_mask))
        return x, tgt_mask, memory, memory_mask

    def memory_keys_values(self, memory: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The source attention's keys and values of the encoder output ``memory`` ``(B, T, D)``,
        head-split ``(B, H, T, d_k)`` each: projected once per utterance, whatever number of
        hypotheses then attend to them (:meth:`shared_source_attention`)."""
        src = self.src_attn
        return src._split_heads(src.linear_k(memory)), src._split_heads(src.linear_v(memory))

    def shared_source_attention(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                                memory_mask: Optional[torch.Tensor],
                                utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Source attention of ``N = S * B`` normalised rows ``h`` ``(N, L, D)`` (the ``s``-th
        of utterance ``i`` at ``s * B + i``) over their utterance's keys/values ``(B, H, T,
        d_k)`` (:meth:`memory_keys_values`), an utterance's ``S`` rows as one set of ``S * L``
        queries (the same values as ``S`` copies of the encoder output would give, without
        projecting the copies); ``memory_mask`` ``(B, 1, T)`` or ``None`` -> ``(N, L, D)``.
        With ``utterances`` ``(N,)`` (long) row ``j`` attends to utterance ``utterances[j]``
        instead: any number of rows per utterance, in any order."""
        src = self.src_attn
        if utterances is not None:
            mask = None if memory_mask is None else memory_mask.index_select(0, utterances)
            return src.attend(src._split_heads(src.linear_q(h)), keys.index_select(0, utterances),
                              values.index_select(0, utterances), mask)
        b = keys.size(0)
        q = rows_by_utterance(src.linear_q(h), b)  # (B, S*L, D)
        out = src.attend(src._split_heads(q), keys, values, memory_mask)  # (B, S*L, D)
        return rows_by_candidate(out, h.size(0) // b)

    def forward_shared(self, x: torch.Tensor, self_mask: Optional[torch.Tensor], keys: torch.Tensor,
                       values: torch.Tensor, memory_mask: Optional[torch.Tensor],
                       utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The layer over ``N = S * B`` rows ``x`` ``(N, L, D)`` (self-attention mask
        ``(N, L, L)`` or ``(N, 1, L)``) whose source attention shares their utterance's
        keys/values (:meth:`shared_source_attention`; ``utterances`` ``(N,)``: each row's
        utterance, when the rows are not ``S`` per utterance) -> ``(N, L, D)``."""
        return self.block(x, lambda h: self.self_attn(h, h, h, self_mask),
                          lambda h: self.shared_source_attention(h, keys, values, memory_mask, utterances))

    def block(self, x: torch.Tensor, self_attention: Callable[[torch.Tensor], torch.Tensor],
              source_attention: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The layer's computation around its two attentions (pre-norm residual blocks and
        the FFN), shared by full passes and incremental decoding: ``self_attention`` /
        ``source_attention`` map the normalised ``(N, L, D)`` input to its attention output."""
        x = x + self.dropout(self_attention(self.norm1(x)))
        x = x + self.dropout(source_attention(self.norm2(x)))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


class TransformerDecoder(SentencePieceVocabulary, BaseDecoder):
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

    decoder_name = "transformer"

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

    options = (
        Option("dunits", 3072, "Feed-forward units of the Transformer decoder (3072 = Auto-AVSR).", minimum=1,
               flag="--dunits"),
        Option("dlayers", 6, "Blocks of the Transformer decoder (6 = Auto-AVSR).", minimum=1, flag="--dlayers"),
    )

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "TransformerDecoder":
        if config.odim is None:
            raise ValueError("--decoder transformer predicts SentencePiece tokens: give --sp-model-path and --dict-path")
        return cls(
            odim=config.odim,
            attention_dim=config.adim,
            attention_heads=config.aheads,
            linear_units=options["dunits"],
            num_blocks=options["dlayers"],
            dropout_rate=config.dropout_rate,
            lsm_weight=config.lsm_weight,
        )

    @property
    def search_vocab_size(self) -> int:
        return self.odim

    # ---- decoding: a batch scorer in the joint CTC/attention beam search (up to the encoder length) ----
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
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor, texts=None
    ) -> Dict[str, Any]:
        """Teacher-forced attention loss on the SentencePiece ``targets`` (``texts`` unused)."""
        ys_in, ys_out = add_sos_eos(targets, self.sos, self.eos, self.ignore_id)
        ys_mask = target_mask(ys_in, self.ignore_id)
        memory_mask = make_non_pad_mask(memory_lengths.to(memory.device), memory.size(1)).unsqueeze(1)
        logits, _ = self.forward(ys_in, ys_mask, memory, memory_mask)
        loss = self.criterion(logits, ys_out)
        acc = th_accuracy(logits.view(-1, self.odim), ys_out, self.ignore_id)
        return {"loss_att": loss, "acc": acc, "logits": logits, "ys_in": ys_in}

    @torch.no_grad()
    def score_sequences(self, memory: torch.Tensor, memory_lengths: torch.Tensor,
                        hyps: Sequence[List[int]], utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-likelihood ``(N,)`` float32 of each token sequence ``hyps[j]`` followed by
        ``<eos>``, given the encoder output of utterance ``j % B`` (``memory`` ``(B, T, D)``,
        lengths ``(B,)``; ``N`` a multiple of ``B``: ``N / B`` hypotheses per utterance, the
        ``s``-th of utterance ``i`` at ``s * B + i``), in one teacher-forced pass (no search):
        the attention rescoring of hypothesis lists. The source attention's keys and values
        are projected once per utterance, and its hypotheses attend to them together. With
        ``utterances`` ``(N,)`` (long) ``hyps[j]`` is scored on utterance ``utterances[j]``
        instead, any number per utterance."""
        b, n = memory.size(0), len(hyps)
        if utterances is None and n % b:
            raise ValueError(f"score_sequences: {n} hypotheses for {b} utterances (not a multiple)")
        if utterances is not None and utterances.numel() != n:
            raise ValueError(f"score_sequences: {n} hypotheses, {utterances.numel()} utterance indices")
        ys_in, ys_out = sos_eos_from_lists(hyps, self.sos, self.eos, self.ignore_id, memory.device)
        tgt_mask = target_mask(ys_in, self.ignore_id)
        state = self.batch_init_state(memory, memory_lengths)
        rows = None if utterances is None else utterances.to(memory.device)
        x = self.embed(ys_in)
        for layer, (keys, values) in zip(self.decoders, state["mem"]):
            x = layer.forward_shared(x, tgt_mask, keys, values, state["mask"], rows)
        logp = torch.log_softmax(self.output_layer(self.after_norm(x)).float(), dim=-1)
        valid = ys_out != self.ignore_id
        chosen = logp.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (chosen * valid).sum(dim=1)

    # ---- batched scorer interface (incremental decoding with key/value caches) ----------
    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Dict[str, Any]:
        """Project the encoder outputs ``memory`` ``(B, T, D)`` to source-attention
        keys/values once per utterance; the per-hypothesis self-attention caches start empty.
        Frames after ``memory_lengths`` ``(B,)`` are masked out of the source attention."""
        mem = [layer.memory_keys_values(memory) for layer in self.decoders]
        lengths = memory_lengths.to(memory.device)
        return {"mem": mem, "mask": source_mask(lengths, memory.size(1)), "lengths": lengths,
                "self": None, "width": 1}

    def batch_score(self, ys: torch.Tensor, state: Dict[str, Any]) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """Log-probabilities ``(B, W, V)`` of the token after prefixes ``ys`` ``(B, W, L)``.

        Only the newest position is computed: its keys/values are appended to the cached
        ones of the earlier positions (the same values a full causal pass would produce).
        The ``W`` hypotheses of an utterance attend to its memory together, as ``W`` queries.
        The cache is updated in place: a state is used once, then replaced by the returned one.
        """
        b, w, length = ys.shape
        n = b * w
        emb_layer, pos_layer = self.embed[0], self.embed[1]
        x = emb_layer(ys[:, :, -1].reshape(n, 1)) * pos_layer.xscale
        pe = pos_layer._table_for(x, length, length)
        x = x + pe[:, length - 1 : length]
        cache = state["self"]
        if cache is None:
            first = self.decoders[0].self_attn
            cache = PrefixCache(len(self.decoders), first.h, first.d_k, x.dtype, x.device)
        if cache.length != length - 1:
            raise ValueError(f"the cache holds {cache.length} positions but the prefixes have {length}")
        cache.start_step(n)
        for i, layer in enumerate(self.decoders):
            att, src = layer.self_attn, layer.src_attn

            def self_attention(h: torch.Tensor) -> torch.Tensor:  # the new position over the cached prefix
                keys, values = cache.append(i, att._split_heads(att.linear_k(h)), att._split_heads(att.linear_v(h)))
                return att.attend(att._split_heads(att.linear_q(h)), keys, values, None)

            def source_attention(h: torch.Tensor) -> torch.Tensor:  # an utterance's W hypotheses as W queries
                mem_k, mem_v = state["mem"][i]
                q = src._split_heads(src.linear_q(h).view(b, w, -1))  # (B, H, W, d_k)
                return src.attend(q, mem_k, mem_v, state["mask"]).view(n, 1, -1)

            x = layer.block(x, self_attention, source_attention)
        logits = self.output_layer(self.after_norm(x[:, -1]))
        return torch.log_softmax(logits, dim=-1).view(b, w, -1), {**state, "self": cache, "width": w}

    def select_state(self, state: Dict[str, Any], utts: torch.Tensor, prev_ids: torch.Tensor,
                     token_ids: torch.Tensor) -> Dict[str, Any]:
        rows = (utts.view(-1, 1) * state["width"] + prev_ids).view(-1)
        state["self"].select(rows)
        out = {**state, "width": prev_ids.size(1)}
        if utts.numel() < state["lengths"].numel():  # finished utterances leave the batch
            lengths = state["lengths"][utts]
            frames = int(lengths.max())
            out["mem"] = [(k[utts, :, :frames].contiguous(), v[utts, :, :frames].contiguous())
                          for k, v in state["mem"]]
            out["mask"] = source_mask(lengths, frames)
            out["lengths"] = lengths
        return out
