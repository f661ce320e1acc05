"""Decoding many utterances at once gives every utterance the hypotheses and scores it
gets alone (beam search batched over utterances, length-sorted evaluation batches)."""

import os

import pytest
import torch

from espnet.asr.evaluate import evaluate, length_sorted_batches
from espnet.asr.recognizer import (
    DecodeOptions,
    batch_of_one,
    build_beam_search,
    encode_utterances,
    recognize,
    recognize_batch,
)
from espnet.nets.ctc_prefix_score import CTCPrefixScorer
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from flag_config import model_config
from test_legacy_equivalence import tiny_model

TINY_AV = dict(vision_encoder="resnet", audio_encoder="resnet1d", fusion_type="concat", adim=16, aheads=2,
               eunits=32, elayers=1, dunits=32, dlayers=1, resnet_width=4)


def assert_same_nbest(batched, alone):
    """Same token ids in the same order; scores equal up to float32 rounding (the BLAS
    rounds a matrix row differently depending on how many rows it multiplies)."""
    assert [h.yseq.tolist() for h in batched] == [h.yseq.tolist() for h in alone]
    assert [h.score for h in batched] == pytest.approx([h.score for h in alone], rel=1e-6, abs=1e-6)


class EosBias:
    """Add ``bias`` to the decoder's ``<eos>`` logit, so that random weights end their
    hypotheses at different steps (exercising per-utterance end detection)."""

    def __init__(self, model, bias):
        self.layer, self.eos, self.bias = model.decoder.output_layer, model.eos, bias

    def __enter__(self):
        with torch.no_grad():
            self.layer.bias[self.eos] += self.bias

    def __exit__(self, *exc):
        with torch.no_grad():
            self.layer.bias[self.eos] -= self.bias


@pytest.fixture(scope="module", params=["video", "audio"])
def legacy(request, legacy_dir, legacy_config):
    """A legacy tiny model, its reference, and four utterances of mixed lengths (two of
    equal length, so that they are encoded together)."""
    modality = request.param
    model = tiny_model(legacy_config, modality)
    model.load_state_dict(torch.load(os.path.join(legacy_dir, f"tiny_{modality}.pth"), weights_only=True))
    ref = torch.load(os.path.join(legacy_dir, f"tiny_{modality}_reference.pt"), weights_only=True)
    x, lengths = ref["input"], ref["lengths"].tolist()
    step = 1 if modality == "video" else 640
    cuts = [(0, lengths[0]), (1, lengths[1]), (0, 17 * step), (1, lengths[1])]
    items = [{modality: x[i, :n]} for i, n in cuts]
    return model.eval(), ref, items


@pytest.mark.parametrize("beam", [1, 5])
@pytest.mark.parametrize("eos_bias", [0.0, 6.0])
def test_legacy_batch_equals_one_at_a_time(legacy, beam, eos_bias):
    model, ref, items = legacy
    search = build_beam_search(model, beam_size=beam, ctc_weight=0.1)
    with torch.no_grad(), EosBias(model, eos_bias):
        memory, lengths = encode_utterances(model, items)
        batched = search.batch_forward(memory, lengths)
        alone = [search(encode_utterances(model, [item])[0][0]) for item in items]
    for i, item in enumerate(items):  # the padded batch holds each utterance's encoding alone
        enc, n = model.encode(batch_of_one(item))
        assert int(lengths[i]) == int(n[0])
        torch.testing.assert_close(memory[i, : int(n[0])], enc[0], rtol=1e-5, atol=1e-5)
    for b, a in zip(batched, alone):
        assert_same_nbest(b, a)
    if eos_bias == 0.0:  # the first utterance is the fixture's: the original code's hypothesis
        assert batched[0][0].yseq[1:].tolist() == ref[f"beam{beam}_ids"].tolist()
        assert batched[0][0].score == pytest.approx(ref[f"beam{beam}_score"], abs=1e-3)
    elif beam > 1:  # hypotheses ended at different steps: not all forced at the maximum length
        assert len({len(h.yseq) for hyps in batched for h in hyps}) > 2


def test_audio_visual_batch_equals_one_at_a_time():
    torch.manual_seed(0)
    model = E2E(model_config(odim=30, **TINY_AV)).eval()
    items = [{"video": torch.randn(n, 1, 88, 88), "audio": torch.randn(n * 640, 1)} for n in (9, 14, 9, 5)]
    longest_first = sorted(items, key=lambda item: -item["video"].size(0))  # as evaluate() orders a batch
    # CTC on the pre-beam; CTC alone (every token scored); decoder alone
    for beam, bias, ctc_weight in ((1, 0.0, 0.3), (4, 0.0, 0.3), (4, 3.0, 0.3), (3, 3.0, 1.0), (3, 3.0, 0.0)):
        options = DecodeOptions(beam_size=beam, ctc_weight=ctc_weight)
        with EosBias(model, bias):
            for batch in (items, longest_first):
                best = recognize_batch(model, batch, options)
                for item, hyp in zip(batch, best):
                    alone = recognize(model, item, options)
                    assert hyp.token_ids == alone.token_ids and hyp.score == pytest.approx(alone.score, rel=1e-6)


@pytest.mark.parametrize("lengths", [[9, 5, 7], [9, 7, 5]])  # longest first: finished frames skipped
def test_ctc_prefix_scores_batched_over_utterances(lengths):
    """The CTC forward variables of utterances of different lengths, padded together, are
    those of each utterance alone, over several steps of extension and selection."""
    torch.manual_seed(0)
    V, W, K = 11, 3, 4
    logp = torch.randn(3, 9, V).log_softmax(-1)
    batched = CTCPrefixScorer(logp, torch.tensor(lengths), blank=0, eos=V - 1)
    alone = [CTCPrefixScorer(logp[b : b + 1, :n], torch.tensor([n]), blank=0, eos=V - 1) for b, n in enumerate(lengths)]
    ys = torch.full((3, W, 1), V - 1)
    state_b, states_a = None, [None] * 3
    for _ in range(4):
        ids = torch.stack([torch.randperm(V - 2)[:K] + 1 for _ in range(3 * W)]).view(3, W, K)
        delta_b, full_b = batched.score(ys, state_b, ids)
        prev = torch.randint(0, W, (3, W))
        tok = torch.gather(ids, 2, torch.randint(0, K, (3, W, 1))).squeeze(2)[torch.arange(3)[:, None], prev]
        utts = torch.arange(3)
        state_b = CTCPrefixScorer.select(full_b, utts, prev, tok)
        for b, scorer in enumerate(alone):
            delta_a, full_a = scorer.score(ys[b : b + 1], states_a[b], ids[b : b + 1])
            torch.testing.assert_close(delta_b[b], delta_a[0], rtol=1e-6, atol=1e-4)
            states_a[b] = CTCPrefixScorer.select(full_a, torch.tensor([0]), prev[b : b + 1], tok[b : b + 1])
            torch.testing.assert_close(state_b[0][: lengths[b], :, b], states_a[b][0][:, :, 0], rtol=1e-6, atol=1e-4)
        ys = torch.cat([ys[torch.arange(3)[:, None], prev], tok.unsqueeze(2)], dim=2)


def test_each_utterance_keeps_its_own_length_limits():
    """maxlen = each utterance's encoder length (end detection on), or a fixed count."""
    torch.manual_seed(0)
    model = E2E(model_config(odim=30, **TINY_AV)).eval()
    search = build_beam_search(model, beam_size=3)
    memory, lengths = torch.randn(3, 8, 16), torch.tensor([8, 3, 5])
    with torch.no_grad():
        for ratio in (0.0, -4.0):
            batched = search.batch_forward(memory, lengths, maxlenratio=ratio)
            for b, n in enumerate(lengths.tolist()):
                alone = search(memory[b, :n], maxlenratio=ratio)
                assert_same_nbest(batched[b], alone)
                assert max(len(h.yseq) for h in alone) <= (n if ratio == 0 else 4) + 2
    with pytest.raises(ValueError, match=r"memory lengths \[8, 9\] do not fit memory of shape \(2, 8, 16\)"):
        search.batch_forward(memory[:2], torch.tensor([8, 9]))


def test_length_sorted_batches():
    assert length_sorted_batches([5, 9, 5, 2, 9], 2) == [[1, 4], [0, 2], [3]]
    with pytest.raises(ValueError, match="--batch-size must be >= 1, got 0"):
        length_sorted_batches([1], 0)


def test_evaluate_batched_equals_one_at_a_time(toy_corpus):
    """Audio-visual model through evaluate(): same rows (CSV order, texts, scores) for any
    batch size, and the real-time factor is decode seconds over media seconds."""
    from datamodule.text_transform import TextTransform

    tokenizer = TextTransform(toy_corpus["sp_model_path"], toy_corpus["dict_path"])
    torch.manual_seed(0)
    model = E2E(model_config(odim=tokenizer.odim, **TINY_AV)).eval()
    runs = {}
    with EosBias(model, 4.0):
        for batch_size in (1, 2):
            runs[batch_size] = evaluate(model, tokenizer, toy_corpus["root"], "test.csv", DecodeOptions(beam_size=3),
                                        progress=False, batch_size=batch_size)
    one, two = runs[1], runs[2]
    with open(toy_corpus["test"]) as handle:
        paths = [line.split(",")[1] for line in handle.read().splitlines()]
    assert [u["path"] for u in two.utterances] == [os.path.join(toy_corpus["root"], "toy", p) for p in paths]
    assert [u["hypothesis"] for u in two.utterances] == [u["hypothesis"] for u in one.utterances]
    assert [u["score"] for u in two.utterances] == pytest.approx([u["score"] for u in one.utterances], rel=1e-6)
    assert two.wer == one.wer
    assert two.audio_seconds == pytest.approx(one.audio_seconds) and two.audio_seconds > 0
    assert two.real_time_factor == pytest.approx(two.seconds / two.audio_seconds)


def test_prefix_cache_appends_and_reorders():
    """Against plain concatenation + indexing, through buffer growth and changing row counts."""
    from espnet.nets.pytorch_backend.transformer.prefix_cache import PrefixCache

    torch.manual_seed(0)
    cache = PrefixCache(layers=2, heads=2, d_k=3, dtype=torch.float32, device=torch.device("cpu"))
    ref = [None, None]  # per layer: (keys, values) (N, H, L, d_k)
    rows = 2
    for step in range(6):
        cache.start_step(rows)
        for layer in range(2):
            k, v = torch.randn(rows, 2, 1, 3), torch.randn(rows, 2, 1, 3)
            keys, values = cache.append(layer, k, v)
            old = ref[layer]
            ref[layer] = (k, v) if old is None else (torch.cat([old[0], k], 2), torch.cat([old[1], v], 2))
            assert torch.equal(keys, ref[layer][0]) and torch.equal(values, ref[layer][1])  # copies: exact
        keep = torch.randint(0, rows, (rows + step % 3 - 1 if step else 5,))
        cache.select(keep)
        ref = [(k[keep], v[keep]) for k, v in ref]
        rows = keep.numel()
    with pytest.raises(ValueError, match="the cache holds 6 hypotheses, the step has 7"):
        cache.start_step(7)


def test_eval_batch_size_flag(capsys):
    from espnet.asr import eval_cli

    base = ["--root-dir", "root", "--test-file", "test.csv", "--pretrained-model-path", "model.pth"]
    assert eval_cli.parse_args(base + ["--batch-size", "3"]).batch_size == 3
    with pytest.raises(SystemExit):
        eval_cli.parse_args(base + ["--batch-size", "0"])
    assert "--batch-size must be >= 1, got 0" in capsys.readouterr().err


def test_search_timings_per_scorer():
    """``timings`` (what benchmarks/eval_speed.py reports) splits the search's time by scorer."""
    torch.manual_seed(0)
    model = E2E(model_config(odim=30, **TINY_AV)).eval()
    search = build_beam_search(model, beam_size=3)
    assert search.timings is None
    search.timings = {}
    with torch.no_grad():
        search.batch_forward(torch.randn(2, 6, 16), torch.tensor([6, 4]))
    assert set(search.timings) == {"decoder", "ctc", "search"}
    assert all(seconds > 0 for seconds in search.timings.values())


class DenseCTC:
    """The CTC scorer of ``search`` seen without ``batch_score_candidates``: the beam search
    then adds its ``(B, W, V)`` table (the reference path)."""

    def __init__(self, scorer):
        self.scorer = scorer

    def __getattr__(self, name):
        if name == "batch_score_candidates":
            raise AttributeError(name)
        return getattr(self.scorer, name)


def test_candidate_ctc_scores_equal_the_full_table():
    """Adding the CTC scorer's candidates only gives the same hypotheses and the very same
    scores (to the bit) as adding its full-vocabulary table, with ends and length limits."""
    torch.manual_seed(0)
    model = E2E(model_config(odim=30, **TINY_AV)).eval()
    fast = build_beam_search(model, beam_size=4)
    dense = DenseCTC(fast.part_scorers["ctc"])
    memory, lengths = torch.randn(3, 9, 16), torch.tensor([9, 4, 6])
    with torch.no_grad(), EosBias(model, 4.0):
        for ratio in (0.0, 0.5):
            got = fast.batch_forward(memory, lengths, maxlenratio=ratio)
            fast.part_scorers["ctc"], kept = dense, fast.part_scorers["ctc"]
            try:
                want = fast.batch_forward(memory, lengths, maxlenratio=ratio)
            finally:
                fast.part_scorers["ctc"] = kept
            for a, b in zip(got, want):
                assert [h.yseq.tolist() for h in a] == [h.yseq.tolist() for h in b]
                assert [h.score for h in a] == [h.score for h in b]  # one process, the same arithmetic
