"""The Paraformer decoder (``--decoder paraformer``): continuous integrate-and-fire against a plain
reference loop, exact token counts in training, the glancing sampler's share, batch decoding
equal to one at a time, a tiny model that learns a few toy utterances and decodes them through
``eval.py`` (also after export), ``eval.py --decode-mode ctc-greedy``, and bad option values."""

import math
import types

import pytest
import torch

from bad_corpus import AUDIO_MODEL, BadCorpus, train_args
from espnet.asr import eval_cli
from espnet.asr.recognizer import DecodeOptions, ctc_greedy, recognize, recognize_batch
from espnet.nets.pytorch_backend.decoder.cif import fire_weights, integrate_and_fire, scale_to_lengths
from espnet.nets.pytorch_backend.decoder.paraformer_candidates import rescored
from espnet.nets.pytorch_backend.decoder.paraformer_decoder import ParaformerDecoder, glancing_mask
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.training import train_cli
from flag_config import model_config
from tiny_paraformer import overfit_paraformer, run_eval

NUM_UTTS = 4


def reference_cif(hidden, alpha, threshold=1.0, tail=0.0, count=None):
    """Integrate-and-fire frame by frame (Python floats): the embeddings that fire, one
    tensor each. ``count`` (training): exactly that many, the last taking the rest."""
    fired, integral, acc = [], 0.0, torch.zeros(hidden.size(1), dtype=torch.float64)
    for h, a in zip(hidden.double(), alpha.tolist()):
        while integral + a >= threshold:  # the frame completes a token (maybe several)
            take = threshold - integral
            fired.append(acc + take * h)
            acc, integral, a = torch.zeros_like(acc), 0.0, a - take
        integral += a
        acc = acc + a * h
    if count is not None:
        if len(fired) >= count:
            return fired[: count - 1] + [sum(fired[count - 1:], acc)]
        return fired + [acc] * (count - len(fired))  # one short (rounding): the rest is the last
    if tail > 0 and integral > 0 and integral + tail >= threshold:
        fired.append(acc)
    return fired


def random_batch(seed, b=4, t=23, d=5, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, d, generator=gen)
    lengths = torch.tensor([t] + [int(x) for x in torch.randint(1, t + 1, (b - 1,), generator=gen)])
    alpha = torch.sigmoid(2 * torch.randn(b, t, generator=gen)) * scale
    alpha = alpha.masked_fill(torch.arange(t)[None] >= lengths[:, None], 0.0)
    return hidden, alpha, lengths


def assert_matches_reference(emb, counts, hidden, alpha, lengths, **kw):
    for i in range(hidden.size(0)):
        n = int(lengths[i])
        ref = reference_cif(hidden[i, :n], alpha[i, :n], **kw)
        assert int(counts[i]) == len(ref)
        if ref:
            torch.testing.assert_close(emb[i, : len(ref)].double(), torch.stack(ref), rtol=1e-4, atol=1e-4)
        assert not emb[i, len(ref):].any()  # nothing after the utterance's tokens


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale,tail", [(1.0, 0.0), (1.0, 0.45), (2.7, 0.0), (0.6, 0.45), (0.3, 0.9)])
def test_cif_equals_the_reference_loop(seed, scale, tail):
    """Random weights with padding; ``scale`` > 1 makes frames that fire several tokens."""
    hidden, alpha, lengths = random_batch(seed, scale=scale)
    emb, counts = integrate_and_fire(hidden, alpha, 1.0, tail_threshold=tail)
    assert_matches_reference(emb, counts, hidden, alpha, lengths, tail=tail)
    for i in range(hidden.size(0)):  # each utterance alone gets what it gets in the padded batch
        n = int(lengths[i])
        one, one_count = integrate_and_fire(hidden[i : i + 1, :n], alpha[i : i + 1, :n], 1.0, tail_threshold=tail)
        assert int(one_count[0]) == int(counts[i])
        torch.testing.assert_close(one[0], emb[i, : one.size(1)], rtol=1e-5, atol=1e-5)


def test_cif_crossings_several_fires_and_the_tail_by_hand():
    hidden = torch.eye(4).unsqueeze(0)  # frame t is the unit vector e_t: an embedding shows its weights
    alpha = torch.tensor([[0.4, 0.8, 2.5, 0.55]])  # sums to 4.25
    emb, counts = integrate_and_fire(hidden, alpha, 1.0)
    assert counts.tolist() == [4]
    torch.testing.assert_close(emb[0], torch.tensor([[0.4, 0.6, 0.0, 0.0],    # frame 1 crosses: 0.6 | 0.2
                                                     [0.0, 0.2, 0.8, 0.0],    # frame 2 fires twice more
                                                     [0.0, 0.0, 1.0, 0.0],
                                                     [0.0, 0.0, 0.7, 0.3]]))  # 0.25 left over
    assert integrate_and_fire(hidden, alpha, 1.0, tail_threshold=0.8)[1].tolist() == [5]  # 0.25 + 0.8 >= 1
    assert integrate_and_fire(hidden, alpha, 1.0, tail_threshold=0.7)[1].tolist() == [4]
    emb, counts = integrate_and_fire(hidden, alpha, 2.0)  # another threshold
    assert counts.tolist() == [2]
    torch.testing.assert_close(emb[0, 0], torch.tensor([0.4, 0.8, 0.8, 0.0]))


def test_cif_weightings_sharing_the_frames_equal_weightings_of_copies():
    """``S * B`` rows of weights over ``B`` utterances (decoding candidates, the ``s``-th of
    utterance ``i`` at ``s * B + i``) give what the same rows give over ``S`` copies of the
    frames; rows not a multiple of the utterances are refused."""
    hidden, alpha, lengths = random_batch(5, b=3, t=40, d=4)
    targets = torch.tensor([[3, 7, 1], [9, 2, 5]])  # (S, B) counts, each weighting rescaled to its own
    rows = alpha.repeat(2, 1)
    scaled = scale_to_lengths(rows, targets.flatten())
    emb, counts = integrate_and_fire(hidden, scaled, 1.0, counts=targets.flatten())
    copies, copy_counts = integrate_and_fire(hidden.repeat(2, 1, 1), scaled, 1.0, counts=targets.flatten())
    assert counts.tolist() == copy_counts.tolist() == [3, 7, 1, 9, 2, 5] and emb.shape == (6, 9, 4)
    torch.testing.assert_close(emb, copies, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="CIF: 4 rows of weights for 3 utterances"):
        integrate_and_fire(hidden, alpha.repeat(2, 1)[:4], 1.0)


def test_cif_rows_firing_beside_rescaled_rows_in_one_call():
    """``open_last`` per row: rows that fire from their own weights (their fired counts, the
    tail rule: the last token closes at the threshold) beside rows rescaled to a count (the
    last token takes the rest) give, in one call, what the two separate calls give."""
    hidden, alpha, _ = random_batch(6, b=3, t=40, d=4)
    fired, fired_n = integrate_and_fire(hidden, alpha, 1.0, tail_threshold=0.45)
    targets = torch.tensor([4, 9, 2])
    scaled = scale_to_lengths(alpha, targets)
    rescaled, _ = integrate_and_fire(hidden, scaled, 1.0, counts=targets)
    emb, counts = integrate_and_fire(hidden, torch.cat([alpha, scaled]), 1.0, counts=torch.cat([fired_n, targets]),
                                     open_last=torch.tensor([False, False, False, True, True, True]))
    assert counts.tolist() == fired_n.tolist() + [4, 9, 2]
    torch.testing.assert_close(emb[:3, : fired.size(1)], fired, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(emb[3:, : rescaled.size(1)], rescaled, rtol=1e-5, atol=1e-5)
    assert not emb[:3, fired.size(1):].any() and not emb[3:, rescaled.size(1):].any()


@pytest.mark.parametrize("seed", range(3))
def test_training_gives_exactly_the_target_length(seed):
    """Rescaled weights sum to N up to float rounding; exactly N embeddings come out anyway,
    each the reference loop's, and each integrates the threshold."""
    gen = torch.Generator().manual_seed(seed)
    hidden, alpha, lengths = random_batch(seed, b=5, t=301, d=3)
    targets = torch.randint(1, 60, (5,), generator=gen)
    for threshold in (1.0, 0.7):
        scaled = scale_to_lengths(alpha, targets, threshold)
        emb, counts = integrate_and_fire(hidden, scaled, threshold, counts=targets)
        assert counts.tolist() == targets.tolist() and emb.size(1) == int(targets.max())
        weights = fire_weights(scaled, counts, threshold, int(targets.max()), open_last=True).sum(-1)
        for i, n in enumerate(targets.tolist()):
            torch.testing.assert_close(weights[i, :n], torch.full((n,), threshold), rtol=1e-4, atol=1e-4)
            ref = reference_cif(hidden[i, : int(lengths[i])], scaled[i, : int(lengths[i])], threshold, count=n)
            torch.testing.assert_close(emb[i, :n].double(), torch.stack(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 1.0])
def test_glancing_sampler_replaces_the_intended_share(ratio):
    targets = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, -1, -1, -1, -1, -1], [1, 2, 3, 4, 5, -1, -1, -1]])
    predicted = targets.clamp(min=0).clone()
    predicted[0, [0, 2, 3, 5, 6, 7]] = 0  # 6 wrong
    predicted[1, [1]] = 0  # 1 wrong
    predicted[:, 5:] = 3  # the padding's predictions do not count
    for seed in range(5):
        mask = glancing_mask(predicted, targets, ratio, generator=torch.Generator().manual_seed(seed))
        assert mask.sum(1).tolist() == [math.floor(ratio * 6), math.floor(ratio * 1), 0]
        assert not (mask & (targets == -1)).any()


def test_glancing_second_pass_gets_the_target_embeddings(monkeypatch):
    """In training the decoder's second pass sees the target token's embedding exactly at the
    sampler's positions and the CIF embeddings elsewhere."""
    torch.manual_seed(0)
    dec = ParaformerDecoder(12, 8, 2, 16, 1, dropout_rate=0.0, sampling_ratio=0.5).train()
    memory, lengths = torch.randn(2, 30, 8), torch.tensor([30, 21])
    targets = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 2, -1, -1, -1]])
    seen, masks = [], []
    forward = dec.forward
    monkeypatch.setattr(dec, "forward", lambda emb, *a: seen.append(emb.detach().clone()) or forward(emb, *a))
    import espnet.nets.pytorch_backend.decoder.paraformer_decoder as module
    glance = module.glancing_mask
    monkeypatch.setattr(module, "glancing_mask", lambda *a, **k: masks.append(glance(*a, **k)) or masks[-1])
    out = dec.forward_train(memory, lengths, targets)
    assert len(seen) == 2 and out["embed_lengths"].tolist() == [6, 3] and out["logits"].shape == (2, 6, 12)
    mask = masks[0]
    first, second = seen
    assert int(mask.sum()) >= 1
    torch.testing.assert_close(second[mask], dec.embed(targets[mask]).detach())
    torch.testing.assert_close(second[~mask], first[~mask])


@pytest.mark.parametrize("detach", [False, True])
def test_detached_predictor_keeps_the_quantity_loss_off_the_encoder(detach):
    """--paraformer-detach-predictor: the quantity loss reaches the encoder output only when
    the predictor is not detached; the cross-entropy reaches it either way, and the predictor
    is trained either way."""
    torch.manual_seed(0)
    dec = ParaformerDecoder(12, 8, 2, 16, 1, dropout_rate=0.0, sampling_ratio=0.0, detach_predictor=detach).train()
    memory = torch.randn(2, 30, 8, requires_grad=True)
    targets = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 2, -1, -1, -1]])
    out = dec.forward_train(memory, torch.tensor([30, 21]), targets)
    quantity = torch.autograd.grad(out["loss_quantity"], memory, allow_unused=True, retain_graph=True)[0]
    assert (quantity is None or float(quantity.abs().sum()) == 0.0) == detach
    ce = torch.autograd.grad(out["loss_ce"], memory, retain_graph=True)[0]
    assert float(ce.abs().sum()) > 0
    predictor = torch.autograd.grad(out["loss_quantity"], dec.predictor.output.weight)[0]
    assert float(predictor.abs().sum()) > 0


def test_paraformer_batch_decoding_equals_one_at_a_time():
    config = model_config(odim=20, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer", adim=16, aheads=2,
                          eunits=32, elayers=1, dunits=32, dlayers=1)
    torch.manual_seed(0)
    model = E2E(config).eval()
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    options = DecodeOptions(beam_size=5)
    batched = recognize_batch(model, items, options)
    assert any(len(h.token_ids) > 3 for h in batched)
    for item, hyp in zip(items, batched):
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids
        assert alone.score == pytest.approx(hyp.score, rel=1e-5, abs=1e-5)


def test_passes_sharing_the_memory_equal_passes_over_its_copies():
    """``forward`` with ``S * B`` rows of embeddings over ``B`` utterances (the candidates'
    layout): each row's logits equal those of a pass over a copy of its utterance's encoder
    output (padded frames and tokens included); rows not a multiple of the utterances are
    refused in one line."""
    torch.manual_seed(0)
    decoder = ParaformerDecoder(odim=11, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=2).eval()
    gen = torch.Generator().manual_seed(3)
    b, s, k = 3, 4, 6
    memory = torch.randn(b, 9, 8, generator=gen)
    memory_lengths = torch.tensor([9, 4, 7])
    embeddings = torch.randn(s * b, k, 8, generator=gen)
    embed_lengths = torch.randint(0, k + 1, (s * b,), generator=gen)
    with torch.no_grad():
        shared = decoder(embeddings, embed_lengths, memory, memory_lengths)
        copies = decoder(embeddings, embed_lengths, memory.repeat(s, 1, 1), memory_lengths.repeat(s))
    assert shared.shape == (s * b, k, 11)
    valid = torch.arange(k)[None] < embed_lengths[:, None]
    assert int(valid.sum()) > 0
    torch.testing.assert_close(shared[valid], copies[valid], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"^Paraformer: 5 rows of acoustic embeddings for 3 utterances \(not a "):
        decoder(embeddings[:5], embed_lengths[:5], memory, memory_lengths)


@pytest.mark.parametrize("name", ["transformer", "paraformer"])
def test_sentencepiece_decoders_share_their_vocabulary_contract(name):
    """Both decoders over the model's SentencePiece units: the CTC head predicts the same odim
    classes from the same targets, and text needs the tokenizer (refused in one line naming
    the decoder)."""
    from espnet.nets.pytorch_backend.decoder.transformer_decoder import TransformerDecoder

    cls = {"transformer": TransformerDecoder, "paraformer": ParaformerDecoder}[name]
    decoder = cls(odim=11, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1)
    targets = torch.tensor([[3, 4, -1]])
    assert decoder.ctc_vocab_size == 11 and decoder.ctc_token_offset == 0
    assert decoder.ctc_targets(targets, ["x"]) is targets
    with pytest.raises(ValueError, match=f"^--decoder {name} decodes SentencePiece tokens: give --sp-model-path"):
        decoder.ids_to_text([3, 4], None)
    tokenizer = types.SimpleNamespace(post_process=lambda ids: "-".join(map(str, ids)))
    assert decoder.ids_to_text([3, 4], tokenizer) == "3-4"


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    frames = torch.tensor([[0, 3, 3, 0, 3, 5, 5, 0, 2], [4, 4, 1, 1, 0, 2, 2, 2, 2]])
    logp = torch.log_softmax(torch.nn.functional.one_hot(frames, 6).float() * 5, dim=-1)
    ctc = types.SimpleNamespace(log_softmax=lambda memory: logp)
    model = types.SimpleNamespace(ctc_weight=0.3, ctc=ctc, blank=0, decoder=types.SimpleNamespace(ctc_token_offset=0))
    out = ctc_greedy(model, torch.zeros(2, 9, 1), torch.tensor([8, 5]))
    assert [h.token_ids for h in out] == [[3, 3, 5], [4, 1]]  # the second is cut at its 5 frames
    assert out[1].score == pytest.approx(float(logp[1, :5].max(-1).values.sum()))
    model.decoder.ctc_token_offset = 1  # a pretrained decoder's vocabulary: class c is token c - 1
    assert ctc_greedy(model, torch.zeros(2, 9, 1), torch.tensor([8, 5]))[0].token_ids == [2, 2, 4]
    model.ctc_weight = 0.0
    with pytest.raises(ValueError, match="ctc-greedy: this model's CTC head was not trained"):
        ctc_greedy(model, torch.zeros(2, 9, 1), torch.tensor([8, 5]))


# ---- a tiny model that learns the toy corpus -------------------------------------------------

@pytest.fixture(scope="module")
def trained(toy_corpus, tmp_path_factory):
    """A tiny audio Paraformer (CTC weight 0.3) overfit on the first toy training utterances,
    saved as train.py saves it; returns (checkpoint, label list, transcripts, losses)."""
    return overfit_paraformer(toy_corpus, tmp_path_factory.mktemp("paraformer"), NUM_UTTS)


def test_tiny_paraformer_learns_and_eval_decodes_its_training_utterances(trained, toy_corpus, tmp_path):
    checkpoint, path, transcripts, losses = trained
    first, last = losses[0], losses[-1]
    assert last["loss_ce"] < 0.1 * first["loss_ce"] and last["loss_quantity"] < 0.7, (first, last)
    code, result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp_path / "decoded.json"))
    assert code == 0
    hyps = [u["hypothesis"] for u in result["utterances"]]
    assert sum(h == t for h, t in zip(hyps, transcripts)) >= NUM_UTTS - 1, (hyps, transcripts)
    assert result["wer"] <= 0.1


def test_export_round_trip_and_the_recognizer(trained, toy_corpus, tmp_path):
    from espnet.asr.pretrained import Recognizer

    checkpoint, path, transcripts, _ = trained
    rec = Recognizer.from_pretrained(checkpoint)
    assert rec.model.decoder.decodes_itself
    exported = rec.save_pretrained(str(tmp_path / "exported"))
    again = Recognizer.from_pretrained(exported)
    for key, value in rec.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    code, exported_result = run_eval(toy_corpus["root"], path, exported, str(tmp_path / "exported.json"))
    code_ckpt, ckpt_result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp_path / "checkpoint.json"))
    assert code == code_ckpt == 0
    assert [u["hypothesis"] for u in exported_result["utterances"]] == \
        [u["hypothesis"] for u in ckpt_result["utterances"]]
    from datamodule.data_module import build_dataset

    dataset = build_dataset(toy_corpus["root"], path, "test", "audio")
    clips = [dataset.media_path(i) for i in range(NUM_UTTS)]
    assert again.transcribe_batch(clips) == [u["hypothesis"] for u in ckpt_result["utterances"]]


def test_eval_ctc_greedy_mode(trained, toy_corpus, tmp_path):
    """The CTC head's best path through eval.py: the JSON holds exactly what ctc_greedy gives
    each utterance (the head was trained along, weight 0.3)."""
    from datamodule.data_module import build_dataset
    from espnet.asr.pretrained import Recognizer
    from espnet.asr.recognizer import encode_utterances

    checkpoint, path, transcripts, _ = trained
    code, result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp_path / "ctc.json"),
                            "--decode-mode", "ctc-greedy")
    assert code == 0
    rec = Recognizer.from_pretrained(checkpoint)
    dataset = build_dataset(toy_corpus["root"], path, "test", "audio", audio_utterance_norm=rec.model.audio_utterance_norm)
    expected = []
    for i in range(len(dataset)):
        memory, lengths = encode_utterances(rec.model, [{"audio": dataset[i]["audio"]}])
        expected.append(rec.tokenizer.post_process(ctc_greedy(rec.model, memory, lengths)[0].token_ids))
    assert [u["hypothesis"] for u in result["utterances"]] == expected
    assert result["wer"] < 0.7  # a trained head, not noise (an untrained one gives no word right)


# ---- bad option values --------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value,message", [
    ("--paraformer-threshold", "0", "threshold must be > 0, got 0.0"),
    ("--paraformer-threshold", "-1", "threshold must be > 0, got -1.0"),
    ("--paraformer-threshold", "nan", "threshold must be a finite number, got nan"),
    ("--paraformer-sampling-ratio", "1.5", "sampling_ratio must be <= 1, got 1.5"),
    ("--paraformer-sampling-ratio", "-0.1", "sampling_ratio must be >= 0, got -0.1"),
    ("--paraformer-tail-threshold", "-0.5", "tail_threshold must be >= 0, got -0.5"),
    ("--paraformer-quantity-weight", "inf", "quantity_weight must be a finite number, got inf"),
])
def test_bad_option_values_are_refused_with_one_line(capsys, toy_corpus, tmp_path, flag, value, message):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    code = train_cli.main(train_args(corpus, str(tmp_path / "exp"), "train.csv", "--decoder", "paraformer",
                                     flag, value, model=AUDIO_MODEL))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {flag} (paraformer): {message}"]


def test_paraformer_flags_need_the_paraformer(capsys, toy_corpus, tmp_path):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    code = train_cli.main(train_args(corpus, str(tmp_path / "exp"), "train.csv", "--paraformer-threshold", "0.8"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == ("error: --paraformer-threshold does not apply to this model (audio encoder "
                                            "resnet1d, decoder transformer): it is an option of decoder paraformer")
    with pytest.raises(ValueError, match="--paraformer-cif-kernel must be odd"):
        ParaformerDecoder(10, 8, 2, 16, 1, cif_kernel=4)


# ---- CTC rescoring of one-pass candidates (--nar-candidates) --------------------------------------

def brute_force_ctc(logp, labels):
    """log p(labels) by enumerating every frame path of ``logp`` ``(T, V)`` (blank 0)."""
    import itertools

    t, v = logp.shape
    total = -math.inf
    for path in itertools.product(range(v), repeat=t):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        if collapsed == labels:
            total = float(torch.logaddexp(torch.tensor(total), logp[range(t), list(path)].sum().double()))
    return total


def test_ctc_sequence_log_likelihood_sums_every_alignment():
    from espnet.nets.pytorch_backend.ctc import sequence_log_likelihood

    gen = torch.Generator().manual_seed(3)
    logp = torch.log_softmax(torch.randn(2, 5, 4, generator=gen), dim=-1)
    lengths = torch.tensor([5, 3])
    # candidate-major: rows 0, 1 are utterances 0, 1; rows 2, 3 again utterances 0, 1
    hyps = [[2, 2], [1, 3], [], [1, 2, 1]]
    got = sequence_log_likelihood(logp, lengths, hyps)
    expected = [brute_force_ctc(logp[i % 2, : int(lengths[i % 2])], h) for i, h in enumerate(hyps)]
    assert got.tolist() == pytest.approx(expected, abs=1e-4)
    # a repeat needs a blank between: [2, 2, 2] cannot come out of 3 frames, [1, 2, 1] can
    worst = sequence_log_likelihood(logp, lengths, [[1], [2, 2, 2]])
    assert worst[1] == -math.inf and math.isfinite(worst[0])
    with pytest.raises(ValueError, match="3 hypotheses for 2 utterances"):
        sequence_log_likelihood(logp, lengths, [[1], [2], [3]])
    with pytest.raises(ValueError, match="holds the blank class 0"):
        sequence_log_likelihood(logp, lengths, [[1, 0], [2]])


def small_paraformer(ctc_weight=0.3):
    config = model_config(odim=20, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer", adim=16, aheads=2,
                          eunits=32, elayers=1, dunits=32, dlayers=1, ctc_weight=ctc_weight)
    torch.manual_seed(0)
    return E2E(config).eval()


def candidate_log_probs(decoder, memory, alpha, n, plain):
    """``(K, V)`` log-probabilities of one utterance's (``memory`` ``(1, T, D)``) candidate,
    decoded alone: the plain pass (``K`` the tokens that fire), or ``alpha`` rescaled to
    ``K = n`` tokens."""
    lengths = torch.tensor([memory.size(1)])
    if plain:
        emb, counts = integrate_and_fire(memory, alpha, decoder.threshold, tail_threshold=decoder.tail_threshold)
    else:
        emb, counts = integrate_and_fire(memory, scale_to_lengths(alpha, torch.tensor([n]), decoder.threshold),
                                         decoder.threshold, counts=torch.tensor([n]))
    if int(counts[0]) == 0:
        return torch.zeros(0, decoder.odim)
    with torch.no_grad():
        return torch.log_softmax(decoder(emb, counts, memory, lengths)[0, : int(counts[0])].float(), dim=-1)


def one_candidate(decoder, memory, alpha, n, plain):
    """Hypothesis and decoder score of one utterance's candidate (:func:`candidate_log_probs`)."""
    best, ids = candidate_log_probs(decoder, memory, alpha, n, plain).max(dim=-1)
    return ids.tolist(), float(best.sum())


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_rescored_candidates_equal_a_loop_over_utterances_and_counts(weight):
    """--nar-candidates 5: per utterance, the best joint score over the token counts n, n-1,
    n+1, n-2, n+2 (each candidate decoded alone), whatever the batch; 1 candidate = the
    plain pass."""
    from espnet.asr.recognizer import encode_utterances
    from espnet.nets.pytorch_backend.ctc import sequence_log_likelihood
    from espnet.nets.pytorch_backend.decoder.paraformer_candidates import candidate_offsets

    assert candidate_offsets(5) == [0, -1, 1, -2, 2]
    model = small_paraformer()
    decoder = model.decoder
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    options = DecodeOptions(beam_size=5, ctc_weight=weight, candidates=5)
    batched = recognize_batch(model, items, options)
    plain = recognize_batch(model, items, DecodeOptions(ctc_weight=weight))
    assert recognize_batch(model, items, DecodeOptions(ctc_weight=weight, candidates=1)) == plain
    changed = 0
    for item, hyp, first in zip(items, batched, plain):
        memory, lengths = encode_utterances(model, [item])
        alpha = decoder.predictor(memory, lengths)
        n0 = len(first.token_ids)
        best = None
        for d in (0, -1, 1, -2, 2):
            n = n0 + d
            if d != 0 and not 1 <= n <= memory.size(1):
                continue
            ids, score = one_candidate(decoder, memory, alpha, n, plain=d == 0)
            labels = [t for t in ids if t not in (0, decoder.eos)]
            ctc = float(sequence_log_likelihood(model.ctc.log_softmax(memory), lengths, [labels])[0])
            joint = (1 - weight) * score + weight * ctc
            if best is None or joint > best[1] + 1e-4:
                best = (ids, joint)
        if best[1] == -math.inf:  # no candidate fits the frames: the plain pass with its decoder score
            best = (first.token_ids, first.score)
        assert hyp.token_ids == best[0]
        assert hyp.score == pytest.approx(best[1], rel=1e-4, abs=1e-4)
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids and alone.score == pytest.approx(hyp.score, rel=1e-4, abs=1e-4)
        changed += hyp.token_ids != first.token_ids
    assert changed >= 1  # the rescoring chose another candidate somewhere (else this proves little)


@pytest.mark.parametrize("nar_count,m,penalty", [("ctc", 1, 0.0), ("ctc", 3, 0.0), ("both", 3, 0.0), ("both", 3, 2.0),
                                                 ("cif", 5, 2.0)])
def test_nar_count_candidates_equal_a_loop(nar_count, m, penalty):
    """--nar-count ctc / both: the candidates are taken around the length of the CTC head's
    best path (and the CIF count: the plain pass first, a count tried once), each decoded
    alone with the weights rescaled to it; one candidate is that pass, not rescored.
    --penalty adds its length bonus per token to each candidate's joint score."""
    from espnet.asr.recognizer import encode_utterances
    from espnet.nets.pytorch_backend.ctc import sequence_log_likelihood
    from espnet.nets.pytorch_backend.decoder.paraformer_candidates import candidate_offsets

    model = small_paraformer()
    decoder = model.decoder
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    options = DecodeOptions(ctc_weight=0.5, candidates=m, nar_count=nar_count, penalty=penalty)
    batched = recognize_batch(model, items, options)
    plain = recognize_batch(model, items, DecodeOptions(ctc_weight=0.5))
    changed = 0
    for item, hyp, first in zip(items, batched, plain):
        memory, lengths = encode_utterances(model, [item])
        frames = memory.size(1)
        alpha = decoder.predictor(memory, lengths)
        n_ctc = len(ctc_greedy(model, memory, lengths)[0].token_ids)
        counts = []
        if nar_count != "ctc":  # around the CIF count: the plain pass, then the rescaled weights
            n_cif = len(first.token_ids)
            counts = [("plain", n_cif)] + [("scaled", n_cif + d) for d in candidate_offsets(m)[1:]
                                           if 1 <= n_cif + d <= frames]
        if nar_count != "cif":  # around the CTC count, a count tried once
            for d in candidate_offsets(m):
                n = n_ctc + d
                if (d == 0 or 1 <= n <= frames) and n not in [c for _, c in counts]:
                    counts.append(("scaled", n))
        scored = []
        for kind, n in counts:
            ids, score = one_candidate(decoder, memory, alpha, n, plain=kind == "plain")
            assert len(ids) == n
            labels = [t for t in ids if t not in (0, decoder.eos)]
            ctc = float(sequence_log_likelihood(model.ctc.log_softmax(memory), lengths, [labels])[0])
            scored.append((ids, score if len(counts) == 1 else 0.5 * score + 0.5 * ctc + penalty * len(ids)))
        best = max(scored, key=lambda s: s[1])  # the first maximum on a tie
        if best[1] == -math.inf:  # no candidate fits the frames: the first, with its decoder score
            best = one_candidate(decoder, memory, alpha, counts[0][1], plain=counts[0][0] == "plain")
        assert hyp.token_ids == best[0]
        assert hyp.score == pytest.approx(best[1], rel=1e-4, abs=1e-4)
        alone = recognize(model, item, options)
        assert alone.token_ids == hyp.token_ids and alone.score == pytest.approx(hyp.score, rel=1e-4, abs=1e-4)
        changed += hyp.token_ids != first.token_ids
    assert changed >= 1  # the CTC count chose another hypothesis somewhere (else this proves little)
    if penalty:  # the bonus never shortens a hypothesis; here it lengthens some (not with the CIF's 5)
        unbonused = recognize_batch(model, items, DecodeOptions(ctc_weight=0.5, candidates=m, nar_count=nar_count))
        lengths = [(len(a.token_ids), len(u.token_ids)) for a, u in zip(batched, unbonused)]
        assert all(a >= u for a, u in lengths) and (nar_count == "cif" or any(a > u for a, u in lengths))


def test_nar_count_refusals():
    """A --nar-count that is not known, and a CTC count or the CTC candidate from a CTC head
    that was not trained, are refused by name."""
    with pytest.raises(ValueError, match="--nar-count must be one of cif, ctc, both, got 'length'"):
        DecodeOptions(nar_count="length")
    with pytest.raises(ValueError, match="--penalty must be a finite number, got nan"):
        DecodeOptions(penalty=float("nan"))
    model = small_paraformer(ctc_weight=0.0)
    items = [{"audio": torch.randn(9 * 640, 1)}]
    with pytest.raises(ValueError, match="--nar-count ctc counts the tokens of the CTC head's best path, but this "
                                         "model's CTC head was not trained"):
        recognize_batch(model, items, DecodeOptions(ctc_weight=0.0, nar_count="ctc"))
    with pytest.raises(ValueError, match="--nar-ctc-candidate adds the CTC head's best path to the candidates, but "
                                         "this model's CTC head was not trained"):
        recognize_batch(model, items, DecodeOptions(ctc_weight=0.0, candidates=3, nar_ctc_candidate=True))
    assert len(recognize_batch(model, items, DecodeOptions(ctc_weight=0.0))) == 1  # the CIF count needs no head



def test_eval_nar_candidates(trained, toy_corpus, tmp_path, capsys):
    """eval.py --nar-candidates 3 --penalty 1.5, and --nar-count ctc: the JSON holds exactly
    what the rescoring gives each utterance decoded alone (and the model API the same); a count below 1, or candidates for CTC greedy, are refused in one
    line."""
    from datamodule.data_module import build_dataset
    from espnet.asr.pretrained import Recognizer

    checkpoint, path, transcripts, _ = trained
    code, result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp_path / "rescored.json"),
                            "--nar-candidates", "3", "--ctc-weight", "0.5", "--penalty", "1.5")
    assert code == 0
    rec = Recognizer.from_pretrained(checkpoint)
    dataset = build_dataset(toy_corpus["root"], path, "test", "audio", audio_utterance_norm=rec.model.audio_utterance_norm)
    options = DecodeOptions(ctc_weight=0.5, candidates=3, penalty=1.5)
    expected = [rec.tokenizer.post_process(recognize(rec.model, {"audio": dataset[i]["audio"]}, options).token_ids)
                for i in range(len(dataset))]
    assert [u["hypothesis"] for u in result["utterances"]] == expected
    clips = [dataset.media_path(i) for i in range(NUM_UTTS)]  # the model API (transcribe, the service)
    assert rec.transcribe_batch(clips, candidates=3, ctc_weight=0.5, penalty=1.5) == expected
    code, result = run_eval(toy_corpus["root"], path, checkpoint, str(tmp_path / "ctc_count.json"),
                            "--nar-count", "ctc", "--ctc-weight", "0.5")
    options = DecodeOptions(ctc_weight=0.5, nar_count="ctc")
    expected = [rec.tokenizer.post_process(recognize(rec.model, {"audio": dataset[i]["audio"]}, options).token_ids)
                for i in range(len(dataset))]
    assert code == 0 and [u["hypothesis"] for u in result["utterances"]] == expected
    assert rec.transcribe_batch(clips, nar_count="ctc", ctc_weight=0.5) == expected
    capsys.readouterr()
    for extra, message in [(["--nar-candidates", "0"], "--nar-candidates must be >= 1, got 0"),
                           (["--nar-count", "both", "--decode-mode", "ctc-greedy"],
                            f"--nar-count both: only a Paraformer's own decoding (--decoder paraformer, --decode-mode "
                            f"decoder) has candidates; {checkpoint} has --decoder paraformer, decoded with "
                            f"--decode-mode ctc-greedy"),
                           (["--nar-candidates", "2", "--decode-mode", "ctc-greedy"],
                            f"--nar-candidates 2: only a Paraformer's own decoding (--decoder paraformer, --decode-mode "
                            f"decoder) has candidates; {checkpoint} has --decoder paraformer, decoded with "
                            f"--decode-mode ctc-greedy")]:
        code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", path, "--pretrained-model-path",
                              checkpoint, "--accelerator", "cpu", *extra])
        err = capsys.readouterr().err
        assert code != 0 and "Traceback" not in err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_rescoring_keeps_the_plain_pass_when_no_candidate_fits_the_frames():
    """Every candidate longer than the CTC head can emit (its log-likelihood -inf): the plain
    pass and its decoder score, a finite number, instead of a -inf score."""
    decoder = ParaformerDecoder(odim=12, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1).eval()
    memory, lengths = torch.randn(1, 3, 8), torch.tensor([3])
    alpha = torch.full((1, 3), 3.0)  # 9 tokens fire from 3 frames
    emb, counts = integrate_and_fire(memory, alpha, decoder.threshold)
    ctc = types.SimpleNamespace(log_softmax=lambda m: torch.log_softmax(torch.zeros(1, 3, 12), dim=-1))
    out = rescored(decoder, memory, lengths, alpha, ctc, DecodeOptions(ctc_weight=0.5, candidates=3))
    assert len(out[0].token_ids) == 9 and math.isfinite(out[0].score)
    logits = decoder(emb, counts, memory, lengths)
    best, ids = torch.log_softmax(logits, dim=-1).max(dim=-1)
    assert out[0].token_ids == ids[0].tolist() and out[0].score == pytest.approx(float(best.sum()), abs=1e-4)
