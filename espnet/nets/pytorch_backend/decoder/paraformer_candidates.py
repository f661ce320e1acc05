"""Decoding a Paraformer around several token counts: candidates, their rescoring, fusion.

The one pass decodes the token count its CIF predictor fires. With ``DecodeOptions``
asking for more (``candidates``, ``nar_count``, ``nar_scorer``, ``nar_alternatives``,
``nar_ctc_candidate``, ``nar_ar_top``, ``nar_ctc_fusion``; ``eval.py --nar-*``), the
Paraformer decodes one pass per count near the predicted ones (the CIF weights rescaled to
each count, all in one batch), and the hypotheses are rescored jointly with its CTC head
and, optionally, its auxiliary autoregressive decoder (:func:`rescored`). Rows of candidates
are candidate-major: the ``s``-th of utterance ``i`` at ``s * B + i``.

A Paraformer with CTC queries (Paraformer-v2) takes its counts and queries from the CTC
head's best path instead, and its candidates from that path with the blank class penalised
(:func:`blank_penalty_candidates`).
"""

from typing import TYPE_CHECKING, List, Optional, Tuple

import torch

from espnet.nets.pytorch_backend.ctc import (best_paths, path_token_index, path_token_posteriors,
                                             sequence_log_likelihood, token_reduce)
from espnet.nets.pytorch_backend.decoder.base_decoder import Decoded, DecodeOptions
from espnet.nets.pytorch_backend.decoder.cif import fired_counts, integrate_and_fire, scale_to_lengths
from espnet.nets.pytorch_backend.decoder.transformer_decoder import TransformerDecoder
from espnet.nets.pytorch_backend.nets_utils import make_non_pad_mask, pad_list

if TYPE_CHECKING:
    from espnet.nets.pytorch_backend.decoder.paraformer_decoder import ParaformerDecoder


def candidate_offsets(count: int) -> List[int]:
    """Token-count offsets of :func:`rescored`'s candidates: ``0, -1, +1, -2, +2, ...``,
    ``count`` of them."""
    return [((j + 1) // 2) * (1 if j % 2 == 0 else -1) for j in range(count)]


def candidate_counts(cif_counts: torch.Tensor, ctc_counts: Optional[torch.Tensor],
                     memory_lengths: torch.Tensor, options: DecodeOptions) -> List[List[int]]:
    """Per utterance, the token counts :func:`rescored` tries, in order: for each centre
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


def rescored(decoder: "ParaformerDecoder", memory: torch.Tensor, memory_lengths: torch.Tensor, alpha: torch.Tensor,
             ctc: torch.nn.Module, options: DecodeOptions) -> List[Decoded]:
    """The best one-pass hypothesis of the Paraformer ``decoder`` per utterance of the encoder
    output ``memory`` ``(B, T, D)`` among those of :func:`candidate_counts`.

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
    (``options.nar_alternatives``, :func:`with_alternatives`) follow them, and with
    ``options.nar_ctc_candidate`` the CTC head's best path comes last
    (:func:`with_ctc_path`; its pass at its count goes through the decoder with the others).
    With ``options.nar_ar_top`` the auxiliary decoder scores only the best few of them
    (:func:`ar_scored`). With ``options.nar_ctc_fusion`` the tokens of a candidate with as
    many tokens as the CTC head's best path, and its alternatives' second-best tokens, are
    chosen by their log-probabilities plus that weight x the CTC term of
    :func:`path_posteriors` (their decoder score stays the sum of their log-probabilities).
    ``Decoded.score`` is that joint score, or with a single candidate its decoder score.
    An utterance none of whose candidates its CTC head can emit (more tokens than frames)
    keeps its first candidate with its decoder score."""
    b = memory.size(0)
    ctc_logp = ctc.log_softmax(memory).float()
    ctc_counts, ctc_hyps = None, None
    if options.ctc_path_request():
        paths = [path for path, _ in best_paths(ctc_logp, memory_lengths)]
        ctc_counts = torch.tensor([len(path) for path in paths])
        ctc_hyps = [[c - decoder.ctc_token_offset for c in path] for path in paths]
    counts = fired_counts(alpha, decoder.threshold, decoder.tail_threshold).to(alpha.device)
    tried = candidate_counts(counts, ctc_counts, memory_lengths, options)
    m = max(len(t) for t in tried)
    wanted = torch.tensor([t[j] if j < len(t) else t[0] for j in range(m) for t in tried])  # (M*B,); -1: plain
    usable = torch.tensor([j < len(t) for j in range(m) for t in tried])  # (M*B,); False: stand-ins where fewer
    plain = wanted == -1
    if options.nar_ctc_candidate:  # one more pass, at the CTC path's count
        wanted = torch.cat([wanted, ctc_counts.clamp(min=1)])
        plain = torch.cat([plain, torch.zeros(b, dtype=torch.bool)])
    passes = wanted.numel() // b
    plain = plain.to(alpha.device)
    rows = alpha.repeat(passes, 1)  # (P*B, T)
    counted = torch.where(plain, counts.repeat(passes), wanted.to(alpha.device))
    # the plain pass fires from its own weights (its count is the tail rule's); every other count rescaled to it
    rows = torch.where(plain.unsqueeze(1), rows, scale_to_lengths(rows, counted.clamp(min=1), decoder.threshold))
    all_emb, all_cands = integrate_and_fire(memory, rows, decoder.threshold, counts=counted, open_last=~plain)
    k = all_emb.size(1)
    if k == 0:
        return [Decoded([], 0.0) for _ in range(b)]
    logits = decoder.forward(all_emb, all_cands, memory, memory_lengths)  # (P*B, K, V); the passes share the memory
    logp = torch.log_softmax(logits.float(), dim=-1)
    all_counts = all_cands[: m * b]
    own = logp[: m * b]
    width = 2 if options.nar_alternatives > 0 else 1  # the second best only for the alternatives
    if options.nar_ctc_fusion:  # the tokens chosen with the CTC head's posteriors; their scores the Paraformer's
        fused = own.clone()
        rows = (all_counts == ctc_counts.to(all_counts.device).repeat(m)).nonzero().flatten()  # at the path's count
        term = path_posteriors(ctc_logp, memory_lengths, k, decoder.odim, decoder.ctc_token_offset)
        fused[rows] += options.nar_ctc_fusion * term[rows % b]
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
        hyps, decoder_score, all_counts, usable = with_alternatives(
            hyps, decoder_score, all_counts, usable, top, top_ids, valid, options.nar_alternatives)
    if passes > m:  # the CTC path last: its tokens' log-probabilities in its own pass
        hyps, decoder_score, all_counts, usable = with_ctc_path(
            hyps, decoder_score, all_counts, usable, ctc_hyps, logp[m * b:])
    ctc_score = hypothesis_ctc_scores(decoder, ctc_logp, memory_lengths, hyps)
    bonus = options.penalty * all_counts.to(ctc_score.device, ctc_score.dtype)
    if options.nar_scorer != "paraformer":
        decoder_score, usable = ar_scored(decoder.ar_decoder, memory, memory_lengths, hyps,
                                          decoder_score.to(ctc_score.device), usable.to(ctc_score.device),
                                          options.ctc_weight * ctc_score + bonus, options)
    return best_by_joint_score(hyps, decoder_score, ctc_score, bonus, usable, options.ctc_weight, b)


def hypothesis_ctc_scores(decoder: "ParaformerDecoder", ctc_logp: torch.Tensor, memory_lengths: torch.Tensor,
                          hyps: List[List[int]], utterances: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The CTC term of the joint score of ``R`` hypotheses (decoder ids; the ``s``-th of
    utterance ``i`` at ``s * B + i``, or of utterance ``utterances[j]`` ``(R,)`` when given):
    ``(R,)`` :func:`sequence_log_likelihood` of their tokens as CTC classes, ``<blank>`` and
    ``<eos>`` (which carry no text) left out."""
    offset = decoder.ctc_token_offset
    labels = [[t + offset for t in h if t not in (0, decoder.eos)] for h in hyps]
    return sequence_log_likelihood(ctc_logp, memory_lengths, labels, utterances=utterances)


def best_by_joint_score(hyps: List[List[int]], decoder_score: torch.Tensor, ctc_score: torch.Tensor,
                        bonus: torch.Tensor, usable: torch.Tensor, w: float, b: int) -> List[Decoded]:
    """Per utterance of ``b``, the hypothesis (of ``R = M * b``, candidate-major) with the best
    joint score ``(1 - w) * decoder_score + w * ctc_score + bonus`` (each ``(R,)``; ``bonus``:
    the length bonus) among its ``usable`` ones, the earlier on a tie, as :class:`Decoded` with
    that score; an utterance none of whose hypotheses is usable or finite keeps its first with
    its decoder score."""
    joint = (1.0 - w) * decoder_score.to(ctc_score.device) + w * ctc_score + bonus
    joint = joint.masked_fill(~usable.to(joint.device), float("-inf")).view(len(hyps) // b, b)
    chosen = joint.argmax(dim=0).tolist()  # the first maximum: the earlier candidate on a tie
    out = []
    for i, j in enumerate(chosen):
        if joint[j, i] == float("-inf"):  # no candidate the CTC head can emit: the first, its decoder score
            out.append(Decoded(hyps[i], float(decoder_score[i])))
        else:
            out.append(Decoded(hyps[j * b + i], float(joint[j, i])))
    return out


def path_posteriors(ctc_logp: torch.Tensor, memory_lengths: torch.Tensor, k: int, odim: int,
                    offset: int) -> torch.Tensor:
    """The CTC term of ``DecodeOptions.nar_ctc_fusion`` for each utterance's candidate with
    as many tokens as its best CTC path: ``(B, K, V)`` in the decoder's vocabulary, at
    position ``k`` the CTC log-posteriors at the frames of the path's ``k``-th token
    (:func:`path_token_posteriors`); ``-inf`` after the path (positions the candidate does
    not have) and for a token the CTC head has no class for."""
    spikes = path_token_posteriors(ctc_logp, memory_lengths)  # (B, L, V_ctc)
    length = min(spikes.size(1), k)
    term = spikes.new_full((ctc_logp.size(0), k, odim), float("-inf"))
    shared = min(odim, spikes.size(-1) - offset)
    term[:, :length, :shared] = spikes[:, :length, offset : offset + shared]
    return term


def ar_scored(ar_decoder: TransformerDecoder, memory: torch.Tensor, memory_lengths: torch.Tensor,
              hyps: List[List[int]], own: torch.Tensor, usable: torch.Tensor, rest: torch.Tensor,
              options: DecodeOptions) -> Tuple[torch.Tensor, torch.Tensor]:
    """The decoder term of :func:`rescored`'s ``R = M * B`` hypotheses (``hyps``, the
    ``s``-th of utterance ``i`` at ``s * B + i``) as ``options.nar_scorer`` asks: the
    auxiliary decoder's log-likelihood (``ar``) or its mean with the Paraformer's own score
    ``own`` ``(R,)`` (``both``), and the rows still ``usable`` ``(R,)`` bool. With
    ``options.nar_ar_top`` = N below ``M``, only each utterance's N best rows by ``(1 - w)
    * own + rest`` (``rest`` ``(R,)``: the CTC term and the length bonus; unusable rows
    last, the earlier row first on a tie) go through the auxiliary decoder; the others keep
    ``own`` and are no longer usable. An unusable row is never scored (its own score kept)."""
    b = memory.size(0)
    m = len(hyps) // b
    top = options.nar_ar_top
    chosen = usable
    if 0 < top < m:
        first = ((1.0 - options.ctc_weight) * own + rest).masked_fill(~usable, float("-inf")).view(m, b)
        order = torch.sort(first, dim=0, descending=True, stable=True).indices[:top]  # (N, B)
        picked = (order * b + torch.arange(b, device=order.device)).flatten()  # s * B + i: utterance i
        chosen = torch.zeros_like(usable)
        chosen[picked.to(chosen.device)] = True
        chosen = chosen & usable
    rows = chosen.nonzero().flatten()  # an unusable row (a stand-in, a repeat) is not scored
    if rows.numel() == 0:
        return own, chosen
    every = rows.numel() == len(hyps)  # then the rows share their utterance's keys as S per utterance
    ar = ar_decoder.score_sequences(memory, memory_lengths, [hyps[r] for r in rows.tolist()],
                                    None if every else rows.to(memory.device) % b).to(own.device)
    term = own.clone()
    index = rows.to(own.device)
    term[index] = ar if options.nar_scorer == "ar" else 0.5 * (own[index] + ar)
    return term, chosen


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


def blank_penalty_candidates(decoder: "ParaformerDecoder", memory: torch.Tensor, memory_lengths: torch.Tensor,
                             ctc: torch.nn.Module, options: DecodeOptions) -> List[Decoded]:
    """Decoding of a Paraformer with CTC queries (``decoder.queries == "ctc"``): per utterance
    of ``memory`` ``(B, T, D)``, ``S = options.candidates`` segmentations of its frames into
    tokens, the CTC head's best path with ``s`` nats taken off the blank's log-posterior
    (``s = 0 .. S-1``; more tokens as ``s`` grows), each decoded in one pass over its queries
    (:meth:`ParaformerDecoder.ctc_queries`; all ``S * B`` rows in one batch sharing the
    memory). Each position's token is the argmax of the decoder's log-probabilities, plus
    ``options.nar_ctc_fusion`` x the CTC log-posteriors at its frames (their largest) when
    asked; the decoder score is the sum of the chosen tokens' log-probabilities. With one
    candidate that is the result; with several each gets ``(1 - w) * decoder + w * CTC +
    penalty * n`` (``w = options.ctc_weight``; CTC: :func:`sequence_log_likelihood` of its
    tokens but ``<blank>`` and ``<eos>``; ``penalty = options.penalty``; ``n`` its tokens) and
    the best, the earlier on a tie, is kept, with that score. With ``options.nar_scorer``
    ``ar``/``both`` the decoder term is the auxiliary autoregressive decoder's (or the mean of
    both) on each utterance's distinct hypotheses (the ``options.nar_ar_top`` best of them by
    the Paraformer's joint score when given), :func:`ar_scored`; a repeated hypothesis is
    scored once, at its first row. A path its utterance already has (the shifts often give
    the same) is decoded once, at its first shift, and not usable again."""
    b = memory.size(0)
    ctc_logp = ctc.log_softmax(memory).float()  # (B, T, V)
    best_other, other = ctc_logp[..., 1:].max(dim=-1)  # the best non-blank class of each frame
    rows = []
    for shift in range(options.candidates):  # the blank (class 0) still wins a tie, as argmax picks the first
        classes = torch.where(ctc_logp[..., 0] - shift >= best_other, 0, other + 1)
        rows.append(path_token_index(classes, memory_lengths))  # (B, T)
    index = torch.cat(rows)  # (S*B, T)
    counts = (index.max(dim=1).values + 1).clamp(min=0)  # (S*B,)
    k = int(counts.max()) if counts.numel() else 0
    if k == 0:
        return [Decoded([], 0.0) for _ in range(b)]
    source = first_paths(index, b)  # (S*B,): the row of the first shift with the same path
    distinct = source == torch.arange(source.numel(), device=source.device)
    kept = distinct.nonzero().flatten()  # the paths often agree: decode each distinct one once
    utterances = kept % b
    shared = None if kept.numel() == source.numel() else utterances  # None: S rows per utterance
    logp_rows = ctc_logp.index_select(0, utterances)
    emb = decoder.ctc_queries(logp_rows, index[kept], k)
    logp = torch.log_softmax(decoder.forward(emb, counts[kept], memory, memory_lengths, shared).float(),
                             dim=-1)  # (N, K, V), N distinct rows
    offset = decoder.ctc_token_offset
    chooser = logp
    if options.nar_ctc_fusion:
        term = token_reduce(logp_rows, index[kept], k, "amax")[..., offset : offset + decoder.odim]
        chooser = logp + options.nar_ctc_fusion * term
    ids = chooser.argmax(dim=-1)
    valid = make_non_pad_mask(counts[kept], k).to(logp.device)
    own = (logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * valid).sum(dim=1)  # (N,)
    distinct_hyps = [ids[j, :n].tolist() for j, n in enumerate(counts[kept].tolist())]
    if options.candidates == 1:
        return [Decoded(distinct_hyps[i], float(own[i])) for i in range(b)]
    ctc_own = hypothesis_ctc_scores(decoder, ctc_logp, memory_lengths, distinct_hyps, utterances)
    position = (distinct.cumsum(0) - 1)[source]  # (S*B,): each row's distinct row among the N
    hyps = [distinct_hyps[j] for j in position.tolist()]
    ctc_score = ctc_own[position.to(ctc_own.device)]
    decoder_score = own.to(ctc_score.device)[position.to(ctc_score.device)]
    bonus = options.penalty * counts.to(ctc_score.device, ctc_score.dtype)
    usable = distinct.to(bonus.device)  # a repeated path ties with its first row, which wins
    if options.nar_scorer != "paraformer":
        usable = first_occurrences(hyps, b).to(bonus.device)  # distinct paths may still give the same tokens
        decoder_score, usable = ar_scored(decoder.ar_decoder, memory, memory_lengths, hyps, decoder_score, usable,
                                          options.ctc_weight * ctc_score + bonus, options)
    return best_by_joint_score(hyps, decoder_score, ctc_score, bonus, usable, options.ctc_weight, b)


def first_paths(index: torch.Tensor, b: int) -> torch.Tensor:
    """``(S*b,)`` long over ``S * b`` candidate-major token indexes of frames (``index``
    ``(S*b, T)``, :func:`path_token_index`; the ``s``-th path of utterance ``i`` at ``s * b +
    i``): the row of the earliest path of the same utterance equal to each (itself if none)."""
    s = index.size(0) // max(b, 1)
    paths = index.view(s, b, -1)
    source = torch.arange(s * b, device=index.device).view(s, b)
    for j in range(1, s):
        for earlier in range(j):  # the earliest equal path wins: it already points to its own first
            unmatched = source[j] == source[0] + j * b
            source[j] = torch.where((paths[j] == paths[earlier]).all(dim=-1) & unmatched, source[earlier], source[j])
    return source.flatten()


def first_occurrences(hyps: List[List[int]], b: int) -> torch.Tensor:
    """``(R,)`` bool over ``R = M * b`` candidate-major hypotheses (the ``s``-th of utterance
    ``i`` at ``s * b + i``): False for a hypothesis its utterance already has at an earlier row."""
    seen: List[set] = [set() for _ in range(b)]
    first = []
    for r, hyp in enumerate(hyps):
        key = tuple(hyp)
        first.append(key not in seen[r % b])
        seen[r % b].add(key)
    return torch.tensor(first, dtype=torch.bool)
