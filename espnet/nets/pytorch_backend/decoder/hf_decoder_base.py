"""Shared machinery of the decoders that wrap a pretrained Hugging Face language model
with its own tokenizer (``--decoder llama`` / ``--decoder whisper-decoder``).

Such a decoder is trained on reference *text* (the 5th label CSV column, else text
recovered from the SentencePiece ids) which it tokenizes itself; SentencePiece ids are
never fed to the pretrained embedding table. Decoding uses
the Hugging Face ``generate`` (KV cache, beam search, batched), see :meth:`decode`.

Loading reuses the offline-aware helpers of the pretrained frontends
(:func:`~espnet.nets.pytorch_backend.frontend.hf_base.load_pretrained`): a missing model
directory / id is a clear ``FileNotFoundError`` naming ``--decoder-model-name``.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder, DecodeOptions, Decoded
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


class HFTextDecoder(BaseDecoder):
    """Base of the text decoders. Subclasses set ``self.tokenizer`` and implement
    :meth:`forward_text` and :meth:`generate_ids`.

    Option of every such decoder: ``model_name`` (``--decoder-model-name``; ``None`` = the
    class's ``default_model_name``)."""

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
        utterance's generated token ids up to (without) the end token."""
        raise NotImplementedError

    @torch.no_grad()
    def decode(self, memory, memory_lengths, ctc=None, options: Optional[DecodeOptions] = None) -> List[Decoded]:
        """``generate`` with ``options.beam_size`` beams, at most ``options.max_new_tokens``
        tokens (the CTC head is not used: it is trained as an auxiliary loss only)."""
        options = options or DecodeOptions(beam_size=1)
        rows = self.generate_ids(memory, memory_lengths, options.beam_size, options.max_new_tokens)
        return [Decoded(row) for row in rows]

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
