"""The Paraformer with CTC queries (``--paraformer-queries ctc``, Paraformer-v2): the Viterbi
alignment against enumerating every path, the per-token mean of the posteriors, one query per
target token in training, decoding one pass at the CTC best path (batch equal to one at a
time, with and without the CTC fusion), a tiny model that learns a few toy utterances and
decodes them through ``eval.py``, and the refusals."""

import itertools

import pytest
import torch

from bad_corpus import AUDIO_MODEL, BadCorpus, train_args
from espnet.asr.recognizer import DecodeOptions, recognize, recognize_batch
from espnet.nets.pytorch_backend.ctc import CTC, best_paths, forced_alignment, path_token_index, token_reduce
from espnet.nets.pytorch_backend.decoder.paraformer_decoder import ParaformerDecoder
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.training import train_cli
from flag_config import model_config
from tiny_paraformer import overfit_paraformer, run_eval

NUM_UTTS = 4


def best_alignment_by_enumeration(logp, labels):
    """The best frame labelling of ``logp`` ``(T, V)`` (blank 0) that collapses to ``labels``,
    as the target position per frame (-1 blank), by trying every labelling; ``None`` if none."""
    frames, n = logp.size(0), len(labels)
    best = None
    for positions in itertools.product(range(-1, n), repeat=frames):
        emitted = [p for i, p in enumerate(positions) if p >= 0 and (i == 0 or positions[i - 1] != p)]
        if emitted != list(range(n)):
            continue
        merged = any(positions[i] >= 1 and positions[i - 1] == positions[i] - 1
                     and labels[positions[i]] == labels[positions[i] - 1] for i in range(1, frames))
        if merged:  # two equal labels in a row without a blank collapse into one
            continue
        score = sum(float(logp[i, 0] if p < 0 else logp[i, labels[p]]) for i, p in enumerate(positions))
        if best is None or score > best[0]:
            best = (score, list(positions))
    return None if best is None else best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forced_alignment_equals_enumerating_every_path(seed):
    gen = torch.Generator().manual_seed(seed)
    logp = torch.randn(5, 6, 4, generator=gen).log_softmax(-1)
    labels = [[1, 2], [3, 3], [1, 2, 3], [2], [2, 2, 1]]
    lengths = torch.tensor([6, 5, 6, 4, 6])
    targets = torch.tensor([label + [-1] * (3 - len(label)) for label in labels])
    index = forced_alignment(logp, lengths, targets.clamp(min=0), torch.tensor([len(x) for x in labels]))
    assert index.shape == (5, 6)
    for i, label in enumerate(labels):
        n = int(lengths[i])
        assert index[i, :n].tolist() == best_alignment_by_enumeration(logp[i, :n], label)
        assert index[i, n:].tolist() == [-1] * (6 - n)


def test_forced_alignment_splits_frames_evenly_when_no_path_fits():
    logp = torch.zeros(2, 4, 3).log_softmax(-1)
    # 3 frames cannot emit 1 1 1 (two blanks needed between the repeats); 4 frames for 2 tokens can
    index = forced_alignment(logp, torch.tensor([3, 4]), torch.tensor([[1, 1, 1], [1, 2, 0]]), torch.tensor([3, 2]))
    assert index[0].tolist() == [0, 1, 2, -1]
    assert sorted(set(index[1].tolist()) - {-1}) == [0, 1]


def test_token_reduce_equals_a_loop():
    gen = torch.Generator().manual_seed(4)
    values = torch.randn(2, 7, 3, generator=gen)
    index = torch.tensor([[0, 0, -1, 1, 1, 1, -1], [-1, 0, 2, 2, -1, -1, -1]])
    mean, amax = token_reduce(values, index, 3, "mean"), token_reduce(values, index, 3, "amax")
    for b in range(2):
        for k in range(3):
            frames = values[b, index[b] == k]
            if len(frames):
                torch.testing.assert_close(mean[b, k], frames.mean(0))
                torch.testing.assert_close(amax[b, k], frames.max(0).values)
            else:  # token 1 of the second utterance has no frame
                assert mean[b, k].tolist() == [0.0] * 3 and amax[b, k].tolist() == [float("-inf")] * 3


def test_training_gives_one_query_per_target_token_from_the_alignment():
    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=9, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                                queries="ctc", sampling_ratio=0.0)
    assert decoder.predictor is None and decoder.reads_ctc
    ctc = CTC(9, 8, dropout_rate=0.0)
    gen = torch.Generator().manual_seed(5)
    memory = torch.randn(3, 12, 8, generator=gen)
    memory_lengths = torch.tensor([12, 7, 10])
    targets = torch.tensor([[1, 2, 2, 3], [4, 5, -1, -1], [6, -1, -1, -1]])
    seen = {}
    forward = decoder.forward

    def spy(embeddings, embed_lengths, *rest):
        seen["embeddings"], seen["lengths"] = embeddings, embed_lengths
        return forward(embeddings, embed_lengths, *rest)

    decoder.forward = spy
    out = decoder.forward_train(memory, memory_lengths, targets, ctc=ctc)
    assert out["embed_lengths"].tolist() == [4, 2, 1] and seen["lengths"].tolist() == [4, 2, 1]
    assert out["logits"].shape == (3, 4, 9) and "loss_quantity" not in out
    logp = ctc.log_softmax(memory).detach()
    for b in range(3):
        n = int(memory_lengths[b])
        label = targets[b][targets[b] >= 0].tolist()
        path = best_alignment_by_enumeration(logp[b, :n], label) if n <= 7 else None
        index = forced_alignment(logp[b : b + 1, :n], memory_lengths[b : b + 1], torch.tensor([label]),
                                 torch.tensor([len(label)]))[0]
        if path is not None:
            assert index.tolist() == path
        for k in range(len(label)):
            expected = logp[b, :n][index == k].exp().mean(0) @ decoder.embed.weight
            torch.testing.assert_close(seen["embeddings"][b, k], expected, rtol=1e-5, atol=1e-5)
    assert torch.autograd.grad(out["loss_att"], decoder.embed.weight)[0].abs().sum() > 0
    with pytest.raises(ValueError, match="reads the CTC head's posteriors: none was given"):
        decoder.forward_train(memory, memory_lengths, targets)


def small_model(ctc_weight=0.3):
    config = model_config(odim=20, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer", adim=16, aheads=2,
                          eunits=32, elayers=1, dunits=32, dlayers=1, ctc_weight=ctc_weight, paraformer_queries="ctc")
    torch.manual_seed(0)
    return E2E(config).eval()


@pytest.mark.parametrize("fusion", [0.0, 1.0])
def test_decoding_one_pass_at_the_ctc_best_path_batch_equals_one_at_a_time(fusion):
    from espnet.asr.recognizer import encode_utterances

    model = small_model()
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    options = DecodeOptions(nar_ctc_fusion=fusion, nar_count="ctc")
    batched = recognize_batch(model, items, options)
    for item, hyp in zip(items, batched):
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids
        assert alone.score == pytest.approx(hyp.score, rel=1e-5, abs=1e-5)
        memory, lengths = encode_utterances(model, [item])
        logp = model.ctc.log_softmax(memory)
        (path, _), = best_paths(logp, lengths)
        assert len(hyp.token_ids) == len(path) > 0  # one token per token of the CTC best path
        index = path_token_index(logp.argmax(-1), lengths)
        with torch.no_grad():
            own = torch.log_softmax(model.decoder(model.decoder.ctc_queries(logp, index, len(path)),
                                                  torch.tensor([len(path)]), memory, lengths), -1)[0]
        chooser = own + fusion * token_reduce(logp, index, len(path), "amax")[0]
        assert hyp.token_ids == chooser.argmax(-1).tolist()
        assert hyp.score == pytest.approx(float(own.gather(-1, chooser.argmax(-1, keepdim=True)).sum()), abs=1e-4)


def test_decoding_options_that_need_cif_counts_are_refused():
    model = small_model()
    items = [{"audio": torch.randn(9 * 640, 1)}]
    for options, flag in ((DecodeOptions(nar_count="both"), "--nar-count both"),
                          (DecodeOptions(candidates=3, nar_alternatives=2), "--nar-alternatives 2"),
                          (DecodeOptions(candidates=3, nar_ctc_candidate=True), "--nar-ctc-candidate")):
        with pytest.raises(ValueError, match=f"^{flag}: this Paraformer \\(--paraformer-queries ctc\\) decodes the CTC "
                                             "head's best path"):
            recognize_batch(model, items, options)


def candidates_alone(decoder, logp, memory, lengths, i, shifts, fusion):
    """Utterance ``i``'s blank-penalised candidates, each decoded alone: ``(ids, decoder score,
    CTC score, tokens)`` per shift ``0 .. shifts-1``."""
    from espnet.nets.pytorch_backend.ctc import sequence_log_likelihood

    n_frames = int(lengths[i])
    one_logp, one_memory, one_length = logp[i : i + 1, :n_frames], memory[i : i + 1, :n_frames], lengths[i : i + 1]
    out = []
    for shift in range(shifts):
        shifted = one_logp.clone()
        shifted[..., 0] -= shift
        index = path_token_index(shifted.argmax(-1), one_length)
        n = int(index.max()) + 1
        with torch.no_grad():
            own = torch.log_softmax(decoder(decoder.ctc_queries(one_logp, index, n), torch.tensor([n]),
                                            one_memory, one_length), -1)[0]
        ids = (own + fusion * token_reduce(one_logp, index, n, "amax")[0]).argmax(-1)
        labels = [t for t in ids.tolist() if t not in (0, decoder.eos)]
        ctc_score = float(sequence_log_likelihood(one_logp, one_length, [labels])[0])
        out.append((ids.tolist(), float(own.gather(-1, ids[:, None]).sum()), ctc_score, n))
    return out


def stand_in_ctc(seed=6, b=4, t=14, v=9):
    """Encoder output ``(b, t, 8)``, lengths and a CTC head whose blank wins most frames by
    less than 2 nats (so penalising it adds tokens)."""
    import types

    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, t, 8, generator=gen)
    lengths = torch.tensor([14, 9, 12, 6])
    logits = torch.randn(b, t, v, generator=gen)
    logits[..., 0] += 1.5
    logp = torch.log_softmax(logits, dim=-1)
    return memory, lengths, logp, types.SimpleNamespace(log_softmax=lambda m: logp)


@pytest.mark.parametrize("fusion", [0.0, 1.0])
def test_blank_penalty_candidates_pick_the_best_joint_score(fusion):
    """``--nar-candidates 3``: the best path with 0, 1 and 2 nats off the blank, each decoded
    alone here, scored ``(1 - w) * decoder + w * CTC + penalty * n``; the batch picks the same
    hypothesis with that score; one candidate is the plain pass."""
    from espnet.nets.pytorch_backend.decoder.paraformer_candidates import blank_penalty_candidates

    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=9, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                                queries="ctc").eval()
    memory, lengths, logp, ctc = stand_in_ctc()
    options = DecodeOptions(candidates=3, nar_count="ctc", nar_ctc_fusion=fusion, ctc_weight=0.4, penalty=3.0)
    batched = blank_penalty_candidates(decoder, memory, lengths, ctc, options)
    plain = blank_penalty_candidates(decoder, memory, lengths, ctc, DecodeOptions(nar_ctc_fusion=fusion,
                                                                                  nar_count="ctc"))
    winners = set()
    for i in range(4):
        alone = candidates_alone(decoder, logp, memory, lengths, i, 3, fusion)
        assert plain[i].token_ids == alone[0][0]
        assert plain[i].score == pytest.approx(alone[0][1], abs=1e-4)
        scored = [(0.6 * own + 0.4 * ctc_score + 3.0 * n, ids, n) for ids, own, ctc_score, n in alone]
        best = max(range(3), key=lambda j: (scored[j][0], -j))
        assert batched[i].token_ids == scored[best][1]
        assert batched[i].score == pytest.approx(scored[best][0], abs=1e-3)
        assert scored[0][2] < scored[2][2]  # the penalty adds tokens
        winners.add(best)
    assert winners != {0}  # a penalised path won somewhere


@pytest.mark.parametrize("scorer", ["ar", "both"])
def test_blank_penalty_candidates_scored_by_the_auxiliary_ar_decoder(scorer):
    """``--nar-scorer ar|both``: the decoder term of each distinct candidate is the auxiliary
    AR decoder's log-likelihood of it (or its mean with the Paraformer's), computed here alone;
    the batch picks the best joint score; ``--nar-ar-top 1`` keeps the Paraformer's own choice
    and gives it the AR decoder's score."""
    from espnet.nets.pytorch_backend.decoder.paraformer_candidates import blank_penalty_candidates

    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=9, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                                queries="ctc", ar_dlayers=1).eval()
    with torch.no_grad():  # a confident AR decoder, whose choice differs from the Paraformer's somewhere
        decoder.ar_decoder.output_layer.weight.mul_(8.0)
    memory, lengths, logp, ctc = stand_in_ctc()
    common = dict(candidates=4, nar_count="ctc", nar_ctc_fusion=1.0, ctc_weight=0.4, penalty=1.0)
    batched = blank_penalty_candidates(decoder, memory, lengths, ctc, DecodeOptions(nar_scorer=scorer, **common))
    own_choice = blank_penalty_candidates(decoder, memory, lengths, ctc, DecodeOptions(**common))
    top1 = blank_penalty_candidates(decoder, memory, lengths, ctc, DecodeOptions(nar_scorer=scorer, nar_ar_top=1,
                                                                                 **common))
    changed = 0
    for i in range(4):
        one_memory, one_length = memory[i : i + 1, : int(lengths[i])], lengths[i : i + 1]
        distinct = {}
        for ids, own, ctc_score, n in candidates_alone(decoder, logp, memory, lengths, i, 4, 1.0):
            if tuple(ids) in distinct:
                continue
            with torch.no_grad():
                ar = float(decoder.ar_decoder.score_sequences(one_memory, one_length, [ids])[0])
            term = ar if scorer == "ar" else 0.5 * (own + ar)
            distinct[tuple(ids)] = (0.6 * term + 0.4 * ctc_score + 1.0 * n, 0.6 * own + 0.4 * ctc_score + 1.0 * n)
        best = max(distinct, key=lambda key: distinct[key][0])  # max keeps the first on a tie
        assert batched[i].token_ids == list(best)
        assert batched[i].score == pytest.approx(distinct[best][0], abs=1e-3)
        mine = max(distinct, key=lambda key: distinct[key][1])
        assert own_choice[i].token_ids == list(mine)
        assert top1[i].token_ids == list(mine)
        assert top1[i].score == pytest.approx(distinct[mine][0], abs=1e-3)
        changed += best != mine
    assert changed > 0  # the AR decoder chose otherwise somewhere


def test_rows_with_their_utterance_equal_the_rows_shared_per_utterance():
    """``utterances``: any rows, each naming its utterance, give what the same rows give in the
    ``S`` per utterance layout (the Paraformer's pass, the AR decoder's score, the CTC
    log-likelihood), and a count that does not match is refused."""
    from espnet.nets.pytorch_backend.ctc import sequence_log_likelihood

    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=9, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=2,
                                queries="ctc", ar_dlayers=1).eval()
    memory, lengths, logp, _ = stand_in_ctc()
    b, s, k = 4, 3, 5
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(s * b, k, 8, generator=gen)
    counts = torch.randint(1, k + 1, (s * b,), generator=gen)
    hyps = [torch.randint(1, 8, (int(n),), generator=gen).tolist() for n in counts]
    rows = torch.tensor([7, 2, 11, 4, 5, 0])  # some rows, out of order; utterance 3 twice, 1 twice, 2 and 0 once
    with torch.no_grad():
        shared = decoder(emb, counts, memory, lengths)
        picked = decoder(emb[rows], counts[rows], memory, lengths, rows % b)
        for j, r in enumerate(rows.tolist()):
            n = int(counts[r])
            assert torch.allclose(picked[j, :n], shared[r, :n], atol=1e-5)
        ar = decoder.ar_decoder.score_sequences(memory, lengths, hyps)
        ar_rows = decoder.ar_decoder.score_sequences(memory, lengths, [hyps[r] for r in rows.tolist()], rows % b)
    assert torch.allclose(ar_rows, ar[rows], atol=1e-4)
    ctc = sequence_log_likelihood(logp, lengths, hyps)
    ctc_rows = sequence_log_likelihood(logp, lengths, [hyps[r] for r in rows.tolist()], utterances=rows % b)
    assert torch.allclose(ctc_rows, ctc[rows], atol=1e-4)
    assert torch.isfinite(ctc_rows).any()
    with pytest.raises(ValueError, match="^Paraformer: 6 rows of acoustic embeddings, 5 utterance indices$"):
        decoder(emb[rows], counts[rows], memory, lengths, rows[:5] % b)
    with pytest.raises(ValueError, match="^score_sequences: 6 hypotheses, 5 utterance indices$"):
        decoder.ar_decoder.score_sequences(memory, lengths, [hyps[r] for r in rows.tolist()], rows[:5] % b)
    with pytest.raises(ValueError, match="^6 hypotheses, 5 utterance indices$"):
        sequence_log_likelihood(logp, lengths, [hyps[r] for r in rows.tolist()], utterances=rows[:5] % b)


def test_repeated_paths_are_decoded_once_and_hypotheses_scored_once():
    """The blank-penalised shifts often give an utterance the same path: the Paraformer decodes
    each distinct path once, and the AR decoder scores each distinct hypothesis once (the
    counts enumerated here utterance by utterance); the choice is that of the other tests."""
    from espnet.nets.pytorch_backend.decoder.paraformer_candidates import blank_penalty_candidates

    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=9, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1,
                                queries="ctc", ar_dlayers=1).eval()
    memory, lengths, logp, ctc = stand_in_ctc()
    paths = hypotheses = 0
    for i in range(4):
        alone = candidates_alone(decoder, logp, memory, lengths, i, 4, 1.0)
        hypotheses += len({tuple(ids) for ids, *_ in alone})
        one = logp[i : i + 1, : int(lengths[i])].clone()
        seen = set()
        for shift in range(4):
            shifted = one.clone()
            shifted[..., 0] -= shift
            seen.add(tuple(path_token_index(shifted.argmax(-1), lengths[i : i + 1])[0].tolist()))
        paths += len(seen)
    assert paths < 16  # some shifts repeat a path
    seen_rows = {"paraformer": [], "ar": []}
    forward, score = decoder.forward, decoder.ar_decoder.score_sequences

    def spy_forward(emb, *rest):
        seen_rows["paraformer"].append(emb.size(0))
        return forward(emb, *rest)

    def spy_score(memory, lengths, hyps, *rest):
        seen_rows["ar"].append(len(hyps))
        return score(memory, lengths, hyps, *rest)

    decoder.forward, decoder.ar_decoder.score_sequences = spy_forward, spy_score
    options = DecodeOptions(candidates=4, nar_count="ctc", nar_ctc_fusion=1.0, ctc_weight=0.4, penalty=1.0,
                            nar_scorer="ar")
    with torch.no_grad():
        blank_penalty_candidates(decoder, memory, lengths, ctc, options)
    assert seen_rows == {"paraformer": [paths], "ar": [hypotheses]}
    assert hypotheses <= paths


def test_transfer_ar_scorer_takes_the_ar_models_decoder():
    """``train.py --transfer-ar-scorer``: the auxiliary decoder of a Paraformer with
    ``--paraformer-ar-dlayers`` becomes the Transformer-decoder checkpoint's decoder, weight
    for weight; a decoder of another size or a Paraformer without one is refused in one line."""
    from espnet.training.model_module import select_ar_scorer

    sizes = dict(odim=20, audio_encoder="resnet1d", resnet_width=4, adim=16, aheads=2, eunits=32, elayers=1,
                 dunits=32, ctc_weight=0.3)
    torch.manual_seed(0)
    ar_model = E2E(model_config(decoder="transformer", dlayers=1, **sizes))
    para = E2E(model_config(decoder="paraformer", dlayers=2, paraformer_queries="ctc", paraformer_ar_dlayers=1,
                            **sizes))
    taken = select_ar_scorer(ar_model.state_dict(), para, "ar.pth")
    para.load_state_dict(taken, strict=False)
    ar_state = ar_model.decoder.state_dict()
    for key, value in para.decoder.ar_decoder.state_dict().items():
        assert torch.equal(value, ar_state[key]), key
    assert len(taken) == len(ar_state)
    deeper = E2E(model_config(decoder="transformer", dlayers=2, **sizes))
    with pytest.raises(ValueError, match=r"^--transfer-ar-scorer: the decoder of deep.pth does not fit this "
                                         r"Paraformer's auxiliary decoder .*: not in the auxiliary decoder "
                                         r"decoder\.ar_decoder\.decoders\.1\."):
        select_ar_scorer(deeper.state_dict(), para, "deep.pth")
    plain = E2E(model_config(decoder="paraformer", dlayers=2, paraformer_queries="ctc", **sizes))
    with pytest.raises(ValueError, match=r"^--transfer-ar-scorer fills a Paraformer's auxiliary autoregressive "
                                         r"decoder: this model has none"):
        select_ar_scorer(ar_model.state_dict(), plain, "ar.pth")


def test_training_on_the_ar_models_frozen_encoder_keeps_its_decoder_as_the_scorer(tmp_path):
    """``--transfer-encoder --transfer-ar-scorer --freeze-param frontend proj_encoder encoder
    decoder.ar_decoder --paraformer-ar-weight 0``: the module starts with the AR model's
    encoder and decoder, and a training step changes the Paraformer but neither of them."""
    from espnet.training.model_module import ModelModule

    sizes = dict(odim=20, audio_encoder="resnet1d", resnet_width=4, adim=16, aheads=2, eunits=32, elayers=1,
                 dunits=32, ctc_weight=0.3)
    torch.manual_seed(0)
    ar_model = E2E(model_config(decoder="transformer", dlayers=1, **sizes))
    torch.save(ar_model.state_dict(), tmp_path / "ar.pth")
    config = model_config(decoder="paraformer", dlayers=1, paraformer_queries="ctc", paraformer_ar_dlayers=1,
                          paraformer_ar_weight=0.0, **sizes)
    module = ModelModule({"model_config": config.to_dict(), "lr": 1e-2, "weight_decay": 0.0, "warmup_epochs": 1,
                          "max_epochs": 1, "pretrained_model_path": str(tmp_path / "ar.pth"), "transfer_encoder": True,
                          "transfer_ar_scorer": True,
                          "freeze_param": ["frontend", "proj_encoder", "encoder", "decoder.ar_decoder"]})
    model = module.train().model  # the frozen parts stay in eval mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ar_state = ar_model.state_dict()
    for key, value in before.items():
        if key.startswith("decoder.ar_decoder."):
            assert torch.equal(value, ar_state["decoder." + key[len("decoder.ar_decoder."):]]), key
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    gen = torch.Generator().manual_seed(3)
    batch = {"audio": torch.randn(2, 24 * 640, 1, generator=gen), "audio_lengths": torch.tensor([24 * 640, 18 * 640])}
    out = model.losses(batch, torch.tensor([[3, 4, 5], [6, 7, -1]]))
    assert "loss_ar" not in out  # weight 0: the scorer's loss is not computed
    out["loss"].backward()
    optimizer.step()
    after = model.state_dict()
    kept = ("frontend.", "proj_encoder.", "encoder.", "decoder.ar_decoder.")
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith(kept))
    assert not torch.equal(after["decoder.output_layer.weight"], before["decoder.output_layer.weight"])


def test_model_options_that_contradict_ctc_queries_are_refused():
    with pytest.raises(ValueError, match=r"^--decoder paraformer reads the CTC head's posteriors .*--ctc-weight > 0 "
                                         r"\(got 0\)"):
        small_model(ctc_weight=0.0)
    with pytest.raises(ValueError, match="^--paraformer-queries ctc has no CIF predictor"):
        ParaformerDecoder(10, 8, 2, 16, 1, queries="ctc", live_predictor=True, detach_encoder=True)


def test_train_refuses_an_unknown_query_kind(capsys, toy_corpus, tmp_path):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    with pytest.raises(SystemExit) as exit_info:  # argparse's refusal of a value outside the choices
        train_cli.main(train_args(corpus, str(tmp_path / "exp"), "train.csv", "--decoder", "paraformer",
                                  "--paraformer-queries", "fire", model=AUDIO_MODEL))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("train.py: error: argument --paraformer-queries: invalid choice: 'fire' "
                                            "(choose from 'cif', 'ctc')")


def test_tiny_model_learns_and_eval_decodes_its_training_utterances(toy_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctc_queries")
    checkpoint, path, transcripts, losses = overfit_paraformer(toy_corpus, tmp, NUM_UTTS, paraformer_queries="ctc")
    assert losses[-1]["loss_ce"] < 0.1 * losses[0]["loss_ce"], (losses[0], losses[-1])
    code, result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp / "decoded.json"))
    assert code == 0
    hyps = [u["hypothesis"] for u in result["utterances"]]
    assert sum(h == t for h, t in zip(hyps, transcripts)) >= NUM_UTTS - 1, (hyps, transcripts)
    fused_code, fused = run_eval(toy_corpus["root"], path, checkpoint, str(tmp / "fused.json"), "--nar-ctc-fusion",
                                 "1", "--nar-count", "ctc")
    assert fused_code == 0 and fused["wer"] <= 0.1
    # exported and loaded again, the recognizer transcribes the clips as eval.py decoded them
    from datamodule.data_module import build_dataset
    from espnet.asr.pretrained import Recognizer

    again = Recognizer.from_pretrained(Recognizer.from_pretrained(checkpoint).save_pretrained(str(tmp / "exported")))
    assert again.model.decoder.queries == "ctc" and again.model.decoder.predictor is None
    dataset = build_dataset(toy_corpus["root"], path, "test", "audio")
    assert again.transcribe_batch([dataset.media_path(i) for i in range(NUM_UTTS)]) == hyps
