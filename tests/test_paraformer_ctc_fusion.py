"""``--nar-ctc-fusion``: a Paraformer's tokens chosen with its CTC head's posteriors at the
frames of the best path's tokens. The per-token posteriors against a plain loop, the fused
hypotheses (with candidates and alternatives) against a loop over utterances and counts, a
large weight giving the CTC path itself, ``eval.py`` and the model API, and the refusals."""

import math

import pytest
import torch

from espnet.asr import eval_cli
from espnet.asr.recognizer import DecodeOptions, encode_utterances, recognize, recognize_batch
from espnet.nets.pytorch_backend.ctc import best_paths, path_token_posteriors, sequence_log_likelihood
from espnet.nets.pytorch_backend.decoder.base_decoder import nar_candidates_refusal
from espnet.nets.pytorch_backend.decoder.paraformer_candidates import candidate_offsets
from test_paraformer import candidate_log_probs
from test_paraformer_ar_scorer import one_token_alternative, paraformer_with_ar


def test_path_token_posteriors_equal_a_loop():
    """Per token of the best path (runs of one non-blank class, a blank or another class
    between two tokens), the largest log-posterior of every class over its frames; padded
    frames are not read, a path of no token gives no row, and what follows a path is -inf."""
    gen = torch.Generator().manual_seed(0)
    classes = [[1, 1, 0, 2, 2, 2, 0, 2, 3, 3, 1, 4],  # 2 0 2: two tokens; 3 3 1: a change without a blank
               [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # blank everywhere: no token
               [4, 4, 4, 0, 0, 1, 1, 1, 3, 3, 3, 3]]  # frames from 6 on are padding
    lengths = torch.tensor([12, 12, 6])
    logp = torch.log_softmax(torch.randn(3, 12, 5, generator=gen) +
                             8.0 * torch.nn.functional.one_hot(torch.tensor(classes), 5), dim=-1)
    out = path_token_posteriors(logp, lengths)
    best = best_paths(logp, lengths)
    paths = [path for path, _ in best]
    assert paths == [[1, 2, 2, 3, 1, 4], [], [4, 1]]
    for (_, score), row, n in zip(best, logp, lengths.tolist()):  # the chosen classes' log-probabilities
        assert score == pytest.approx(float(row[:n].max(dim=-1).values.sum()), abs=1e-4)
    assert out.shape == (3, 6, 5)
    for i, row in enumerate(classes):
        tokens, prev = [], 0
        for t in range(int(lengths[i])):
            c = row[t]
            if c != 0 and c != prev:
                tokens.append([t])
            elif c != 0:
                tokens[-1].append(t)
            prev = c
        assert len(tokens) == len(paths[i])
        for k, frames in enumerate(tokens):
            expected = torch.stack([logp[i, t] for t in frames]).max(dim=0).values
            assert torch.allclose(out[i, k], expected)
        assert bool(torch.isneginf(out[i, len(tokens):]).all())


def fused_loop(model, item, weight, fusion, candidates, alternatives, penalty):
    """What --nar-count ctc --nar-ctc-fusion ``fusion`` decodes for one utterance, alone: for
    each count around the CTC path's length (each decoded alone), the tokens by the
    Paraformer's log-probabilities plus ``fusion`` x the path's per-token posteriors where the
    count is the path's length; then the alternatives (second-best token at the positions of
    smallest margin of the Paraformer's log-probabilities of the two chosen tokens); the best
    joint score wins, the earlier on a tie (none the CTC head can emit: the first)."""
    decoder = model.decoder
    memory, lengths = encode_utterances(model, [item])
    alpha = decoder.predictor(memory, lengths)
    with torch.no_grad():
        ctc_logp = model.ctc.log_softmax(memory)
    path = best_paths(ctc_logp, lengths)[0][0]
    assert path  # the test's CTC head emits tokens
    spikes = path_token_posteriors(ctc_logp, lengths)[0]
    hyps = []
    rows = []
    for d in candidate_offsets(candidates):
        n = len(path) + d
        if d != 0 and not 1 <= n <= memory.size(1):
            continue
        logp = candidate_log_probs(decoder, memory, alpha, n, False)
        choice = logp + fusion * spikes[:n] if n == len(path) else logp
        ids = choice.topk(2, dim=-1).indices
        rows.append((logp, ids))
        hyps.append((ids[:, 0].tolist(), logp))
    for a in range(alternatives):
        for logp, ids in rows:
            changed = one_token_alternative(logp, ids, a)
            if changed is not None:
                hyps.append((changed, logp))
    if len(hyps) == 1:
        ids, logp = hyps[0]
        return ids, float(sum(logp[p, t] for p, t in enumerate(ids)))
    best = None
    for ids, logp in hyps:
        own = float(sum(logp[p, t] for p, t in enumerate(ids)))
        labels = [t for t in ids if t not in (0, decoder.eos)]
        with torch.no_grad():
            ctc = float(sequence_log_likelihood(ctc_logp, lengths, [labels])[0])
        joint = (1 - weight) * own + weight * ctc + penalty * len(ids)
        if best is None or joint > best[1] + 1e-4:
            best = (ids, joint)
    if best[1] == -math.inf:  # no hypothesis the CTC head can emit: the first, its decoder score
        ids, logp = hyps[0]
        best = (ids, float(sum(logp[p, t] for p, t in enumerate(ids))))
    return best


class FramePattern(torch.nn.Module):
    """A CTC head's projection plus a fixed random pattern per frame index: a random tiny
    encoder's frames are all alike, so its CTC head's best path is one token at most; with the
    pattern the path has many (the same frame index gets the same pattern alone or in a batch)."""

    def __init__(self, linear: torch.nn.Linear, frames: int = 64) -> None:
        super().__init__()
        self.linear = linear
        self.out_features = linear.out_features
        gen = torch.Generator().manual_seed(3)
        pattern = 1.5 * torch.randn(frames, linear.out_features, generator=gen)
        pattern[:, 0] -= 1.0  # blank less often
        self.register_buffer("pattern", pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.pattern[: x.size(1)]


def model_with_a_talking_ctc_head():
    model = paraformer_with_ar()
    model.ctc.ctc_lo = FramePattern(model.ctc.ctc_lo)
    return model


@pytest.mark.parametrize("fusion,candidates,alternatives,penalty", [(0.7, 1, 0, 0.5), (0.7, 3, 2, 0.5),
                                                                    (4.0, 1, 3, 0.5), (4.0, 3, 0, 5.0)])
def test_fused_hypotheses_equal_a_loop(fusion, candidates, alternatives, penalty):
    """--nar-count ctc --nar-ctc-fusion W (with candidates and alternatives): each utterance
    gets what the loop gives it alone, in a batch as alone, and the fusion changes tokens;
    with a large length bonus, candidates longer than the CTC path (not fused) win too."""
    model = model_with_a_talking_ctc_head()
    gen = torch.Generator().manual_seed(1)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 31, 9, 24)]
    weight = 0.3
    common = dict(ctc_weight=weight, nar_count="ctc", candidates=candidates, nar_alternatives=alternatives,
                  penalty=penalty)
    batched = recognize_batch(model, items, DecodeOptions(nar_ctc_fusion=fusion, **common))
    for item, hyp in zip(items, batched):
        ids, score = fused_loop(model, item, weight, fusion, candidates, alternatives, penalty)
        assert hyp.token_ids == ids
        assert hyp.score == pytest.approx(score, rel=1e-4, abs=1e-4)
        alone = recognize(model, item, DecodeOptions(nar_ctc_fusion=fusion, **common))
        assert alone.token_ids == hyp.token_ids and alone.score == pytest.approx(hyp.score, rel=1e-4, abs=1e-4)
    plain = recognize_batch(model, items, DecodeOptions(**common))
    assert any(a.token_ids != b.token_ids for a, b in zip(batched, plain))


def test_a_large_fusion_weight_gives_the_ctc_path_with_the_paraformers_score():
    """With a fusion weight far above the log-probabilities' spread, the single pass at the
    CTC count decodes the CTC head's best path (its tokens win at their own frames), scored by
    the Paraformer's log-probabilities of those tokens; weight 0 is the plain pass at that
    count."""
    model = model_with_a_talking_ctc_head()
    decoder = model.decoder
    gen = torch.Generator().manual_seed(2)
    items = [{"audio": torch.randn(n * 640, 1, generator=gen)} for n in (31, 17, 9)]
    fused = recognize_batch(model, items, DecodeOptions(nar_count="ctc", nar_ctc_fusion=1e4))
    unfused = recognize_batch(model, items, DecodeOptions(nar_count="ctc"))
    for item, hyp, plain in zip(items, fused, unfused):
        memory, lengths = encode_utterances(model, [item])
        with torch.no_grad():
            path = best_paths(model.ctc.log_softmax(memory), lengths)[0][0]
        ids = [c - decoder.ctc_token_offset for c in path]
        assert hyp.token_ids == ids
        logp = candidate_log_probs(decoder, memory, decoder.predictor(memory, lengths), len(ids), False)
        assert hyp.score == pytest.approx(float(sum(logp[p, t] for p, t in enumerate(ids))), rel=1e-4, abs=1e-4)
        assert plain.token_ids == logp.argmax(dim=-1).tolist()
    assert [h.token_ids for h in fused] != [h.token_ids for h in unfused]


def test_ctc_fusion_refusals():
    """A weight below 0 or not finite, the fusion without the CTC head's count, and the fusion
    for anything but a Paraformer's own decoding are refused in one line."""
    with pytest.raises(ValueError, match="--nar-ctc-fusion must be a finite number >= 0, got -1"):
        DecodeOptions(nar_count="ctc", nar_ctc_fusion=-1.0)
    with pytest.raises(ValueError, match="--nar-ctc-fusion must be a finite number >= 0, got nan"):
        DecodeOptions(nar_count="ctc", nar_ctc_fusion=math.nan)
    message = ("--nar-ctc-fusion 0.5 fuses the CTC head's posteriors at its best path's tokens into hypotheses of "
               "as many tokens: it needs --nar-count ctc or both")
    with pytest.raises(ValueError, match=message):
        DecodeOptions(nar_ctc_fusion=0.5)
    assert nar_candidates_refusal(1, nar_ctc_fusion=0.5) == message
    assert nar_candidates_refusal(1, "transformer", model="m.pth", nar_count="ctc", nar_ctc_fusion=2.0) == (
        "--nar-count ctc --nar-ctc-fusion 2: only a Paraformer's own decoding (--decoder paraformer, --decode-mode "
        "decoder) has candidates; m.pth has --decoder transformer")
    assert nar_candidates_refusal(1, "paraformer", nar_count="both", nar_ctc_fusion=2.0) is None
    assert DecodeOptions(nar_count="ctc", nar_ctc_fusion=1.0).ctc_path_request() == (
        "--nar-count ctc counts the tokens of the CTC head's best path")


def test_eval_and_the_model_api_with_the_fusion(toy_corpus, tmp_path, capsys):
    """A (random) Paraformer saved as train.py saves it: eval.py --nar-count both
    --nar-candidates 3 --nar-ctc-fusion 2 writes what each utterance decoded alone gets, the
    model API the same; --nar-ctc-fusion with the CIF count is refused in one line before
    the model is loaded."""
    import json

    from datamodule.data_module import build_dataset
    from datamodule.text_transform import TextTransform
    from espnet.asr.pretrained import Recognizer
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.training.checkpoints import write_sidecar
    from flag_config import model_config

    tokenizer = TextTransform(toy_corpus["sp_model_path"], toy_corpus["dict_path"])
    config = model_config(odim=tokenizer.odim, audio_encoder="resnet1d", resnet_width=4, decoder="paraformer",
                          adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1, ctc_weight=0.3)
    torch.manual_seed(0)
    model = E2E(config)
    with torch.no_grad():
        model.ctc.ctc_lo.bias[0] -= 2.0  # the random CTC head emits tokens
    path = str(tmp_path / "model_avg_1.pth")
    torch.save(model.state_dict(), path)
    write_sidecar(path, {"model_config": config.to_dict(), "sp_model_path": toy_corpus["sp_model_path"],
                         "dict_path": toy_corpus["dict_path"]})
    test = toy_corpus["train"]
    out = str(tmp_path / "fused.json")
    common = ["--root-dir", toy_corpus["root"], "--test-file", test, "--pretrained-model-path", path,
              "--num-workers", "0", "--accelerator", "cpu", "--ctc-weight", "0.5"]
    assert eval_cli.main([*common, "--batch-size", "3", "--output-json", out, "--nar-count", "both",
                          "--nar-candidates", "3", "--nar-ctc-fusion", "2"]) == 0
    with open(out, encoding="utf8") as handle:
        result = json.load(handle)
    rec = Recognizer.from_pretrained(path)
    dataset = build_dataset(toy_corpus["root"], test, "test", "audio", audio_utterance_norm=rec.model.audio_utterance_norm)
    options = DecodeOptions(ctc_weight=0.5, nar_count="both", candidates=3, nar_ctc_fusion=2.0)
    expected = [rec.tokenizer.post_process(recognize(rec.model, {"audio": dataset[i]["audio"]}, options).token_ids)
                for i in range(len(dataset))]
    assert [u["hypothesis"] for u in result["utterances"]] == expected and any(expected)
    clips = [dataset.media_path(i) for i in range(len(dataset))]
    assert rec.transcribe_batch(clips, ctc_weight=0.5, nar_count="both", candidates=3, nar_ctc_fusion=2.0) == expected
    capsys.readouterr()
    code = eval_cli.main([*common[:5], str(tmp_path / "absent.pth"), *common[6:], "--nar-ctc-fusion", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--nar-ctc-fusion 1 fuses the CTC head's posteriors at its best path's tokens" in err
    assert "absent.pth" not in err  # refused before the model is looked for
