"""Contract shared by every decoder (training, CTC vocabulary, decoding)."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.scorer_interface import BatchScorerInterface


#: What decodes (``DecodeOptions.mode``, ``eval.py --decode-mode``).
DECODE_MODES = ("decoder", "ctc-greedy")

#: Where a Paraformer takes the token counts of its hypotheses from (``DecodeOptions.nar_count``,
#: ``eval.py --nar-count``): its CIF predictor's fires, the length of its CTC head's best path,
#: or both.
NAR_COUNTS = ("cif", "ctc", "both")

#: What scores a Paraformer's candidates beside its CTC head (``DecodeOptions.nar_scorer``,
#: ``eval.py --nar-scorer``): its own parallel decoder, its auxiliary autoregressive decoder
#: (teacher-forced, one parallel pass), or the mean of the two.
NAR_SCORERS = ("paraformer", "ar", "both")


@dataclass
class DecodeOptions:
    """How to decode (every decoder reads what applies to it).

    Attributes:
        beam_size: Hypotheses kept per step (1 = greedy).
        ctc_weight: Weight of the CTC prefix score in joint CTC/attention decoding (the
            decoder gets ``1 - ctc_weight``); used when the model's CTC head was trained.
        max_new_tokens: Most tokens per utterance for a decoder with its own tokenizer
            (LLaMA, Whisper); the Transformer decoder ends at the encoder length.
        penalty: Length bonus per token, added to the score of every hypothesis: the beam
            search's, and a Paraformer's rescored candidates'.
        mode: ``decoder``: the decoder's decoding (the joint beam search, or a
            ``decodes_itself`` decoder's own); ``ctc-greedy``: the best path of the CTC head
            alone (argmax per frame, repeats merged, blanks dropped), for any model whose
            CTC head was trained.
        candidates: Paraformer: hypotheses of one parallel pass each, for the token counts
            nearest the predicted one (``n, n-1, n+1, n-2, ...``), of which the one with the
            best joint score (``ctc_weight`` x the CTC head's log-likelihood + ``1 -
            ctc_weight`` x the decoder's) is kept; 1 = the single pass (no CTC head needed).
            With CTC queries (``--paraformer-queries ctc``) the passes are at the CTC head's
            best path with ``0 .. candidates-1`` nats taken off the blank instead.
        nar_count: Paraformer: the predicted count ``n`` the candidates are taken around:
            ``cif``, the tokens its CIF predictor fires (the plain pass); ``ctc``, the tokens
            of its CTC head's best path (the CIF weights rescaled to that count, as in
            training); ``both``, the candidates around each count, a count tried once.
        nar_scorer: Paraformer: the decoder term of the candidates' joint score: the
            log-probabilities of the Paraformer's own tokens (``paraformer``), the
            log-likelihood its auxiliary autoregressive decoder gives the candidate's tokens
            and ``<eos>`` (``ar``; a Paraformer trained with ``--paraformer-ar-dlayers``),
            or their mean (``both``).
        nar_alternatives: Paraformer: besides each candidate, that many more, each with the
            token at one of its least confident positions (smallest margin between the best
            and the second-best log-probability) replaced by the second best; all scored
            together as the candidates are (0 = none).
        nar_ctc_candidate: Paraformer: the CTC head's best path joins the candidates, scored
            as they are (its Paraformer term from a pass at its token count).
        nar_ar_top: Paraformer, with ``nar_scorer`` ``ar`` or ``both``: the auxiliary decoder
            scores only each utterance's ``nar_ar_top`` best hypotheses by the joint score
            with the Paraformer's own term (what ``nar_scorer`` ``paraformer`` ranks by), and
            the one kept is the best of those (0 = it scores them all).
        nar_ctc_fusion: Paraformer, with ``nar_count`` ``ctc`` or ``both``: in every
            hypothesis with as many tokens as the CTC head's best path, the token at position
            ``k`` is chosen by its Paraformer log-probability + ``nar_ctc_fusion`` x its CTC
            log-posterior at the frames of the path's ``k``-th token (the largest over them);
            its decoder score stays the Paraformer's (0 = the Paraformer's argmax).
    """

    beam_size: int = 40
    ctc_weight: float = 0.1
    max_new_tokens: int = 64
    penalty: float = 0.0
    mode: str = "decoder"
    candidates: int = 1
    nar_count: str = "cif"
    nar_scorer: str = "paraformer"
    nar_alternatives: int = 0
    nar_ctc_candidate: bool = False
    nar_ar_top: int = 0
    nar_ctc_fusion: float = 0.0

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {self.beam_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"--ctc-weight must be in [0, 1], got {self.ctc_weight}")
        if not math.isfinite(self.penalty):
            raise ValueError(f"--penalty must be a finite number, got {self.penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.mode not in DECODE_MODES:
            raise ValueError(f"--decode-mode must be one of {', '.join(DECODE_MODES)}, got {self.mode!r}")
        if self.nar_count not in NAR_COUNTS:
            raise ValueError(f"--nar-count must be one of {', '.join(NAR_COUNTS)}, got {self.nar_count!r}")
        if self.nar_scorer not in NAR_SCORERS:
            raise ValueError(f"--nar-scorer must be one of {', '.join(NAR_SCORERS)}, got {self.nar_scorer!r}")
        refusal = nar_candidates_refusal(self.candidates, nar_count=self.nar_count, nar_scorer=self.nar_scorer,
                                         nar_alternatives=self.nar_alternatives, nar_ar_top=self.nar_ar_top,
                                         nar_ctc_fusion=self.nar_ctc_fusion)
        if refusal:
            raise ValueError(refusal)

    def ctc_path_request(self) -> Optional[str]:
        """What of these options decodes from the CTC head's best path, as the clause an error
        names it by (``--nar-count`` first, then ``--nar-ctc-candidate``), or ``None``: a
        Paraformer needs its CTC head for them whatever ``ctc_weight`` is."""
        if self.nar_count != "cif":
            return f"--nar-count {self.nar_count} counts the tokens of the CTC head's best path"
        if self.nar_ctc_candidate:
            return "--nar-ctc-candidate adds the CTC head's best path to the candidates"
        if self.nar_ctc_fusion:
            return f"--nar-ctc-fusion {self.nar_ctc_fusion:g} fuses the CTC head's posteriors at its best path's tokens"
        return None


def nar_ar_top_refusal(nar_ar_top: int, nar_scorer: str) -> Optional[str]:
    """The one-line refusal of ``--nar-ar-top`` (``None`` when accepted): below 0, or above 0
    without the auxiliary decoder's score (``--nar-scorer ar`` or ``both``), which it limits."""
    if nar_ar_top < 0:
        return f"--nar-ar-top must be >= 0, got {nar_ar_top}"
    if nar_ar_top and nar_scorer == "paraformer":
        return (f"--nar-ar-top {nar_ar_top} limits the hypotheses the auxiliary autoregressive decoder scores: it "
                f"needs --nar-scorer ar or both")
    return None


def nar_candidates_refusal(candidates: int, decoder: Optional[str] = None, mode: str = "decoder",
                           model: str = "this model", nar_count: str = "cif",
                           nar_scorer: str = "paraformer", nar_alternatives: int = 0,
                           nar_ctc_candidate: bool = False, nar_ar_top: int = 0,
                           nar_ctc_fusion: float = 0.0) -> Optional[str]:
    """The one-line refusal of ``--nar-candidates`` / ``--nar-count`` / ``--nar-scorer`` /
    ``--nar-alternatives`` / ``--nar-ctc-candidate`` / ``--nar-ar-top`` / ``--nar-ctc-fusion``
    (``None`` when the values are accepted): a count below 1 (or alternatives below 0), what
    :func:`nar_ar_top_refusal` refuses, and a fusion weight below 0, not finite, or without the
    CTC head's count (``nar_count`` ``cif``) always; more than 1 candidate, a count other than
    ``cif``, a scorer other than ``paraformer``, alternatives, the CTC candidate or the fusion,
    for anything but a Paraformer's own decoding
    (``decoder``: the model's ``--decoder``, ``None`` while the model is not known yet;
    ``mode``: ``--decode-mode``; ``model``: how the message names the model)."""
    if candidates < 1:
        return f"--nar-candidates must be >= 1, got {candidates}"
    if nar_alternatives < 0:
        return f"--nar-alternatives must be >= 0, got {nar_alternatives}"
    top = nar_ar_top_refusal(nar_ar_top, nar_scorer)
    if top:
        return top
    if not (math.isfinite(nar_ctc_fusion) and nar_ctc_fusion >= 0):
        return f"--nar-ctc-fusion must be a finite number >= 0, got {nar_ctc_fusion:g}"
    if nar_ctc_fusion and nar_count == "cif":
        return (f"--nar-ctc-fusion {nar_ctc_fusion:g} fuses the CTC head's posteriors at its best path's tokens into "
                f"hypotheses of as many tokens: it needs --nar-count ctc or both")
    asked = [flag for flag, default in ((f"--nar-candidates {candidates}", candidates == 1),
                                        (f"--nar-count {nar_count}", nar_count == "cif"),
                                        (f"--nar-scorer {nar_scorer}", nar_scorer == "paraformer"),
                                        (f"--nar-alternatives {nar_alternatives}", nar_alternatives == 0),
                                        ("--nar-ctc-candidate", not nar_ctc_candidate),
                                        (f"--nar-ar-top {nar_ar_top}", nar_ar_top == 0),
                                        (f"--nar-ctc-fusion {nar_ctc_fusion:g}", nar_ctc_fusion == 0))
             if not default]
    if decoder is None or not asked or (decoder == "paraformer" and mode == "decoder"):
        return None
    how = "" if mode == "decoder" else f", decoded with --decode-mode {mode}"
    return (f"{' '.join(asked)}: only a Paraformer's own decoding (--decoder paraformer, --decode-mode "
            f"decoder) has candidates; {model} has --decoder {decoder}{how}")


@dataclass
class Decoded:
    """The best hypothesis of one utterance: token ids of the decoder's vocabulary (no
    start/end tokens), its score (``None`` when the decoder reports none) and whether it was
    stopped at the length limit instead of ending with the end token (``hit_length_limit``)."""

    token_ids: List[int]
    score: Optional[float] = None
    hit_length_limit: bool = False


class BaseDecoder(torch.nn.Module, BatchScorerInterface, ABC):
    """A decoder owns its vocabulary and turns encoder memory into text.

    Training: ``forward_train(memory (B, T, D), memory_lengths (B,), targets (B, L), texts)
    -> {"loss_att": scalar, "acc": float, ...}``. Every decoder gets both forms of the
    reference: ``targets``, the SentencePiece ids of the label list padded with -1, and
    ``texts``, the transcripts; it uses the one its vocabulary needs (the Transformer
    decoder the ids, a pretrained decoder with its own tokenizer the texts).

    CTC: the CTC head of the model predicts this decoder's vocabulary (``ctc_vocab_size``
    classes, blank = 0 included) with the targets ``ctc_targets(targets, texts)``; the CTC
    class of decoder token ``t`` is ``t + ctc_token_offset`` (0 for the Transformer decoder,
    whose vocabulary has the blank at 0; 1 for a pretrained decoder's vocabulary).

    Decoding: by default a decoder is a batch scorer
    (:class:`~espnet.nets.scorer_interface.BatchScorerInterface`: ``batch_init_state`` /
    ``batch_score`` / ``select_state``) in the one joint CTC/attention beam search
    (:class:`~espnet.nets.beam_search.BatchBeamSearch`, assembled by
    :func:`espnet.asr.recognizer.build_beam_search`) that every such decoder shares with the
    CTC prefix scorer and the length bonus. For it the decoder declares:

    * ``sos`` / ``eos``: the ids that open and close a hypothesis (``sos`` is the first
      element of every prefix the search passes to ``batch_score``; a decoder whose prompt
      is longer, e.g. Whisper's ``<|startoftranscript|><|notimestamps|>``, keeps the rest of
      it in its state);
    * ``search_vocab_size``: ``V`` of the ``(B, W, V)`` scores of ``batch_score``;
    * ``max_length_ratio(options)``: the search's ``maxlenratio`` (0 = up to the encoder
      length with end detection; ``-N`` = at most ``N`` tokens).

    A decoder with a search of its own (e.g. a non-autoregressive one) sets
    ``decodes_itself = True`` and implements :meth:`recognize`, which the recognizer calls
    instead. Either way ``ids_to_text`` turns the ids into text, and ``check_tokenizer``
    says whether the SentencePiece tokenizer (``TextTransform`` or ``None``) is enough.

    ``options`` (class attribute): the decoder's own options (see ``component_options.py``).
    """

    options: Tuple[Option, ...] = ()
    decodes_itself: bool = False
    reads_ctc: bool = False  # forward_train(..., ctc=the CTC head): its inputs come from the head's posteriors
    ctc_token_offset: int = 0
    sos: int
    eos: int

    @classmethod
    @abstractmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "BaseDecoder":
        """Build from a :class:`ModelConfig` and this decoder's resolved ``options``."""
        raise NotImplementedError

    @abstractmethod
    def forward_train(self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor,
                      texts: Optional[List[Optional[str]]] = None) -> Dict[str, Any]:
        raise NotImplementedError

    @property
    @abstractmethod
    def ctc_vocab_size(self) -> int:
        """Classes of the CTC head (blank = 0 included)."""
        raise NotImplementedError

    @abstractmethod
    def ctc_targets(self, targets: torch.Tensor, texts: Optional[List[Optional[str]]]) -> torch.Tensor:
        """CTC label ids ``(B, L)`` padded with -1, in ``[1, ctc_vocab_size)``."""
        raise NotImplementedError

    @property
    def search_vocab_size(self) -> int:
        """``V`` of the scores :meth:`batch_score` returns (the decoder's output classes)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare its search vocabulary")

    def max_length_ratio(self, options: DecodeOptions) -> float:
        """``maxlenratio`` of the beam search: 0 = up to the encoder length, with end detection."""
        return 0.0

    def check_options(self, options: DecodeOptions) -> None:
        """Raise a one-line ``ValueError`` when ``options`` ask for what this decoder cannot
        do (called before decoding starts; by default every option is accepted)."""

    def recognize(self, memory: torch.Tensor, memory_lengths: torch.Tensor, ctc: Optional[torch.nn.Module],
                  options: DecodeOptions) -> List[Decoded]:
        """Best hypothesis per utterance of a padded batch of encoder outputs, by the
        decoder's own search (only for ``decodes_itself`` decoders)."""
        raise NotImplementedError(f"{type(self).__name__} is decoded by the shared beam search, not by itself")

    @abstractmethod
    def ids_to_text(self, token_ids: Sequence[int], sentencepiece) -> str:
        """Text of decoded ids (``sentencepiece``: the model's SentencePiece tokenizer or ``None``)."""
        raise NotImplementedError

    def condition_on(self, previous_texts: Sequence[str]):
        """A context manager under which the decoder decodes utterance ``i`` of the next batches
        after ``previous_texts[i]`` (what came before it in the recording), as Whisper's
        ``<|startofprev|>`` prompt. Only decoders trained that way do it (Whisper); here every
        text must be empty."""
        import contextlib

        if any(t.strip() for t in previous_texts):
            raise ValueError(f"{type(self).__name__} does not condition on previous text (Whisper decoders do)")
        return contextlib.nullcontext()

    def check_tokenizer(self, sentencepiece) -> None:
        """Raise when decoding needs a SentencePiece tokenizer that is not given."""


class SentencePieceVocabulary:
    """The vocabulary of a decoder trained from scratch on the model's SentencePiece units:
    its ``odim`` classes are the units (blank/``<unk>`` = 0, ``<sos/eos>`` = ``odim - 1``), the
    CTC head predicts the same classes (``ctc_token_offset`` 0) and decoding needs the
    tokenizer. Put before :class:`BaseDecoder` in the bases; ``decoder_name`` is the
    ``--decoder`` value named in errors."""

    decoder_name: str = ""
    odim: int

    @property
    def ctc_vocab_size(self) -> int:
        return self.odim

    def ctc_targets(self, targets: torch.Tensor, texts: Optional[List[Optional[str]]] = None) -> torch.Tensor:
        return targets

    def check_tokenizer(self, sentencepiece) -> None:
        if sentencepiece is None:
            raise ValueError(f"--decoder {self.decoder_name} decodes SentencePiece tokens: give --sp-model-path and "
                             "--dict-path")

    def ids_to_text(self, token_ids: Sequence[int], sentencepiece) -> str:
        self.check_tokenizer(sentencepiece)
        return sentencepiece.post_process(token_ids)
