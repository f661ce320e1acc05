"""A Paraformer with an auxiliary autoregressive decoder (``--paraformer-ar-dlayers``): its loss
in training, its one-pass sequence scores against the beam search's incremental scorer, the
candidates it rescores (``--nar-scorer ar|both``) against a loop over utterances and counts,
``eval.py`` and the model API giving the same, and the refusals."""

import math

import pytest
import torch

from espnet.asr import eval_cli
from espnet.asr.recognizer import DecodeOptions, encode_utterances, recognize, recognize_batch
from espnet.nets.pytorch_backend.ctc import best_paths, sequence_log_likelihood
from espnet.nets.pytorch_backend.decoder.base_decoder import nar_candidates_refusal
from espnet.nets.pytorch_backend.decoder.paraformer_candidates import candidate_offsets
from espnet.nets.pytorch_backend.decoder.paraformer_decoder import ParaformerDecoder
from espnet.nets.pytorch_backend.decoder.transformer_decoder import TransformerDecoder
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from flag_config import model_config
from test_paraformer import candidate_log_probs, one_candidate


@torch.no_grad()
def incremental_log_likelihood(decoder: TransformerDecoder, memory, length, tokens):
    """Sum of ``log p(token | prefix)`` for ``tokens + [eos]`` by the beam search's scorer
    (``batch_score``, one position at a time) for one utterance ``memory`` ``(1, T, D)``."""
    state = decoder.batch_init_state(memory[:, :length], torch.tensor([length]))
    prefix, total = [decoder.sos], 0.0
    for token in [*tokens, decoder.eos]:
        logp, state = decoder.batch_score(torch.tensor([[prefix]]), state)
        total += float(logp[0, 0, token])
        prefix.append(token)
        state = decoder.select_state(state, torch.tensor([0]), torch.tensor([[0]]), torch.tensor([[token]]))
    return total


@pytest.mark.parametrize("utts", [4, 2, 1])
def test_score_sequences_equals_the_incremental_scorer(utts):
    """One teacher-forced pass over a padded batch of hypotheses (one empty; ``4 / utts`` per
    utterance, hypothesis ``j`` of utterance ``j % utts``) gives each the log-likelihood the
    incremental scorer gives it alone, ``<eos>`` included; a count that is not a multiple of
    the utterances is refused."""
    torch.manual_seed(0)
    decoder = TransformerDecoder(odim=11, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=2).eval()
    memory = torch.randn(4, 9, 8)[:utts]
    lengths = torch.tensor([5, 9, 7, 9])[:utts]
    hyps = [[3, 4, 5], [], [1, 9, 9, 2, 7], [6]]
    scores = decoder.score_sequences(memory, lengths, hyps)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    for j, hyp in enumerate(hyps):
        i = j % utts
        expected = incremental_log_likelihood(decoder, memory[i : i + 1], int(lengths[i]), hyp)
        assert float(scores[j]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert len({round(float(s), 3) for s in scores}) == 4  # distinct sequences, distinct scores
    if utts > 1:
        with pytest.raises(ValueError, match=f"score_sequences: 3 hypotheses for {utts} utterances"):
            decoder.score_sequences(memory, lengths, hyps[:3])


def test_auxiliary_decoder_loss_joins_the_paraformer_loss():
    """``loss_att`` = cross-entropy + quantity weight x quantity loss + ar weight x the
    auxiliary decoder's loss (its own teacher-forced loss), whose gradient reaches the encoder
    output; without the auxiliary decoder neither the loss term nor its parameters exist (the
    state dict of older checkpoints is unchanged)."""
    torch.manual_seed(0)
    kwargs = dict(odim=12, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1, dropout_rate=0.0,
                  sampling_ratio=0.0, quantity_weight=0.5)
    dec = ParaformerDecoder(ar_dlayers=2, ar_weight=0.7, **kwargs).eval()
    memory = torch.randn(2, 10, 8, requires_grad=True)
    lengths = torch.tensor([10, 7])
    targets = torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]])
    out = dec.forward_train(memory, lengths, targets)
    own = dec.ar_decoder.forward_train(memory, lengths, targets)["loss_att"]
    assert float(out["loss_ar"].detach()) == pytest.approx(float(own.detach()), rel=1e-5)
    expected = out["loss_ce"] + 0.5 * out["loss_quantity"] + 0.7 * out["loss_ar"]
    assert float(out["loss_att"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    grad = torch.autograd.grad(out["loss_ar"], memory)[0]
    assert float(grad.abs().sum()) > 0
    assert len(dec.ar_decoder.decoders) == 2
    plain = ParaformerDecoder(**kwargs)
    assert plain.ar_decoder is None and "loss_ar" not in plain.forward_train(memory, lengths, targets)
    assert not [k for k in plain.state_dict() if k.startswith("ar_decoder")]


@pytest.mark.parametrize("detach", [False, True])
def test_detached_encoder_learns_from_the_auxiliary_decoder_alone(detach):
    """--paraformer-detach-encoder: the Paraformer's cross-entropy and quantity loss reach the
    predictor and the decoder but not the encoder output; the auxiliary decoder's loss does.
    Without it all three reach the encoder output."""
    torch.manual_seed(0)
    dec = ParaformerDecoder(odim=12, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                            dropout_rate=0.0, sampling_ratio=0.0, ar_dlayers=1, detach_encoder=detach)
    memory = torch.randn(2, 10, 8, requires_grad=True)
    out = dec.forward_train(memory, torch.tensor([10, 7]), torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]]))
    for name in ("loss_ce", "loss_quantity"):
        grad = torch.autograd.grad(out[name], memory, retain_graph=True, allow_unused=True)[0]
        assert (grad is None or float(grad.abs().sum()) == 0.0) == detach, name
        own = torch.autograd.grad(out[name], dec.predictor.output.weight, retain_graph=True)[0]
        assert float(own.abs().sum()) > 0  # the predictor trains either way
    grad = torch.autograd.grad(out["loss_ar"], memory)[0]
    assert float(grad.abs().sum()) > 0


def test_live_predictor_lets_the_count_alone_reach_the_encoder():
    """--paraformer-live-predictor (with --paraformer-detach-encoder): the quantity loss reaches
    the encoder output through the predictor, the cross-entropy only the predictor's weights;
    refused without --paraformer-detach-encoder or with --paraformer-detach-predictor."""
    torch.manual_seed(0)
    dec = ParaformerDecoder(odim=12, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                            dropout_rate=0.0, sampling_ratio=0.0, ar_dlayers=1, detach_encoder=True,
                            live_predictor=True)
    memory = torch.randn(2, 10, 8, requires_grad=True)
    lengths = torch.tensor([10, 7])
    out = dec.forward_train(memory, lengths, torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]]))
    ce = torch.autograd.grad(out["loss_ce"], memory, retain_graph=True, allow_unused=True)[0]
    assert ce is None or float(ce.abs().sum()) == 0.0
    own = torch.autograd.grad(out["loss_ce"], dec.predictor.output.weight, retain_graph=True)[0]
    assert float(own.abs().sum()) > 0
    count = torch.autograd.grad(out["loss_quantity"], memory)[0]
    assert float(count[0].abs().sum()) > 0 and float(count[1, 7:].abs().sum()) == 0.0  # padding frames untouched
    expected = (dec.predictor(memory, lengths).sum(dim=1) - torch.tensor([4.0, 2.0])).abs().mean()
    assert float(out["loss_quantity"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    with pytest.raises(ValueError, match="--paraformer-live-predictor needs --paraformer-detach-encoder"):
        ParaformerDecoder(odim=12, attention_dim=8, attention_heads=2, live_predictor=True)
    with pytest.raises(ValueError, match="contradict"):
        ParaformerDecoder(odim=12, attention_dim=8, attention_heads=2, detach_encoder=True, live_predictor=True,
                          detach_predictor=True)


def paraformer_with_ar(ctc_weight=0.3, ar_dlayers=1):
    config = model_config(odim=20, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer", adim=16, aheads=2,
                          eunits=32, elayers=1, dunits=32, dlayers=1, ctc_weight=ctc_weight,
                          paraformer_ar_dlayers=ar_dlayers)
    torch.manual_seed(0)
    return E2E(config).eval()


@pytest.mark.parametrize("scorer,weight,penalty", [("ar", 0.5, 0.0), ("both", 0.5, 0.0), ("ar", 0.01, 2.0),
                                                   ("both", 0.01, 2.5)])
def test_ar_scored_candidates_equal_a_loop(scorer, weight, penalty):
    """--nar-candidates 5 --nar-scorer ar/both: per utterance, the candidate (each decoded
    alone) with the best ``(1 - w) x decoder term + w x CTC + penalty x n``, the decoder term
    being the incremental scorer's log-likelihood of its tokens and ``<eos>`` (``ar``) or its
    mean with the Paraformer's own score (``both``); the same alone as in a batch."""
    model = paraformer_with_ar()
    decoder = model.decoder
    assert decoder.ar_decoder is not None and len(decoder.ar_decoder.decoders) == 1
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    options = DecodeOptions(ctc_weight=weight, candidates=5, nar_scorer=scorer, penalty=penalty)
    batched = recognize_batch(model, items, options)
    plain = recognize_batch(model, items, DecodeOptions(ctc_weight=weight))
    for item, hyp, first in zip(items, batched, plain):
        memory, lengths = encode_utterances(model, [item])
        alpha = decoder.predictor(memory, lengths)
        n0 = len(first.token_ids)
        best = None
        for d in candidate_offsets(5):
            n = n0 + d
            if d != 0 and not 1 <= n <= memory.size(1):
                continue
            ids, score = one_candidate(decoder, memory, alpha, n, plain=d == 0)
            ar = incremental_log_likelihood(decoder.ar_decoder, memory, memory.size(1), ids)
            term = ar if scorer == "ar" else 0.5 * (ar + score)
            labels = [t for t in ids if t not in (0, decoder.eos)]
            with torch.no_grad():
                ctc = float(sequence_log_likelihood(model.ctc.log_softmax(memory), lengths, [labels])[0])
            joint = (1 - weight) * term + weight * ctc + penalty * len(ids)
            if d == 0:
                fallback = (ids, term)
            if best is None or joint > best[1] + 1e-4:
                best = (ids, joint)
        if best[1] == -math.inf:  # no candidate fits the frames: the plain pass with its decoder term
            best = fallback
        assert hyp.token_ids == best[0]
        assert hyp.score == pytest.approx(best[1], rel=1e-4, abs=1e-4)
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids and alone.score == pytest.approx(hyp.score, rel=1e-4, abs=1e-4)
    if (scorer, penalty) == ("ar", 2.0):  # here the AR term picks another candidate than the Paraformer's own score
        own = recognize_batch(model, items, DecodeOptions(ctc_weight=weight, candidates=5, penalty=penalty))
        assert any(a.token_ids != b.token_ids for a, b in zip(batched, own))


def one_token_alternative(logp, ids, a):
    """The ``a``-th one-token alternative of a candidate whose positions' best and second-best
    tokens are ``ids`` ``(K, 2)``: the second best at the position of the ``a``-th smallest
    margin ``logp[best] - logp[second]`` (``logp`` ``(K, V)``; the earlier on a tie), or
    ``None`` when the candidate has ``a`` tokens or fewer."""
    top = logp.gather(-1, ids)
    margins = (top[:, 0] - top[:, 1]).tolist()
    if a >= len(margins):
        return None
    pos = sorted(range(len(margins)), key=lambda p: (margins[p], p))[a]
    changed = ids[:, 0].tolist()
    changed[pos] = int(ids[pos, 1])
    return changed


@pytest.mark.parametrize("scorer,alternatives,ctc_path,ar_top", [("paraformer", 2, False, 0), ("ar", 3, False, 0),
                                                              ("both", 1, False, 0), ("ar", 2, True, 0),
                                                              ("paraformer", 0, True, 0), ("both", 0, True, 0),
                                                              ("ar", 2, True, 3), ("both", 3, False, 2)])
def test_token_alternatives_equal_a_loop(scorer, alternatives, ctc_path, ar_top):
    """--nar-alternatives A: besides each candidate, the A hypotheses with the token at its
    1st..A-th least confident position (smallest best - second-best margin) replaced by the
    second best, scored like the candidates (decoder term: the sum of the Paraformer's
    log-probabilities of the tokens, the AR decoder's log-likelihood, or their mean); with
    --nar-ctc-candidate the CTC head's best path last (its Paraformer term from the pass at its
    count); with --nar-ar-top N the AR term only for the N best by the Paraformer's own term
    (the earlier first on a tie) and the choice among those; the candidates come first on a
    tie, and alone equals batched."""
    model = paraformer_with_ar()
    decoder = model.decoder
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    if ctc_path:  # a random CTC head's best path is empty (blank at every frame): make it emit a token
        with torch.no_grad():
            model.ctc.ctc_lo.bias[0] -= 1.0
    weight, penalty = 0.05, 1.0
    options = DecodeOptions(ctc_weight=weight, candidates=3, nar_scorer=scorer, penalty=penalty,
                            nar_alternatives=alternatives, nar_ctc_candidate=ctc_path, nar_ar_top=ar_top)
    batched = recognize_batch(model, items, options)
    plain = recognize_batch(model, items, DecodeOptions(ctc_weight=weight))
    without = recognize_batch(model, items, DecodeOptions(ctc_weight=weight, candidates=3, nar_scorer=scorer,
                                                          penalty=penalty))
    for item, hyp, first in zip(items, batched, plain):
        memory, lengths = encode_utterances(model, [item])
        alpha = decoder.predictor(memory, lengths)
        n0 = len(first.token_ids)
        hyps = []  # every candidate first, then each one's alternatives, in that order
        bases = [(n0 + d, d == 0) for d in candidate_offsets(3) if d == 0 or 1 <= n0 + d <= memory.size(1)]
        logps = [candidate_log_probs(decoder, memory, alpha, n, plain) for n, plain in bases]
        for logp in logps:
            hyps.append((logp.argmax(dim=-1).tolist(), logp))
        for a in range(alternatives):
            for logp in logps:
                changed = one_token_alternative(logp, logp.topk(2, dim=-1).indices, a)
                if changed is not None:
                    hyps.append((changed, logp))
        if ctc_path:
            with torch.no_grad():
                path = best_paths(model.ctc.log_softmax(memory), lengths)[0][0]
            if path:  # an empty path is no candidate
                hyps.append((path, candidate_log_probs(decoder, memory, alpha, len(path), False)))
        scored = []
        for ids, logp in hyps:
            own = float(sum(logp[p, t] for p, t in enumerate(ids)))
            labels = [t for t in ids if t not in (0, decoder.eos)]
            with torch.no_grad():
                ctc = float(sequence_log_likelihood(model.ctc.log_softmax(memory), lengths, [labels])[0])
            scored.append((ids, own, weight * ctc + penalty * len(ids)))
        first = sorted(range(len(scored)), key=lambda r: -((1 - weight) * scored[r][1] + scored[r][2]))  # stable
        kept = set(first[:ar_top]) if ar_top else set(range(len(scored)))
        assert not ar_top or len(scored) > ar_top  # the limit matters here
        best = fallback = None
        for r, (ids, own, rest) in enumerate(scored):
            if r not in kept:
                continue
            ar = incremental_log_likelihood(decoder.ar_decoder, memory, memory.size(1), ids)
            term = {"paraformer": own, "ar": ar, "both": 0.5 * (own + ar)}[scorer]
            joint = (1 - weight) * term + rest
            fallback = fallback or (ids, term)
            if best is None or joint > best[1] + 1e-4:
                best = (ids, joint)
        if best[1] == -math.inf:  # nothing fits the frames: the plain pass with its decoder term
            best = fallback
        assert hyp.token_ids == best[0]
        assert hyp.score == pytest.approx(best[1], rel=1e-4, abs=1e-4)
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids and alone.score == pytest.approx(hyp.score, rel=1e-4, abs=1e-4)
    assert any(a.token_ids != b.token_ids for a, b in zip(batched, without))  # an alternative or the path won


def test_nar_ar_top_between_the_paraformers_choice_and_the_full_ar_score():
    """--nar-ar-top 1 keeps the hypothesis the Paraformer's own score picks (only it is scored
    again); a limit at or above the hypotheses per utterance changes nothing."""
    model = paraformer_with_ar()
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    common = dict(ctc_weight=0.3, candidates=3, nar_alternatives=2)
    own = recognize_batch(model, items, DecodeOptions(**common))
    full = recognize_batch(model, items, DecodeOptions(nar_scorer="ar", **common))
    one = recognize_batch(model, items, DecodeOptions(nar_scorer="ar", nar_ar_top=1, **common))
    assert [h.token_ids for h in one] == [h.token_ids for h in own]
    assert [h.token_ids for h in own] != [h.token_ids for h in full]  # the AR score picks otherwise here
    for top in (9, 50):  # 3 candidates + 2 alternatives each = 9 hypotheses per utterance
        same = recognize_batch(model, items, DecodeOptions(nar_scorer="ar", nar_ar_top=top, **common))
        assert [h.token_ids for h in same] == [h.token_ids for h in full]
        assert [h.score for h in same] == pytest.approx([h.score for h in full], rel=1e-5, abs=1e-5)


def test_nar_scorer_refusals():
    """An unknown scorer, the AR scorer of a Paraformer trained without the auxiliary decoder,
    and a scorer for anything but a Paraformer's own decoding are refused by name."""
    with pytest.raises(ValueError, match="--nar-scorer must be one of paraformer, ar, both, got 'lm'"):
        DecodeOptions(nar_scorer="lm")
    with pytest.raises(ValueError, match="--nar-alternatives must be >= 0, got -1"):
        DecodeOptions(nar_alternatives=-1)
    with pytest.raises(ValueError, match="--nar-ar-top must be >= 0, got -1"):
        DecodeOptions(nar_scorer="ar", nar_ar_top=-1)
    message = ("--nar-ar-top 4 limits the hypotheses the auxiliary autoregressive decoder scores: it needs "
               "--nar-scorer ar or both")
    with pytest.raises(ValueError, match=message):
        DecodeOptions(candidates=5, nar_ar_top=4)
    assert nar_candidates_refusal(5, "paraformer", nar_ar_top=4) == message
    assert nar_candidates_refusal(1, "transformer", model="m.pth", nar_scorer="both", nar_ar_top=2) == (
        "--nar-scorer both --nar-ar-top 2: only a Paraformer's own decoding (--decoder paraformer, --decode-mode "
        "decoder) has candidates; m.pth has --decoder transformer")
    assert nar_candidates_refusal(1, nar_alternatives=-2) == "--nar-alternatives must be >= 0, got -2"
    assert nar_candidates_refusal(1, "transformer", model="m.pth", nar_alternatives=2) == (
        "--nar-alternatives 2: only a Paraformer's own decoding (--decoder paraformer, --decode-mode decoder) has "
        "candidates; m.pth has --decoder transformer")
    model = paraformer_with_ar(ar_dlayers=0)
    items = [{"audio": torch.randn(9 * 640, 1)}]
    with pytest.raises(ValueError, match=r"--nar-scorer both scores the candidates with the Paraformer's auxiliary "
                                         r"autoregressive decoder: this model was trained without one "
                                         r"\(--paraformer-ar-dlayers 0\)"):
        recognize_batch(model, items, DecodeOptions(candidates=3, nar_scorer="both"))
    assert nar_candidates_refusal(1, "transformer", model="m.pth", nar_scorer="ar") == (
        "--nar-scorer ar: only a Paraformer's own decoding (--decoder paraformer, --decode-mode decoder) has "
        "candidates; m.pth has --decoder transformer")
    assert nar_candidates_refusal(3, "paraformer", nar_scorer="ar") is None
    assert nar_candidates_refusal(1, "transformer", "ctc-greedy", "m.pth", nar_ctc_candidate=True) == (
        "--nar-ctc-candidate: only a Paraformer's own decoding (--decoder paraformer, --decode-mode decoder) has "
        "candidates; m.pth has --decoder transformer, decoded with --decode-mode ctc-greedy")


def test_eval_and_the_model_api_with_the_ar_scorer(toy_corpus, tmp_path, capsys):
    """A (random) Paraformer with an auxiliary decoder saved as train.py saves it: eval.py
    --nar-candidates 3 --nar-scorer both --nar-alternatives 2 --nar-ctc-candidate --nar-ar-top 4 writes exactly
    what each utterance decoded alone gets, the model API the same; a model without the auxiliary decoder, and
    --nar-ar-top without the auxiliary decoder's score, are refused in one line."""
    import json

    from datamodule.data_module import build_dataset
    from datamodule.text_transform import TextTransform
    from espnet.asr.pretrained import Recognizer
    from espnet.training.checkpoints import write_sidecar

    tokenizer = TextTransform(toy_corpus["sp_model_path"], toy_corpus["dict_path"])
    paths = {}
    for ar in (1, 0):
        config = model_config(odim=tokenizer.odim, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer",
                              adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1, ctc_weight=0.3,
                              paraformer_ar_dlayers=ar)
        torch.manual_seed(0)
        paths[ar] = str(tmp_path / f"ar{ar}" / "model_avg_1.pth")
        (tmp_path / f"ar{ar}").mkdir()
        torch.save(E2E(config).state_dict(), paths[ar])
        write_sidecar(paths[ar], {"model_config": config.to_dict(), "sp_model_path": toy_corpus["sp_model_path"],
                                  "dict_path": toy_corpus["dict_path"]})
    test = toy_corpus["train"]
    out = str(tmp_path / "both.json")
    flags = ["--nar-candidates", "3", "--nar-scorer", "both", "--nar-alternatives", "2", "--nar-ctc-candidate",
             "--nar-ar-top", "4", "--ctc-weight", "0.5"]
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", test, "--pretrained-model-path", paths[1],
                          "--num-workers", "0", "--accelerator", "cpu", "--batch-size", "3", "--output-json", out,
                          *flags])
    assert code == 0
    with open(out, encoding="utf8") as handle:
        result = json.load(handle)
    rec = Recognizer.from_pretrained(paths[1])
    dataset = build_dataset(toy_corpus["root"], test, "test", "audio", audio_utterance_norm=rec.model.audio_utterance_norm)
    options = DecodeOptions(ctc_weight=0.5, candidates=3, nar_scorer="both", nar_alternatives=2, nar_ctc_candidate=True,
                            nar_ar_top=4)
    expected = [rec.tokenizer.post_process(recognize(rec.model, {"audio": dataset[i]["audio"]}, options).token_ids)
                for i in range(len(dataset))]
    assert [u["hypothesis"] for u in result["utterances"]] == expected and any(expected)
    clips = [dataset.media_path(i) for i in range(len(dataset))]
    assert rec.transcribe_batch(clips, candidates=3, ctc_weight=0.5, nar_scorer="both", nar_alternatives=2,
                                nar_ctc_candidate=True, nar_ar_top=4) == expected
    capsys.readouterr()
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", test, "--pretrained-model-path", paths[0],
                          "--num-workers", "0", "--accelerator", "cpu", *flags])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--nar-scorer both scores the candidates with the Paraformer's auxiliary autoregressive decoder" in err
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", test, "--pretrained-model-path", paths[1],
                          "--num-workers", "0", "--accelerator", "cpu", "--nar-candidates", "3", "--nar-ar-top", "2"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("--nar-ar-top 2 limits the hypotheses the auxiliary autoregressive decoder scores: it needs --nar-scorer "
            "ar or both") in err
