"""The repetition guard (compression ratio, length limit, average log-probability), the
temperature fallback, and where they show: eval.py's warning and JSON, option checks."""

import json
import math
import types

import pytest
import torch

from espnet.asr.fallback import FallbackOptions, decode_guarded, parse_temperatures, sample_memory
from espnet.asr.repetition import GuardOptions, check_hypothesis, compression_ratio, repetition_warning
from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions
from espnet.nets.scorer_interface import BatchScorerInterface

NORMAL = "and mister john dashwood had then leisure to consider how much there might be prudently in his power"
REPEATING = "he was not an ill disposed young man " * 8


def test_compression_ratio_tells_repeating_from_normal_text():
    assert compression_ratio("") == 0.0
    assert compression_ratio(NORMAL) < 1.6
    assert compression_ratio(REPEATING) > 2.4
    assert not check_hypothesis(NORMAL, False).repeating
    found = check_hypothesis(REPEATING, False)
    assert found.repeating and found.failed and not found.hit_length_limit


def test_length_limit_and_log_probability():
    at_limit = check_hypothesis("fine words", True)
    assert at_limit.repeating and at_limit.failed
    unsure = check_hypothesis("fine words", False, avg_logprob=-1.5)
    assert not unsure.repeating and unsure.failed  # fails the fallback's guard, but does not repeat
    assert not check_hypothesis("fine words", False, avg_logprob=-0.5).failed
    assert not check_hypothesis("fine words", False, avg_logprob=-1.5, options=GuardOptions(logprob_threshold=None)).failed
    lenient = GuardOptions(compression_ratio_threshold=10.0)
    assert not check_hypothesis(REPEATING, False, options=lenient).repeating


def test_warning_counts_the_repeating_hypotheses():
    checks = [check_hypothesis(REPEATING, False), check_hypothesis(NORMAL, False), check_hypothesis("x", True)]
    assert repetition_warning(checks, "hypotheses", GuardOptions(), "--max-new-tokens 64") == (
        "warning: 2 of 3 hypotheses repeat (compression ratio above 2.4, or stopped at --max-new-tokens 64: 1); "
        "they are marked \"repeating\" in the JSON output")
    assert repetition_warning(checks[1:2], "hypotheses", GuardOptions()) is None


@pytest.mark.parametrize("make, message", [
    (lambda: GuardOptions(compression_ratio_threshold=0.0), "--compression-ratio-threshold must be a finite number > 0"),
    (lambda: GuardOptions(compression_ratio_threshold=math.inf), "--compression-ratio-threshold must be"),
    (lambda: GuardOptions(logprob_threshold=0.5), "--logprob-threshold must be a finite number <= 0"),
    (lambda: FallbackOptions((0.0, 0.2)), "each temperature must be in (0, 2]"),
    (lambda: FallbackOptions((0.4, 0.2)), "--fallback-temperatures must rise, got 0.4,0.2"),
    (lambda: FallbackOptions(()), "give at least one temperature"),
    (lambda: FallbackOptions(best_of=0), "--fallback-best-of must be >= 1, got 0"),
    (lambda: parse_temperatures("0.2,hot"), "expected comma-separated numbers or none, got '0.2,hot'"),
])
def test_bad_options_are_refused(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


def test_parse_temperatures():
    assert parse_temperatures("none") is None
    assert parse_temperatures("0.2,0.6,1") == (0.2, 0.6, 1.0)


@pytest.mark.parametrize("argv, message", [
    (["--fallback-temperatures", "0.5,0.2"], "--fallback-temperatures must rise, got 0.5,0.2"),
    (["--compression-ratio-threshold", "nan"], "--compression-ratio-threshold must be a finite number > 0, got nan"),
    (["--logprob-threshold", "1"], "--logprob-threshold must be a finite number <= 0 (a log-probability), got 1.0"),
    (["--fallback-best-of", "0"], "--fallback-best-of must be >= 1, got 0"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    from espnet.asr import eval_cli, transcribe_cli

    for parse, base in ((eval_cli.parse_args, ["--root-dir", "r", "--test-file", "t"]),
                        (transcribe_cli.parse_args, ["in.wav"])):
        with pytest.raises(SystemExit) as exit_:
            parse(base + argv)
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1].endswith(message)
    with pytest.raises(SystemExit):
        transcribe_cli.parse_args(["in.wav", "--previous-text", "on", "--decoder", "transformer"])
    assert "only a Whisper decoder conditions on previous text" in capsys.readouterr().err


class Looping(torch.nn.Module, BatchScorerInterface):
    """A decoder whose every step gives "la" 0.65 and the end token 0.35: greedy it never
    stops; sampled hot enough it ends after a few words."""

    decodes_itself = False
    sos, eos, search_vocab_size = 0, 1, 3

    def max_length_ratio(self, options):
        return -float(options.max_new_tokens)

    def batch_init_state(self, memory, lengths):
        return None

    def batch_score(self, ys, state):
        logp = torch.tensor([1e-6, 0.35, 0.65]).log().log_softmax(-1)
        return logp.expand(ys.size(0), ys.size(1), 3).clone(), None

    def select_state(self, state, utts, prev_ids, token_ids):
        return None

    def ids_to_text(self, ids, sentencepiece=None):
        assert all(i == 2 for i in ids)
        return " ".join("la" for _ in ids)

    def condition_on(self, previous_texts):
        raise AssertionError("not conditioned")


def test_fallback_keeps_the_first_sample_that_passes():
    model = types.SimpleNamespace(decoder=Looping(), ctc_weight=0.0)
    memory, lengths = torch.zeros(2, 4, 3), torch.tensor([4, 3])
    options = DecodeOptions(beam_size=1, ctc_weight=0.0, max_new_tokens=6)
    greedy = decode_guarded(model, memory, lengths, options)
    assert [h.text for h in greedy] == ["la la la la la la"] * 2
    assert all(h.check.hit_length_limit and h.check.repeating and h.temperature == 0.0 for h in greedy)
    torch.testing.assert_close(greedy[0].check.avg_logprob, 6 * math.log(0.65) / 7, rtol=1e-4, atol=1e-5)

    fallback = FallbackOptions((0.2, 0.6, 1.0), best_of=3, seed=1)
    kept = decode_guarded(model, memory, lengths, options, fallback=fallback)
    for hyp in kept:
        assert hyp.temperature in (0.2, 0.6, 1.0) and not hyp.check.failed
        words = len(hyp.decoded.token_ids)
        assert 1 <= words < 6 and not hyp.decoded.hit_length_limit and hyp.text == " ".join(["la"] * words)
        torch.testing.assert_close(hyp.decoded.score, words * math.log(0.65) + math.log(0.35), rtol=1e-4, atol=1e-5)
    # seeded per utterance: the same again, and each as it gets alone
    assert [h.decoded.token_ids for h in decode_guarded(model, memory, lengths, options, fallback=fallback)] == \
        [h.decoded.token_ids for h in kept]
    alone = decode_guarded(model, memory[1:], lengths[1:], options, fallback=fallback)[0]
    assert alone.decoded.token_ids == kept[1].decoded.token_ids and alone.temperature == kept[1].temperature

    # a guard nothing passes: the last temperature's most probable sample, still marked
    strict = GuardOptions(logprob_threshold=-0.01)
    last = decode_guarded(model, memory[:1], lengths[:1], options, guard=strict, fallback=fallback)[0]
    assert last.temperature == 1.0 and last.check.failed


def test_fallback_needs_an_autoregressive_search():
    """CTC greedy and a decoder with its own one-pass search (Paraformer) cannot be sampled: the
    fallback is refused with one line naming the flag; the guard still checks, without the
    log-probability (their scores are not the decoder's)."""
    model = types.SimpleNamespace(decoder=Looping(), ctc_weight=0.0)
    memory, lengths = torch.zeros(1, 4, 3), torch.tensor([4])
    fallback = FallbackOptions((0.2,), best_of=2)
    with pytest.raises(ValueError, match="^--fallback-temperatures: .* --decode-mode ctc-greedy does not use"):
        decode_guarded(model, memory, lengths, DecodeOptions(mode="ctc-greedy"), fallback=fallback)
    own = types.SimpleNamespace(decodes_itself=True)
    with pytest.raises(ValueError, match="^--fallback-temperatures: .* \\(its own search\\) does not use"):
        decode_guarded(types.SimpleNamespace(decoder=own, ctc_weight=0.0), memory, lengths, DecodeOptions(),
                       fallback=fallback)


def test_samples_are_ranked_by_average_log_probability():
    model = types.SimpleNamespace(decoder=Looping(), ctc_weight=0.0)
    options = DecodeOptions(beam_size=1, ctc_weight=0.0, max_new_tokens=5)
    samples = sample_memory(model, torch.zeros(1, 2, 3), torch.tensor([2]), options, 1.0, 6,
                            torch.Generator().manual_seed(0))[0]
    assert len(samples) == 6
    ranked = [d.score / (len(d.token_ids) + 1) for d in samples]
    assert ranked == sorted(ranked, reverse=True)
    assert all(d.hit_length_limit == (len(d.token_ids) == 5) for d in samples)


def test_eval_counts_and_warns_about_repeating_hypotheses(toy_corpus, tmp_path, capsys):
    """A tiny random Whisper decoder never ends: every hypothesis runs to --max-new-tokens."""
    pytest.importorskip("transformers")
    from espnet.asr import eval_cli
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.training.checkpoints import write_sidecar
    from test_decoders_stop import _config
    from tiny_hf import save_tiny_whisper

    config = _config("whisper-decoder", save_tiny_whisper(str(tmp_path / "whisper")))
    torch.manual_seed(0)
    model = E2E(config)
    checkpoint = str(tmp_path / "model_avg_1.pth")
    torch.save(model.state_dict(), checkpoint)
    write_sidecar(checkpoint, {"model_config": config.to_dict(), "sp_model_path": None, "dict_path": None})
    with open(toy_corpus["test"], encoding="utf8") as src:
        lines = src.readlines()[:3]
    test_list = tmp_path / "three.csv"
    test_list.write_text("".join(lines), encoding="utf8")
    out = str(tmp_path / "decoded.json")
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", str(test_list), "--pretrained-model-path",
                          checkpoint, "--beam-size", "1", "--ctc-weight", "0", "--max-new-tokens", "4", "--num-workers", "0",
                          "--accelerator", "cpu", "--output-json", out])
    assert code == 0
    with open(out, encoding="utf8") as handle:
        result = json.load(handle)
    rows = result["utterances"]
    decoded = [model.decoder.text_ids(r["hypothesis"]) for r in rows]
    assert [r["hit_length_limit"] for r in rows] == [True] * 3, decoded
    assert [r["repeating"] for r in rows] == [True] * 3
    assert result["repeating_hypotheses"] == 3 and result["resampled_hypotheses"] == 0
    assert all("temperature" not in r for r in rows)  # no fallback asked for
    err = capsys.readouterr().err
    assert ("warning: 3 of 3 hypotheses repeat (compression ratio above 2.4, or stopped at --max-new-tokens 4: 3); "
            "they are marked \"repeating\" in the JSON output") in err.splitlines()
