"""Paraformer: a non-autoregressive decoder (CIF predictor + parallel decoder + glancing LM sampler).

Gao, Zhang, McLoughlin & Yan, "Paraformer: Fast and Accurate Parallel Transformer for
Non-autoregressive End-to-End Speech Recognition" (Interspeech 2022); FunASR is its public
implementation. A CIF predictor (:mod:`.cif`) turns the encoder output into one acoustic
embedding per token; Transformer blocks whose self-attention sees every embedding (masked
only for padding) and whose source attention reads the encoder output turn them into token
posteriors in one pass. Training adds the quantity loss ``|sum(alpha) - N|`` and the glancing
language model sampler (a first pass without gradient; a share of the acoustic embeddings,
proportional to the tokens that pass got wrong, replaced by the target tokens' embeddings
for the second, trained pass).

With ``queries="ctc"`` (Paraformer-v2: An, Li, Gao & Zhang, "Paraformer-v2: An improved
non-autoregressive transformer for noise-robust speech recognition", 2024) the decoder's
inputs come from the CTC head instead of the CIF predictor: one per token of the CTC
alignment (the Viterbi alignment of the target in training, the best path in decoding), the
mean of the CTC posteriors over the token's frames times the token embedding matrix.
"""

from typing import Any, Dict, List, Optional

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.ctc import forced_alignment, token_reduce
from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder, Decoded, DecodeOptions, SentencePieceVocabulary
from espnet.nets.pytorch_backend.decoder.cif import CifPredictor, integrate_and_fire, scale_to_lengths
from espnet.nets.pytorch_backend.decoder.paraformer_candidates import blank_penalty_candidates, rescored
from espnet.nets.pytorch_backend.decoder.transformer_decoder import DecoderLayer, TransformerDecoder, source_mask
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask, th_accuracy
from espnet.nets.pytorch_backend.transformer.embedding import _sinusoid
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.repeat import repeat


def glancing_mask(predicted: torch.Tensor, targets: torch.Tensor, ratio: float, ignore_id: int = -1,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Positions whose acoustic embedding the glancing sampler replaces by the target token's.

    Per utterance, ``floor(ratio * wrong)`` positions (``wrong``: the tokens of the first
    pass that differ from the target), drawn uniformly without replacement among its
    ``N`` target positions (as FunASR does).

    Args:
        predicted: First-pass argmax ``(B, L)`` int64.
        targets: ``(B, L)`` int64, padded with ``ignore_id``.
        ratio: Share in ``[0, 1]``.

    Returns:
        ``(B, L)`` bool, ``False`` on padding.
    """
    valid = targets != ignore_id
    wrong = ((predicted != targets) & valid).sum(dim=1)
    chosen = torch.floor(wrong.double() * ratio).long()
    scores = torch.rand(targets.shape, generator=generator).to(targets.device)  # CPU draws on every device
    scores = scores.masked_fill(~valid, 2.0)  # padding sorts last
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each position's draw within its utterance
    return (rank < chosen.unsqueeze(1)) & valid


class ParaformerDecoder(SentencePieceVocabulary, BaseDecoder):
    """Paraformer: CIF predictor -> one acoustic embedding per token -> parallel Transformer
    blocks -> tokens, in one pass (no beam search); trained with label-smoothed
    cross-entropy, the quantity loss and the glancing sampler. Vocabulary: the SentencePiece
    one of the Transformer decoder (``<blank>`` + units + ``<eos>``, CTC classes the same).

    Args:
        odim: Vocabulary size ``V``.
        attention_dim: ``D`` (= the encoder output size).
        attention_heads, linear_units, num_blocks, dropout_rate: The decoder blocks.
        lsm_weight: Label smoothing of the cross-entropy.
        threshold: CIF firing threshold (> 0).
        tail_threshold: Decoding: a remainder ``r`` after the last frame fires a last token
            when ``r + tail_threshold >= threshold`` (0 = never).
        quantity_weight: Weight of the quantity loss within ``loss_att`` (which the hybrid
            loss scales by ``1 - ctc_weight``).
        sampling_ratio: Glancing sampler share (0 = no sampler, one trained pass).
        cif_kernel: Frames of the CIF predictor's convolution.
        detach_predictor: The predictor reads the encoder output detached: its weights (and
            the quantity loss) train the predictor alone, not the encoder; the acoustic
            embeddings still carry the cross-entropy's gradient to the encoder frames.
        ar_dlayers: Blocks of an auxiliary autoregressive :class:`TransformerDecoder` (same
            size, ``ar_decoder``) trained beside the Paraformer on the same encoder output
            (teacher-forced, as the Transformer decoder is trained), which can score the
            decoding candidates (``DecodeOptions.nar_scorer``); 0 = none.
        ar_weight: Weight of its loss within ``loss_att``.
        detach_encoder: The Paraformer (predictor, CIF and decoder) trains on a detached copy
            of the encoder output: the encoder learns from the CTC head and the auxiliary
            decoder alone (the losses of an autoregressive model), the Paraformer on top of it.
        live_predictor: With ``detach_encoder``: the quantity loss reaches the encoder through
            the predictor (a second predictor pass on the live encoder output, for that loss
            alone); the cross-entropy still trains the predictor's weights but not the encoder.
        queries: Where the acoustic embeddings come from: ``"cif"`` (the CIF predictor) or
            ``"ctc"`` (Paraformer-v2: per token of the CTC alignment, the mean of the CTC
            head's posteriors ``(V,)`` over its frames times ``embed.weight`` ``(V, D)``; the
            target's Viterbi alignment in training, the best path in decoding, so the count is
            the path's; no predictor and no quantity loss; the posteriors are read without
            gradient, the CTC head trains by its own loss, which needs ``--ctc-weight`` > 0).

    Tensor contracts:
        * ``forward_train(memory (B, T, D) float, memory_lengths (B,) int frames, targets
          (B, L) int64 padded with -1)`` -> ``loss_att`` (cross-entropy + ``quantity_weight``
          x quantity loss, scalar), ``loss_ce``, ``loss_quantity`` (mean over the batch of
          ``|sum_t alpha - N|`` of the unscaled weights), ``acc`` (float), ``logits``
          ``(B, L, V)``, ``embed_lengths`` ``(B,)`` (= the target lengths ``N``); with an
          auxiliary decoder ``loss_ar`` too (its label-smoothed cross-entropy, in
          ``loss_att`` with weight ``ar_weight``).
        * ``forward(embeddings (N, K, D), embed_lengths (N,), memory (B, T, D),
          memory_lengths (B,)) -> logits (N, K, V)``, ``N = S * B`` (``S`` passes per
          utterance, the ``s``-th of utterance ``i`` at row ``s * B + i``; ``S = 1`` but for
          decoding candidates): positions from ``embed_lengths`` on are padding (masked as
          keys; their rows are not used).
        * ``recognize``: :class:`Decoded` per utterance, the argmax token of each fired
          embedding; equal for an utterance decoded alone or in a padded batch.
        * ``queries="ctc"``: ``forward_train(..., ctc=CTC head)`` and ``recognize(..., ctc)``
          read its log-posteriors ``(B, T, V)``; ``loss_quantity`` is not reported.
    """

    decoder_name = "paraformer"

    decodes_itself = True

    options = (
        Option("dunits", 3072, "Feed-forward units of the Transformer/Paraformer decoder blocks.", minimum=1,
               flag="--dunits"),
        Option("dlayers", 6, "Blocks of the Transformer/Paraformer decoder.", minimum=1, flag="--dlayers"),
        Option("threshold", 1.0, "CIF firing threshold: a token fires each time the frames' weights add up to "
               "it.", greater_than=0.0, flag="--paraformer-threshold"),
        Option("tail_threshold", 0.45, "Decoding: the weight left after the last frame fires a last token when it "
               "plus this reaches the threshold (FunASR: 0.45; 0 = never).", minimum=0.0, maximum=1.0,
               flag="--paraformer-tail-threshold"),
        Option("quantity_weight", 1.0, "Weight of the quantity loss |sum(alpha) - target length|, added to the "
               "cross-entropy, both scaled by 1 - --ctc-weight in the hybrid loss (FunASR's predictor weight 1 "
               "adds it unscaled).", minimum=0.0, flag="--paraformer-quantity-weight"),
        Option("sampling_ratio", 0.75, "Glancing LM sampler: share of the first pass's wrong tokens whose acoustic "
               "embedding the target embedding replaces (FunASR: 0.75; 0 = no sampler).", minimum=0.0, maximum=1.0,
               flag="--paraformer-sampling-ratio"),
        Option("cif_kernel", 3, "Frames of the CIF predictor's convolution over time (odd).", minimum=1,
               flag="--paraformer-cif-kernel"),
        Option("detach_predictor", False, "The CIF predictor reads a detached copy of the encoder output: the "
               "quantity loss and the weights' gradient train the predictor only, not the encoder.",
               flag="--paraformer-detach-predictor"),
        Option("ar_dlayers", 0, "Blocks of an auxiliary autoregressive Transformer decoder trained beside the "
               "Paraformer (teacher-forced, weight --paraformer-ar-weight): it trains the encoder as an AR model's "
               "decoder does and can score the decoding candidates (--nar-scorer); 0 = none.", minimum=0,
               flag="--paraformer-ar-dlayers"),
        Option("ar_weight", 1.0, "Weight of the auxiliary autoregressive decoder's loss, added to the "
               "cross-entropy (with --paraformer-ar-dlayers); 0 = not computed (a scorer taken as it is: train.py "
               "--transfer-ar-scorer, frozen).", minimum=0.0, flag="--paraformer-ar-weight"),
        Option("detach_encoder", False, "The Paraformer (predictor and decoder) trains on a detached copy of the "
               "encoder output: the encoder learns from the CTC head and the auxiliary decoder alone, as an "
               "autoregressive model's does (needs --paraformer-ar-dlayers or a CTC weight).",
               flag="--paraformer-detach-encoder"),
        Option("live_predictor", False, "With --paraformer-detach-encoder: the quantity loss still trains the "
               "encoder through the CIF predictor (the encoder learns where tokens are), the decoder's cross-entropy "
               "does not.", flag="--paraformer-live-predictor"),
        Option("queries", "cif", "Where the parallel decoder's inputs come from: 'cif' (the CIF predictor, one "
               "embedding per fired token) or 'ctc' (Paraformer-v2: per token of the CTC head's alignment, its mean "
               "posteriors times the token embeddings; the token count is the CTC best path's; needs --ctc-weight > "
               "0).", choices=("cif", "ctc"), flag="--paraformer-queries"),
    )

    def __init__(self, odim: int, attention_dim: int = 768, attention_heads: int = 12, linear_units: int = 3072,
                 num_blocks: int = 6, dropout_rate: float = 0.1, lsm_weight: float = 0.1, threshold: float = 1.0,
                 tail_threshold: float = 0.45, quantity_weight: float = 1.0, sampling_ratio: float = 0.75,
                 cif_kernel: int = 3, detach_predictor: bool = False, ar_dlayers: int = 0, ar_weight: float = 1.0,
                 detach_encoder: bool = False, live_predictor: bool = False, queries: str = "cif",
                 ignore_id: int = -1) -> None:
        super().__init__()
        if threshold <= 0:
            raise ValueError(f"--paraformer-threshold must be > 0, got {threshold}")
        if not 0.0 <= sampling_ratio <= 1.0:
            raise ValueError(f"--paraformer-sampling-ratio must be in [0, 1], got {sampling_ratio}")
        if cif_kernel % 2 == 0:
            raise ValueError(f"--paraformer-cif-kernel must be odd (centred on its frame), got {cif_kernel}")
        if live_predictor and not detach_encoder:
            raise ValueError("--paraformer-live-predictor needs --paraformer-detach-encoder (without it every "
                             "Paraformer loss reaches the encoder already)")
        if queries not in ("cif", "ctc"):
            raise ValueError(f"--paraformer-queries must be 'cif' or 'ctc', got {queries!r}")
        if queries == "ctc" and (live_predictor or detach_predictor):
            raise ValueError("--paraformer-queries ctc has no CIF predictor: --paraformer-live-predictor and "
                             "--paraformer-detach-predictor do not apply")
        if live_predictor and detach_predictor:
            raise ValueError("--paraformer-live-predictor and --paraformer-detach-predictor contradict each other: "
                             "give one")
        self.odim = odim
        self.sos = self.eos = odim - 1
        self.ignore_id = ignore_id
        self.threshold = threshold
        self.tail_threshold = tail_threshold
        self.quantity_weight = quantity_weight
        self.sampling_ratio = sampling_ratio
        self.detach_predictor = detach_predictor
        self.detach_encoder = detach_encoder
        self.live_predictor = live_predictor
        self.queries = queries
        self.reads_ctc = queries == "ctc"
        self.predictor = CifPredictor(attention_dim, cif_kernel, dropout_rate) if queries == "cif" else None
        # target embeddings of the glancing sampler; with CTC queries also the matrix the posteriors mix
        self.embed = torch.nn.Embedding(odim, attention_dim)
        self.decoders = repeat(num_blocks, lambda _: DecoderLayer(attention_dim, attention_heads, linear_units,
                                                                  dropout_rate))
        self.after_norm = LayerNorm(attention_dim)
        self.output_layer = torch.nn.Linear(attention_dim, odim)
        self.criterion = LabelSmoothingLoss(odim, ignore_id, lsm_weight)
        self.ar_weight = ar_weight
        self.ar_decoder = (TransformerDecoder(odim, attention_dim, attention_heads, linear_units, ar_dlayers,
                                              dropout_rate, lsm_weight, ignore_id) if ar_dlayers > 0 else None)

    @classmethod
    def from_config(cls, config, options: Dict[str, Any]) -> "ParaformerDecoder":
        if config.odim is None:
            raise ValueError("--decoder paraformer predicts SentencePiece tokens: give --sp-model-path and --dict-path")
        return cls(odim=config.odim, attention_dim=config.adim, attention_heads=config.aheads,
                   linear_units=options["dunits"], num_blocks=options["dlayers"], dropout_rate=config.dropout_rate,
                   lsm_weight=config.lsm_weight, threshold=options["threshold"],
                   tail_threshold=options["tail_threshold"], quantity_weight=options["quantity_weight"],
                   sampling_ratio=options["sampling_ratio"], cif_kernel=options["cif_kernel"],
                   detach_predictor=options["detach_predictor"], ar_dlayers=options["ar_dlayers"],
                   ar_weight=options["ar_weight"], detach_encoder=options["detach_encoder"],
                   live_predictor=options["live_predictor"], queries=options["queries"])

    # ---- the parallel decoder ------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor, embed_lengths: torch.Tensor, memory: torch.Tensor,
                memory_lengths: torch.Tensor, utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``(N, K, V)`` of acoustic embeddings ``(N, K, D)`` (see the class docstring;
        ``N = S * B``: ``S`` passes per utterance of ``memory`` ``(B, T, D)``, the ``s``-th of
        utterance ``i`` at ``s * B + i``, whose source attention shares the utterance's keys and
        values, :meth:`DecoderLayer.forward_shared`; with ``utterances`` ``(N,)`` (long) row
        ``j`` reads utterance ``utterances[j]``, any number of rows per utterance)."""
        n, k, _ = embeddings.shape
        if utterances is None and n % memory.size(0):
            raise ValueError(f"Paraformer: {n} rows of acoustic embeddings for {memory.size(0)} utterances "
                             "(not a multiple)")
        if utterances is not None and utterances.numel() != n:
            raise ValueError(f"Paraformer: {n} rows of acoustic embeddings, {utterances.numel()} utterance indices")
        positions = _sinusoid(torch.arange(k, dtype=torch.float32), embeddings.size(-1))
        x = embeddings + positions.to(embeddings.device, embeddings.dtype).unsqueeze(0)
        self_mask = make_non_pad_mask(embed_lengths.to(x.device), k).unsqueeze(1)  # (N, 1, K): keys only
        memory_mask = source_mask(memory_lengths.to(x.device), memory.size(1))  # None: nothing padded
        rows = None if utterances is None else utterances.to(x.device)
        for layer in self.decoders:
            x = layer.forward_shared(x, self_mask, *layer.memory_keys_values(memory), memory_mask, rows)
        return self.output_layer(self.after_norm(x))

    def frame_weights(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> torch.Tensor:
        """The CIF predictor's weights ``alpha`` ``(B, T)`` of the encoder output ``(B, T, D)``."""
        return self.predictor(memory.detach() if self.detach_predictor else memory, memory_lengths)

    def acoustic_embeddings(self, memory: torch.Tensor, memory_lengths: torch.Tensor,
                            target_lengths: Optional[torch.Tensor] = None):
        """CIF: ``(embeddings (B, K, D), counts (B,), alpha (B, T))``. With ``target_lengths``
        (training) the weights are rescaled to sum to them and exactly ``N`` embeddings come
        out per utterance; without (decoding) the tokens that fire, with the tail rule.
        ``alpha`` is the unscaled weights either way."""
        alpha = self.frame_weights(memory, memory_lengths)
        if target_lengths is None:
            emb, counts = integrate_and_fire(memory, alpha, self.threshold, tail_threshold=self.tail_threshold)
        else:
            scaled = scale_to_lengths(alpha, target_lengths, self.threshold)
            emb, counts = integrate_and_fire(memory, scaled, self.threshold, counts=target_lengths)
        return emb, counts, alpha

    def ctc_queries(self, ctc_logp: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
        """Paraformer-v2's acoustic embeddings ``(B, count, D)``: per token, the mean CTC
        posteriors over its frames (``index`` ``(B, T)``: the token of each frame, ``-1`` for
        none; :func:`~espnet.nets.pytorch_backend.ctc.forced_alignment` or
        :func:`~espnet.nets.pytorch_backend.ctc.path_token_index`) of ``ctc_logp`` ``(B, T, V)``
        times the token embeddings ``(V, D)``."""
        posteriors = token_reduce(ctc_logp.float().exp(), index, count, "mean")  # (B, count, V)
        weight = self.embed.weight
        return torch.matmul(posteriors.to(weight.dtype), weight)

    def forward_train(self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor,
                      texts=None, ctc: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
        """Cross-entropy of the second (glancing) pass + weighted quantity loss (see the class
        docstring for the contract; ``texts`` unused; ``ctc``: the CTC head, which CTC queries
        read)."""
        valid = targets != self.ignore_id
        lengths = valid.sum(dim=1)
        live = memory  # what the auxiliary decoder reads
        if self.detach_encoder:
            memory = memory.detach()
        alpha = None
        if self.queries == "ctc":
            if ctc is None:
                raise ValueError("--paraformer-queries ctc reads the CTC head's posteriors: none was given")
            with torch.no_grad():
                ctc_logp = ctc.log_softmax(memory).float()
                index = forced_alignment(ctc_logp, memory_lengths, targets.masked_fill(~valid, 0), lengths)
            emb, counts = self.ctc_queries(ctc_logp, index, targets.size(1)), lengths
        else:
            emb, counts, alpha = self.acoustic_embeddings(memory, memory_lengths, lengths)
        length = targets.size(1)
        if emb.size(1) < length:  # every utterance shorter than the padded width (cannot happen from collate)
            emb = torch.nn.functional.pad(emb, (0, 0, 0, length - emb.size(1)))
        emb = emb[:, :length]
        if self.training and self.sampling_ratio > 0:
            with torch.no_grad():
                predicted = self.forward(emb, counts, memory, memory_lengths).argmax(dim=-1)
            replace = glancing_mask(predicted, targets, self.sampling_ratio, self.ignore_id)
            target_emb = self.embed(targets.masked_fill(~valid, 0)).to(emb.dtype)
            emb = torch.where(replace.unsqueeze(-1), target_emb, emb)
        logits = self.forward(emb, counts, memory, memory_lengths)
        loss_ce = self.criterion(logits, targets)
        acc = th_accuracy(logits.reshape(-1, self.odim), targets, self.ignore_id)
        out = {"loss_att": loss_ce, "loss_ce": loss_ce, "acc": acc, "logits": logits, "embed_lengths": counts}
        if alpha is not None:
            if self.live_predictor:  # the count trains the encoder; the embeddings above did not
                alpha = self.predictor(live, memory_lengths)
            out["loss_quantity"] = (alpha.sum(dim=1) - lengths.to(alpha.dtype)).abs().mean()
            out["loss_att"] = loss_ce + self.quantity_weight * out["loss_quantity"]
        if self.ar_decoder is not None and self.ar_weight > 0:  # weight 0: a scorer taken as it is, not trained
            out["loss_ar"] = self.ar_decoder.forward_train(live, memory_lengths, targets)["loss_att"]
            out["loss_att"] = out["loss_att"] + self.ar_weight * out["loss_ar"]
        return out

    # ---- decoding: one parallel pass ----------------------------------------------------
    def check_options(self, options: DecodeOptions) -> None:
        """``nar_scorer`` ``ar``/``both`` needs the auxiliary autoregressive decoder; CTC
        queries decode the CTC best path and its blank-penalised variants
        (:func:`.paraformer_candidates.blank_penalty_candidates`: ``candidates``,
        ``nar_ctc_fusion``, ``nar_scorer`` and ``nar_ar_top`` apply, the other candidate
        options not)."""
        if self.queries == "ctc":
            other = [flag for flag, used in (
                (f"--nar-count {options.nar_count}", options.nar_count == "both"),
                (f"--nar-alternatives {options.nar_alternatives}", options.nar_alternatives > 0),
                ("--nar-ctc-candidate", options.nar_ctc_candidate)) if used]
            if other:
                raise ValueError(f"{other[0]}: this Paraformer (--paraformer-queries ctc) decodes the CTC head's best "
                                 "path (only --nar-candidates, its blank-penalised variants, --nar-ctc-fusion and, "
                                 "with an auxiliary AR decoder, --nar-scorer and --nar-ar-top apply)")
        if options.nar_scorer != "paraformer" and self.ar_decoder is None:
            raise ValueError(f"--nar-scorer {options.nar_scorer} scores the candidates with the Paraformer's auxiliary "
                             "autoregressive decoder: this model was trained without one (--paraformer-ar-dlayers 0)")

    @torch.no_grad()
    def recognize(self, memory: torch.Tensor, memory_lengths: torch.Tensor, ctc: Optional[torch.nn.Module],
                  options: DecodeOptions) -> List[Decoded]:
        """The argmax token of each fired acoustic embedding, for a whole batch at once (no
        search; the beam options are not used). ``score``: the sum of the chosen tokens'
        log-probabilities. With ``options.candidates`` > 1, alternatives, or options that use
        the CTC head's best path (``DecodeOptions.ctc_path_request``), one pass per token count
        near the predicted ones, rescored (:func:`.paraformer_candidates.rescored`; ``ctc``: the CTC head, which the
        path and the rescoring need; without it, ``cif`` candidates are not rescored: the plain
        pass)."""
        self.check_options(options)
        if self.queries == "ctc":
            if ctc is None:
                raise ValueError("--paraformer-queries ctc decodes from the CTC head's best path: this model needs its "
                                 "CTC head")
            return blank_penalty_candidates(self, memory, memory_lengths, ctc, options)
        several = options.candidates > 1 or options.nar_alternatives > 0
        asks = options.ctc_path_request()
        if asks or (several and ctc is not None):
            if ctc is None:
                raise ValueError(f"{asks}: this model needs a trained CTC head")
            return rescored(self, memory, memory_lengths, self.frame_weights(memory, memory_lengths), ctc, options)
        emb, counts, _ = self.acoustic_embeddings(memory, memory_lengths)
        if emb.size(1) == 0:
            return [Decoded([], 0.0) for _ in range(memory.size(0))]
        logp = torch.log_softmax(self.forward(emb, counts, memory, memory_lengths).float(), dim=-1)
        best, ids = logp.max(dim=-1)
        out = []
        for i, n in enumerate(counts.tolist()):
            out.append(Decoded(ids[i, :n].tolist(), float(best[i, :n].sum())))
        return out
