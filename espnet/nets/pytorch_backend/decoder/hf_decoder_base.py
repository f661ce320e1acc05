"""Shared machinery of the decoders that wrap a pretrained Hugging Face language model
with its own tokenizer (``--decoder llama`` / ``--decoder whisper-decoder``).

Such a decoder is trained on reference *text* (the 5th label CSV column, else text
recovered from the SentencePiece ids) which it tokenizes itself; SentencePiece ids are
never fed to the pretrained embedding table. Decoding: such a decoder is a batch scorer
of the project's joint CTC/attention beam search (:class:`HFTextDecoder`: incremental
scoring on the model's own KV cache, batched over hypotheses and utterances), so it gets
the CTC prefix scores of a trained CTC head, the length bonus and the batched path like
the Transformer decoder. The model's own ``generate`` stays as :meth:`generate_ids`, the
reference the search is checked against (greedy ids equal).

Loading reuses the offline-aware helpers of the pretrained frontends
(:func:`~espnet.nets.pytorch_backend.frontend.hf_base.load_pretrained`): a missing model
directory / id is a clear ``FileNotFoundError`` naming ``--decoder-model-name``.
"""

import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder, DecodeOptions
from espnet.nets.pytorch_backend.frontend.hf_base import import_transformers, model_not_found, offline

def load_tokenizer(name: str, what: str):
    """``AutoTokenizer.from_pretrained(name)`` offline-aware, never running remote code."""
    transformers = import_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(
            os.path.expanduser(name), local_files_only=offline(), trust_remote_code=False
        )
    except (OSError, ValueError, TypeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise model_not_found(name, "--decoder-model-name", what, f"its tokenizer could not be loaded [{detail}]") from None


def downsample_frames(x: torch.Tensor, lengths: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack ``k`` consecutive frames: ``(B, T, D)`` -> ``(B, ceil(T/k), k*D)``, lengths
    ``ceil(len/k)``. Frames after an item's length are zeroed first, so a stacked frame
    that straddles the end holds zeros (not batch-mates' padding values)."""
    if k <= 1:
        return x, lengths
    b, t, d = x.shape
    keep = torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]
    x = x * keep.unsqueeze(-1).to(x.dtype)
    pad = (-t) % k
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    x = x.reshape(b, (t + pad) // k, k * d)
    return x, torch.div(lengths + k - 1, k, rounding_mode="floor")


@dataclass
class HFSearchState:
    """Beam-search state of a pretrained decoder.

    Attributes:
        cache: The model's KV cache (a transformers ``Cache``); its batch rows are the
            running hypotheses, utterance-major (row ``b * width + w``), or one row per
            utterance before the first selection.
        width: Hypotheses per utterance in ``cache``.
        first: ``(B, V)`` logits of the first token (from the prompt pass), until scored.
        context: Per-utterance tensors of the subclass (first dimension ``B``), cut to the
            remaining utterances when some finish.
    """

    cache: Any
    width: int = 1
    first: Optional[torch.Tensor] = None
    context: Dict[str, Optional[torch.Tensor]] = field(default_factory=dict)

    @property
    def utterances(self) -> int:
        return next(v.size(0) for v in self.context.values() if v is not None)


class HFTextDecoder(BaseDecoder):
    """Base of the text decoders. Subclasses set ``self.tokenizer`` and implement
    :meth:`forward_text`, the scorer hooks :meth:`start_prompt` / :meth:`step` (and
    ``sos`` / ``eos``), and :meth:`generate_ids` (the model's own ``generate``, kept as
    the reference of the search).

    CTC: the head predicts blank (0) and the tokenizer's ids shifted by one
    (``ctc_token_offset = 1``); the beam search's CTC scorer maps it onto the decoder's
    output ids.

    Option of every such decoder: ``model_name`` (``--decoder-model-name``; ``None`` = the
    class's ``default_model_name``)."""

    ctc_token_offset = 1
    default_model_name: str = ""
    options = (Option("model_name", None, "Hugging Face id or local directory of the pretrained decoder "
                      "(model + tokenizer).", type=str, flag="--decoder-model-name", replaceable=True),)

    @classmethod
    def model_dir(cls, options: Dict[str, Any]) -> str:
        return options["model_name"] or cls.default_model_name

    def pretrained_model(self) -> torch.nn.Module:
        """The wrapped pretrained network: what ``--use-qlora`` quantises and adapts."""
        raise NotImplementedError

    def on_qlora_applied(self) -> None:
        """Called after ``--use-qlora`` added adapters inside :meth:`pretrained_model`."""

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def tokenize(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Texts -> target ids ``(B, L)`` padded with -1 (no special tokens) and lengths."""
        ids = [self.text_ids(t) for t in texts]
        lengths = torch.tensor([len(i) for i in ids], dtype=torch.long)
        out = torch.full((len(ids), max([1] + [len(i) for i in ids])), -1, dtype=torch.long)
        for i, row in enumerate(ids):
            if row:
                out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out, lengths

    def text_ids(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def forward_train(self, memory, memory_lengths, targets, texts=None):
        """Loss on the reference ``texts`` (``targets``, SentencePiece ids, unused)."""
        return self.forward_text(memory, memory_lengths, self._require_texts(texts))

    def _require_texts(self, texts) -> List[str]:
        if texts is None or any(t is None for t in texts):
            raise ValueError(f"{type(self).__name__} is trained on text: every utterance needs its transcript")
        return list(texts)

    def generate_ids(self, memory: torch.Tensor, memory_lengths: torch.Tensor, beam_size: int = 1,
                     max_new_tokens: int = 64) -> List[List[int]]:
        """The model's own ``generate`` on a padded batch of encoder outputs: each
        utterance's generated token ids up to (without) the end token. Not the decoding
        path (see :class:`HFTextDecoder`'s scorer methods): the reference it is checked
        against, and the speed baseline."""
        raise NotImplementedError

    # ---- batch scorer of the joint CTC/attention beam search ----------------------------
    # Subclasses implement start_prompt (the prompt pass) and step (one token per hypothesis);
    # the cache is reordered with its own reorder_cache when hypotheses are selected.
    suppress_ids: Tuple[int, ...] = ()
    begin_suppress_ids: Tuple[int, ...] = ()

    @property
    def search_vocab_size(self) -> int:
        return int(self.pretrained_model().get_output_embeddings().out_features)

    @property
    def max_positions(self) -> Optional[int]:
        """Most decoder positions (prompt + generated) of the model, ``None`` if unbounded."""
        return None

    @property
    def prompt_length(self) -> int:
        """Decoder positions the prompt takes before the first generated token (fixed
        prompts only; 0 when it varies)."""
        return 0

    def max_length_ratio(self, options: DecodeOptions) -> float:
        """At most ``options.max_new_tokens`` tokens (``--max-new-tokens``), fewer when the
        prompt and they would not fit the model's positions."""
        limit = options.max_new_tokens
        if self.max_positions is not None:
            limit = min(limit, self.max_positions - self.prompt_length)
        return -float(max(limit, 1))

    def start_prompt(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> Tuple[torch.Tensor, HFSearchState]:
        """Run the prompt of each utterance: logits of the first token ``(B, V)`` and the state."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, length: int, state: HFSearchState) -> torch.Tensor:
        """Logits ``(N, V)`` after feeding ``tokens`` ``(N, 1)``, the newest token of each
        hypothesis (``N = B * width`` rows of ``state.cache``; the prefixes have ``length``
        ids, ``sos`` included). Appends to the cache in place."""
        raise NotImplementedError

    def select_cache(self, state: HFSearchState, rows: torch.Tensor, utts: torch.Tensor, width: int) -> None:
        """Keep cache rows ``rows`` (``B' * width``, of the utterances ``utts``) in place."""
        state.cache.reorder_cache(rows)

    def batch_init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> HFSearchState:
        """Run the prompts of the padded batch ``memory`` ``(B, T, D)`` (lengths ``(B,)``)."""
        first, state = self.start_prompt(memory, memory_lengths.to(memory.device))
        return replace(state, first=first, width=1)

    def batch_score(self, ys: torch.Tensor, state: HFSearchState) -> Tuple[torch.Tensor, HFSearchState]:
        """Log-probabilities ``(B, W, V)`` (float32) of the token after the prefixes ``ys``
        ``(B, W, L)``: the prompt pass's for the first token, then one cached step per
        token. Tokens the model's generation config suppresses get ``-inf`` (as in its
        ``generate``)."""
        b, w, length = ys.shape
        if state.first is not None:
            if length != 1 or w != 1:
                raise ValueError(f"the first step scores one prefix of length 1 per utterance, got {tuple(ys.shape)}")
            logits = state.first
        else:
            logits = self.step(ys[:, :, -1].reshape(b * w, 1), length, state)
        logp = torch.log_softmax(logits.float(), dim=-1).view(b, w, -1)
        if self.suppress_ids:
            logp[:, :, list(self.suppress_ids)] = -float("inf")
        if length == 1 and self.begin_suppress_ids:
            logp[:, :, list(self.begin_suppress_ids)] = -float("inf")
        return logp, replace(state, first=None, width=w)

    def select_state(self, state: HFSearchState, utts: torch.Tensor, prev_ids: torch.Tensor,
                     token_ids: torch.Tensor) -> HFSearchState:
        """Reorder the cache so that row ``b * W' + w`` holds hypothesis ``prev_ids[b, w]`` of
        utterance ``utts[b]``; drop finished utterances from the context."""
        width = prev_ids.size(1)
        rows = (utts.view(-1, 1) * state.width + prev_ids).reshape(-1)
        self.select_cache(state, rows, utts, width)
        context = state.context
        if utts.numel() < state.utterances:
            context = {k: (v[utts] if v is not None else None) for k, v in context.items()}
        return replace(state, width=width, context=context)

    def ids_to_text(self, token_ids, sentencepiece=None) -> str:
        """Text of generated ids with the decoder's own tokenizer (``sentencepiece`` unused)."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True).strip()

    @property
    def ctc_vocab_size(self) -> int:
        return self.vocab_size + 1  # blank = 0, token i -> i + 1

    def ctc_targets(self, targets, texts) -> torch.Tensor:
        ids, _ = self.tokenize(self._require_texts(texts))
        return torch.where(ids >= 0, ids + 1, ids).to(targets.device)

    @staticmethod
    def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, Any]:
        """Cross-entropy of ``logits (B, S, V)`` against ``labels (B, S)`` (-100 = not
        counted): the mean over counted tokens (``loss_att``), per utterance
        (``loss_per_utt``) and the token accuracy (``acc``)."""
        logits = logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="none"
        ).view(labels.shape)
        counted = labels != -100
        acc = float((logits.argmax(-1)[counted] == labels[counted]).float().mean()) if bool(counted.any()) else 0.0
        return {"loss_att": nll.sum() / counted.sum().clamp(min=1), "acc": acc,
                "loss_per_utt": nll.sum(1) / counted.sum(1).clamp(min=1), "labels": labels}
