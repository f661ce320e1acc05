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
"""

from typing import Any, Dict, List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.ctc import best_paths, path_token_posteriors, sequence_log_likelihood
from espnet.nets.pytorch_backend.decoder.base_decoder import BaseDecoder, Decoded, DecodeOptions, SentencePieceVocabulary
from espnet.nets.pytorch_backend.decoder.cif import CifPredictor, fired_counts, integrate_and_fire, scale_to_lengths
from espnet.nets.pytorch_backend.decoder.transformer_decoder import DecoderLayer, TransformerDecoder, source_mask
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask, pad_list, th_accuracy
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
               "cross-entropy (with --paraformer-ar-dlayers).", minimum=0.0, flag="--paraformer-ar-weight"),
        Option("detach_encoder", False, "The Paraformer (predictor and decoder) trains on a detached copy of the "
               "encoder output: the encoder learns from the CTC head and the auxiliary decoder alone, as an "
               "autoregressive model's does (needs --paraformer-ar-dlayers or a CTC weight).",
               flag="--paraformer-detach-encoder"),
        Option("live_predictor", False, "With --paraformer-detach-encoder: the quantity loss still trains the "
               "encoder through the CIF predictor (the encoder learns where tokens are), the decoder's cross-entropy "
               "does not.", flag="--paraformer-live-predictor"),
    )

    def __init__(self, odim: int, attention_dim: int = 768, attention_heads: int = 12, linear_units: int = 3072,
                 num_blocks: int = 6, dropout_rate: float = 0.1, lsm_weight: float = 0.1, threshold: float = 1.0,
                 tail_threshold: float = 0.45, quantity_weight: float = 1.0, sampling_ratio: float = 0.75,
                 cif_kernel: int = 3, detach_predictor: bool = False, ar_dlayers: int = 0, ar_weight: float = 1.0,
                 detach_encoder: bool = False, live_predictor: bool = False, ignore_id: int = -1) -> None:
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
        self.predictor = CifPredictor(attention_dim, cif_kernel, dropout_rate)
        self.embed = torch.nn.Embedding(odim, attention_dim)  # target embeddings of the glancing sampler
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
                   live_predictor=options["live_predictor"])

    # ---- the parallel decoder ------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor, embed_lengths: torch.Tensor, memory: torch.Tensor,
                memory_lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, V)`` of acoustic embeddings ``(N, K, D)`` (see the class docstring;
        ``N = S * B``: ``S`` passes per utterance of ``memory`` ``(B, T, D)``, the ``s``-th of
        utterance ``i`` at ``s * B + i``, whose source attention shares the utterance's keys and
        values, :meth:`DecoderLayer.forward_shared`)."""
        n, k, _ = embeddings.shape
        if n % memory.size(0):
            raise ValueError(f"Paraformer: {n} rows of acoustic embeddings for {memory.size(0)} utterances "
                             "(not a multiple)")
        positions = _sinusoid(torch.arange(k, dtype=torch.float32), embeddings.size(-1))
        x = embeddings + positions.to(embeddings.device, embeddings.dtype).unsqueeze(0)
        self_mask = make_non_pad_mask(embed_lengths.to(x.device), k).unsqueeze(1)  # (N, 1, K): keys only
        memory_mask = source_mask(memory_lengths.to(x.device), memory.size(1))  # None: nothing padded
        for layer in self.decoders:
            x = layer.forward_shared(x, self_mask, *layer.memory_keys_values(memory), memory_mask)
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

    def forward_train(self, memory: torch.Tensor, memory_lengths: torch.Tensor, targets: torch.Tensor,
                      texts=None) -> Dict[str, Any]:
        """Cross-entropy of the second (glancing) pass + weighted quantity loss (see the class
        docstring for the contract; ``texts`` unused)."""
        valid = targets != self.ignore_id
        lengths = valid.sum(dim=1)
        live = memory  # what the auxiliary decoder reads
        if self.detach_encoder:
            memory = memory.detach()
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
        if self.live_predictor:  # the count trains the encoder; the embeddings above did not
            alpha = self.predictor(live, memory_lengths)
        loss_quantity = (alpha.sum(dim=1) - lengths.to(alpha.dtype)).abs().mean()
        acc = th_accuracy(logits.reshape(-1, self.odim), targets, self.ignore_id)
        out = {"loss_att": loss_ce + self.quantity_weight * loss_quantity, "loss_ce": loss_ce,
               "loss_quantity": loss_quantity, "acc": acc, "logits": logits, "embed_lengths": counts}
        if self.ar_decoder is not None:
            out["loss_ar"] = self.ar_decoder.forward_train(live, memory_lengths, targets)["loss_att"]
            out["loss_att"] = out["loss_att"] + self.ar_weight * out["loss_ar"]
        return out

    # ---- decoding: one parallel pass ----------------------------------------------------
    def check_options(self, options: DecodeOptions) -> None:
        """``nar_scorer`` ``ar``/``both`` needs the auxiliary autoregressive decoder."""
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
        near the predicted ones, rescored (:meth:`rescored`; ``ctc``: the CTC head, which the
        path and the rescoring need; without it, ``cif`` candidates are not rescored: the plain
        pass)."""
        self.check_options(options)
        several = options.candidates > 1 or options.nar_alternatives > 0
        asks = options.ctc_path_request()
        if asks or (several and ctc is not None):
            if ctc is None:
                raise ValueError(f"{asks}: this model needs a trained CTC head")
            return self.rescored(memory, memory_lengths, self.frame_weights(memory, memory_lengths), ctc, options)
        emb, counts, _ = self.acoustic_embeddings(memory, memory_lengths)
        if emb.size(1) == 0:
            return [Decoded([], 0.0) for _ in range(memory.size(0))]
        logp = torch.log_softmax(self.forward(emb, counts, memory, memory_lengths).float(), dim=-1)
        best, ids = logp.max(dim=-1)
        out = []
        for i, n in enumerate(counts.tolist()):
            out.append(Decoded(ids[i, :n].tolist(), float(best[i, :n].sum())))
        return out

    def candidate_counts(self, cif_counts: torch.Tensor, ctc_counts: Optional[torch.Tensor],
                         memory_lengths: torch.Tensor, options: DecodeOptions) -> List[List[int]]:
        """Per utterance, the token counts :meth:`rescored` tries, in order: for each centre
        (``cif_counts``, then ``ctc_counts`` as ``options.nar_count`` asks), ``c + d`` for
        ``d`` in :func:`candidate_offsets` of ``options.candidates``, each count once, counts
        below 1 or above the utterance's frames left out except the centre itself (``d = 0``).
        The CIF centre's first candidate is the plain pass (count ``-1`` here)."""
        cif = cif_counts.tolist()  # one transfer, not one per utterance
        centres = []
        if options.nar_count in ("cif", "both"):
            centres.append(("cif", cif))
        if options.nar_count in ("ctc", "both"):
            centres.append(("ctc", ctc_counts.tolist()))
        out = []
        for i, frames in enumerate(memory_lengths.tolist()):
            tried: List[int] = []
            for name, values in centres:
                for d in candidate_offsets(options.candidates):
                    n = int(values[i]) + d
                    if d != 0 and not 1 <= n <= frames:
                        continue
                    if name == "cif" and d == 0:
                        tried.append(-1)  # the plain pass, whatever its count
                    elif n not in tried and not (n == cif[i] and -1 in tried):
                        tried.append(n)
            out.append(tried)
        return out

    def rescored(self, memory: torch.Tensor, memory_lengths: torch.Tensor, alpha: torch.Tensor,
                 ctc: torch.nn.Module, options: DecodeOptions) -> List[Decoded]:
        """The best one-pass hypothesis per utterance among those of :meth:`candidate_counts`.

        The plain pass (CIF centre, ``d = 0``) decodes the embeddings that fire from the
        predictor's weights ``alpha`` ``(B, T)`` (the tail rule); every other count ``n`` the
        weights rescaled to sum to ``n``, as in training, all in one CIF call whose candidates
        share their utterance's frames. All candidates of the batch go through the decoder in
        one pass; each gets ``(1 - w) * decoder + w * CTC + penalty * n`` with ``w = options.ctc_weight``
        (decoder: the sum of its tokens' log-probabilities, or as ``options.nar_scorer`` asks
        the auxiliary autoregressive decoder's log-likelihood of them and ``<eos>``
        (:meth:`TransformerDecoder.score_sequences`), or the mean of the two; CTC: the CTC
        head's log-likelihood of the whole sequence, :func:`sequence_log_likelihood`; ``<blank>`` and ``<eos>``
        tokens, which carry no text, are left out of it; ``penalty = options.penalty``, the
        length bonus per token of the beam search, ``n`` the candidate's tokens) and the best
        one, the earlier on a tie, is kept. The candidates' one-token alternatives
        (``options.nar_alternatives``, :meth:`with_alternatives`) follow them, and with
        ``options.nar_ctc_candidate`` the CTC head's best path comes last
        (:meth:`with_ctc_path`; its pass at its count goes through the decoder with the others).
        With ``options.nar_ar_top`` the auxiliary decoder scores only the best few of them
        (:meth:`ar_scored`). With ``options.nar_ctc_fusion`` the tokens of a candidate with as
        many tokens as the CTC head's best path, and its alternatives' second-best tokens, are
        chosen by their log-probabilities plus that weight x the CTC term of
        :meth:`path_posteriors` (their decoder score stays the sum of their log-probabilities).
        ``Decoded.score`` is that joint score, or with a single candidate its decoder score.
        An utterance none of whose candidates its CTC head can emit (more tokens than frames)
        keeps its first candidate with its decoder score."""
        b = memory.size(0)
        ctc_logp = ctc.log_softmax(memory).float()
        ctc_counts, ctc_hyps = None, None
        if options.ctc_path_request():
            paths = [path for path, _ in best_paths(ctc_logp, memory_lengths)]
            ctc_counts = torch.tensor([len(path) for path in paths])
            ctc_hyps = [[c - self.ctc_token_offset for c in path] for path in paths]
        counts = fired_counts(alpha, self.threshold, self.tail_threshold).to(alpha.device)
        tried = self.candidate_counts(counts, ctc_counts, memory_lengths, options)
        m = max(len(t) for t in tried)
        wanted = torch.tensor([t[j] if j < len(t) else t[0] for j in range(m) for t in tried])  # (M*B,); -1: plain
        usable = torch.tensor([j < len(t) for j in range(m) for t in tried])  # (M*B,); False: stand-ins where fewer
        plain = wanted == -1
        if options.nar_ctc_candidate:  # one more pass, at the CTC path's count
            wanted = torch.cat([wanted, ctc_counts.clamp(min=1)])
            plain = torch.cat([plain, torch.zeros(b, dtype=torch.bool)])
        passes = wanted.numel() // b
        scaled_to = torch.where(plain, counts.cpu().repeat(passes), wanted).to(alpha.device)
        scaled = scale_to_lengths(alpha.repeat(passes, 1), scaled_to.clamp(min=1), self.threshold)  # (P*B, T)
        all_emb, all_cands = integrate_and_fire(memory, scaled, self.threshold, counts=scaled_to)
        if bool(plain.any()):  # the plain pass's own fires (the tail rule) where it is asked for
            emb, _ = integrate_and_fire(memory, alpha, self.threshold, tail_threshold=self.tail_threshold)
            k = max(all_emb.size(1), emb.size(1))
            all_emb = torch.nn.functional.pad(all_emb, (0, 0, 0, k - all_emb.size(1)))
            emb = torch.nn.functional.pad(emb, (0, 0, 0, k - emb.size(1))).repeat(passes, 1, 1)
            all_emb = torch.where(plain.to(all_emb.device).view(-1, 1, 1), emb, all_emb)
        k = all_emb.size(1)
        if k == 0:
            return [Decoded([], 0.0) for _ in range(b)]
        logits = self.forward(all_emb, all_cands, memory, memory_lengths)  # (P*B, K, V); the passes share the memory
        logp = torch.log_softmax(logits.float(), dim=-1)
        all_counts = all_cands[: m * b]
        own = logp[: m * b]
        width = 2 if options.nar_alternatives > 0 else 1  # the second best only for the alternatives
        if options.nar_ctc_fusion:  # the tokens chosen with the CTC head's posteriors; their scores the Paraformer's
            fused = own.clone()
            rows = (all_counts == ctc_counts.to(all_counts.device).repeat(m)).nonzero().flatten()  # at the path's count
            fused[rows] += options.nar_ctc_fusion * self.path_posteriors(ctc_logp, memory_lengths, k)[rows % b]
            top_ids = fused.topk(width, dim=-1).indices
            top = own.gather(-1, top_ids)
        else:
            top, top_ids = own.topk(width, dim=-1)  # (M*B, K, width); V >= 2
        valid = make_non_pad_mask(all_counts, k).to(top.device)
        hyps = [top_ids[i, :n, 0].tolist() for i, n in enumerate(all_counts.tolist())]
        decoder_score = (top[..., 0] * valid).sum(dim=1)
        if passes == 1 and options.nar_alternatives == 0:
            return [Decoded(hyps[i], float(decoder_score[i])) for i in range(b)]
        usable = usable.to(top.device)
        if options.nar_alternatives > 0:
            hyps, decoder_score, all_counts, usable = self.with_alternatives(
                hyps, decoder_score, all_counts, usable, top, top_ids, valid, options.nar_alternatives)
        if passes > m:  # the CTC path last: its tokens' log-probabilities in its own pass
            hyps, decoder_score, all_counts, usable = self.with_ctc_path(
                hyps, decoder_score, all_counts, usable, ctc_hyps, logp[m * b:])
        m = len(hyps) // b
        offset = self.ctc_token_offset
        labels = [[t + offset for t in h if t not in (0, self.eos)] for h in hyps]
        ctc_score = sequence_log_likelihood(ctc_logp, memory_lengths, labels)
        w = options.ctc_weight
        bonus = options.penalty * all_counts.to(ctc_score.device, ctc_score.dtype)
        if options.nar_scorer != "paraformer":
            decoder_score, usable = self.ar_scored(memory, memory_lengths, hyps, decoder_score.to(ctc_score.device),
                                                   usable.to(ctc_score.device), w * ctc_score + bonus, options)
        joint = (1.0 - w) * decoder_score.to(ctc_score.device) + w * ctc_score + bonus
        joint = joint.masked_fill(~usable.to(joint.device), float("-inf")).view(m, b)
        chosen = joint.argmax(dim=0).tolist()  # the first maximum: the earlier candidate on a tie
        out = []
        for i, j in enumerate(chosen):
            if joint[j, i] == float("-inf"):  # no candidate the CTC head can emit: the first, its decoder score
                out.append(Decoded(hyps[i], float(decoder_score[i])))
            else:
                out.append(Decoded(hyps[j * b + i], float(joint[j, i])))
        return out

    def path_posteriors(self, ctc_logp: torch.Tensor, memory_lengths: torch.Tensor, k: int) -> torch.Tensor:
        """The CTC term of ``DecodeOptions.nar_ctc_fusion`` for each utterance's candidate with
        as many tokens as its best CTC path: ``(B, K, V)`` in the decoder's vocabulary, at
        position ``k`` the CTC log-posteriors at the frames of the path's ``k``-th token
        (:func:`path_token_posteriors`); ``-inf`` after the path (positions the candidate does
        not have) and for a token the CTC head has no class for."""
        spikes = path_token_posteriors(ctc_logp, memory_lengths)  # (B, L, V_ctc)
        offset = self.ctc_token_offset
        length = min(spikes.size(1), k)
        term = spikes.new_full((ctc_logp.size(0), k, self.odim), float("-inf"))
        shared = min(self.odim, spikes.size(-1) - offset)
        term[:, :length, :shared] = spikes[:, :length, offset : offset + shared]
        return term

    def ar_scored(self, memory: torch.Tensor, memory_lengths: torch.Tensor, hyps: List[List[int]],
                  own: torch.Tensor, usable: torch.Tensor, rest: torch.Tensor,
                  options: DecodeOptions) -> Tuple[torch.Tensor, torch.Tensor]:
        """The decoder term of :meth:`rescored`'s ``R = M * B`` hypotheses (``hyps``, the
        ``s``-th of utterance ``i`` at ``s * B + i``) as ``options.nar_scorer`` asks: the
        auxiliary decoder's log-likelihood (``ar``) or its mean with the Paraformer's own score
        ``own`` ``(R,)`` (``both``), and the rows still ``usable`` ``(R,)`` bool. With
        ``options.nar_ar_top`` = N below ``M``, only each utterance's N best rows by ``(1 - w)
        * own + rest`` (``rest`` ``(R,)``: the CTC term and the length bonus; unusable rows
        last, the earlier row first on a tie) go through the auxiliary decoder; the others keep
        ``own`` and are no longer usable."""
        b = memory.size(0)
        m = len(hyps) // b
        top = options.nar_ar_top
        if top == 0 or top >= m:
            ar = self.ar_decoder.score_sequences(memory, memory_lengths, hyps).to(own.device)
            return (ar if options.nar_scorer == "ar" else 0.5 * (own + ar)), usable
        first = ((1.0 - options.ctc_weight) * own + rest).masked_fill(~usable, float("-inf")).view(m, b)
        order = torch.sort(first, dim=0, descending=True, stable=True).indices[:top]  # (N, B)
        rows = (order * b + torch.arange(b, device=order.device)).flatten().tolist()  # s * B + i: utterance i
        ar = self.ar_decoder.score_sequences(memory, memory_lengths, [hyps[r] for r in rows]).to(own.device)
        index = torch.tensor(rows, device=own.device)
        term = own.clone()
        term[index] = ar if options.nar_scorer == "ar" else 0.5 * (own[index] + ar)
        chosen = torch.zeros_like(usable)
        chosen[index] = True
        return term, usable & chosen

    @staticmethod
    def with_ctc_path(hyps: List[List[int]], decoder_score: torch.Tensor, counts: torch.Tensor, usable: torch.Tensor,
                      ctc_hyps: List[List[int]], logp: torch.Tensor):
        """The ``R`` rows followed by one of ``B``: each utterance's CTC best path (decoder
        ids ``ctc_hyps``), its decoder score the sum of the log-probabilities of its tokens in
        the Paraformer's pass at its count (``logp`` ``(B, K, V)``); an empty path gives an
        unusable stand-in. Returns ``(hyps, decoder_score, counts, usable)`` of ``R + B`` rows."""
        ids = pad_list([torch.tensor(hyp, dtype=torch.long) for hyp in ctc_hyps], 0).to(logp.device)  # (B, L), L <= K
        lengths = torch.tensor([len(hyp) for hyp in ctc_hyps], device=logp.device)
        chosen = logp[:, : ids.size(1)].gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        own = (chosen * make_non_pad_mask(lengths, ids.size(1)).to(logp.device)).sum(1)
        return ([*hyps, *ctc_hyps], torch.cat([decoder_score, own.to(decoder_score.dtype)]),
                torch.cat([counts, lengths.to(counts.device, counts.dtype)]),
                torch.cat([usable, (lengths > 0).to(usable.device)]))

    @staticmethod
    def with_alternatives(hyps: List[List[int]], decoder_score: torch.Tensor, counts: torch.Tensor,
                          usable: torch.Tensor, top: torch.Tensor, top_ids: torch.Tensor, valid: torch.Tensor,
                          alternatives: int):
        """The ``R = M * B`` candidates followed by ``alternatives`` more rows of ``R``: row
        ``a`` holds each candidate with the token at its ``a``-th least confident position
        (smallest margin between its best and second-best log-probability, ``top`` /
        ``top_ids`` ``(R, K, 2)``) replaced by the second best, and that decoder score (the
        candidate's minus the margin); a candidate with ``a`` tokens or fewer gives an unusable
        stand-in. Returns ``(hyps, decoder_score, counts, usable)`` of ``(1 + alternatives) * R``
        rows."""
        margin = (top[..., 0] - top[..., 1]).masked_fill(~valid, float("inf"))
        order = margin.argsort(dim=1, stable=True).tolist()  # least confident first, the earlier on a tie
        base, margin_list, second = decoder_score.tolist(), margin.tolist(), top_ids[..., 1].tolist()
        out_hyps, scores, ok = list(hyps), [decoder_score], [usable]
        for a in range(alternatives):
            row_scores, row_ok = [], []
            for r, hyp in enumerate(hyps):
                if a < len(hyp):
                    pos = order[r][a]
                    changed = list(hyp)
                    changed[pos] = second[r][pos]
                    out_hyps.append(changed)
                    row_scores.append(base[r] - margin_list[r][pos])
                    row_ok.append(True)
                else:
                    out_hyps.append(hyp)
                    row_scores.append(float("-inf"))
                    row_ok.append(False)
            scores.append(torch.tensor(row_scores, dtype=decoder_score.dtype, device=decoder_score.device))
            ok.append(torch.tensor(row_ok, device=usable.device) & usable)
        n = alternatives + 1
        return out_hyps, torch.cat(scores), counts.repeat(n), torch.cat(ok)


def candidate_offsets(count: int) -> List[int]:
    """Token-count offsets of :meth:`ParaformerDecoder.rescored`'s candidates: ``0, -1, +1,
    -2, +2, ...``, ``count`` of them."""
    return [((j + 1) // 2) * (1 if j % 2 == 0 else -1) for j in range(count)]
