"""Checkpoint policy: best.ckpt by the validation metric, final.ckpt, --save-every,
--keep-last, --average-last, early stopping, the checkpoints.json index, and a decoding
validation (--val-wer-every) whose WER is eval.py's."""

import json
import os

import pytest
import torch
from pytorch_lightning import Callback

from espnet.asr import eval_cli
from espnet.training import train_cli
from bad_corpus import BadCorpus, train_args
from conftest import read_metrics
from espnet.asr.evaluate import load_model
from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.training.checkpoint_policy import CheckpointPolicy, read_index
from espnet.training.checkpoints import load_checkpoint
from toy_lightning import LinearToy, fit_toy


class WeightsPerEpoch(Callback):
    def __init__(self):
        self.weights = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.weights.append(pl_module.model.weight.detach().clone())


def test_best_final_save_every_keep_last_and_early_stop(tmp_path):
    run_dir = str(tmp_path / "run")
    module = LinearToy(batch_size=4, max_epochs=6, val_losses=[3.0, 2.0, 2.5, 2.6, 1.0, 0.5])
    policy = CheckpointPolicy(run_dir, save_every=2, keep_last=1, monitor="loss_val", patience=2)
    seen = WeightsPerEpoch()
    trainer = fit_toy(module, run_dir, callbacks=[seen, policy])
    # epoch 1 is the best (2.0); epochs 2 and 3 do not improve -> stop after epoch 3 (of 6)
    assert len(seen.weights) == 4 and policy.stopped_early and trainer.current_epoch == 4
    assert sorted(os.listdir(run_dir)) == ["best.ckpt", "checkpoints.json", "epoch=3.ckpt", "final.ckpt", "last.ckpt"]
    best = torch.load(os.path.join(run_dir, "best.ckpt"), weights_only=True)
    assert best["epoch"] == 1 and torch.equal(best["state_dict"]["model.weight"], seen.weights[1])
    for name in ("final.ckpt", "last.ckpt", "epoch=3.ckpt"):
        assert torch.equal(torch.load(os.path.join(run_dir, name), weights_only=True)["state_dict"]["model.weight"],
                           seen.weights[3])
    index = read_index(run_dir)
    assert index["best"] == {"file": "best.ckpt", "epoch": 1, "monitor": "loss_val", "score": 2.0}
    assert index["final"] == {"file": "final.ckpt", "epoch": 3, "stopped_early": True}
    assert index["last"] == "last.ckpt" and index["epochs"] == [{"file": "epoch=3.ckpt", "epoch": 3}]
    assert index["policy"]["early_stop_patience"] == 2 and index["policy"]["save_every"] == 2
    # the best-so-far travels with the checkpoints: resuming here keeps it, elsewhere it is found again
    restored = CheckpointPolicy(run_dir, monitor="loss_val")
    restored.load_state_dict(torch.load(os.path.join(run_dir, "last.ckpt"), weights_only=True)["callbacks"]["CheckpointPolicy"])
    assert (restored.best_score, restored.best_epoch, restored.bad_checks) == (2.0, 1, 2)
    elsewhere = CheckpointPolicy(str(tmp_path / "other"), monitor="loss_val")
    elsewhere.load_state_dict({"best_score": 2.0, "best_epoch": 1, "bad_checks": 2})
    assert elsewhere.best_score is None and elsewhere.bad_checks == 0


def test_policy_flag_errors(capsys):
    base = ["--root-dir", "r", "--train-file", "t.csv"]
    for extra, message in [(["--keep-last", "3"], "--average-last 10 averages the last 10 epoch checkpoints but "
                                                   "--keep-last 3 keeps only 3"),
                           (["--early-stop-patience", "2"], "--early-stop-patience needs --val-file"),
                           (["--val-wer-every", "1"], "--val-wer-every needs --val-file"),
                           (["--save-every", "0"], "--save-every must be >= 1, got 0"),
                           (["--accumulate-grad-batches", "0"], "--accumulate-grad-batches must be >= 1, got 0")]:
        with pytest.raises(SystemExit):
            train_cli.parse_args(base + extra)
        assert message in capsys.readouterr().err
    args = train_cli.parse_args(base + ["--average-last", "3"])
    assert args.keep_last == 3 and train_cli.parse_args(base + ["--keep-last", "-1"]).keep_last == -1


def metric_by_epoch(run_dir, name):
    return {int(r["epoch"]): float(r[name]) for r in read_metrics(run_dir) if r.get(name)}


def test_train_cli_policy_with_decoding_validation(toy_corpus, tmp_path, capsys):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    exp = str(tmp_path / "exp")
    run_dir = os.path.join(exp, "run")
    # validating on the training list, a tiny model soon transcribes some words, then its
    # greedy transcripts degrade (repeated tokens) while the loss keeps falling
    args = train_args(corpus, exp, "train.csv", "--val-file", "train.csv", "--lr", "5e-3", "--max-frames", "600",
                      "--save-every", "2", "--keep-last", "1", "--average-last", "1", "--val-wer-every", "1",
                      "--test-file", "test.csv", "--beam-size", "1", epochs=8)
    assert train_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "test results (model_avg_1.pth)" in out
    assert {"epoch=7.ckpt", "last.ckpt", "best.ckpt", "final.ckpt", "model_avg_1.pth", "checkpoints.json",
            "tokenizer"} <= set(os.listdir(run_dir))
    assert not [f for f in os.listdir(run_dir) if f.startswith("epoch=") and f != "epoch=7.ckpt"]
    wer = metric_by_epoch(run_dir, "wer_val")
    loss = metric_by_epoch(run_dir, "loss_val")
    assert sorted(wer) == sorted(loss) == list(range(8))
    index = read_index(run_dir)
    best_epoch = min(wer, key=lambda e: (wer[e], e))
    assert wer[best_epoch] < 1.0  # some words right: the WER below is not that of empty transcripts
    assert index["best"]["monitor"] == "wer_val" and index["best"]["epoch"] == best_epoch
    assert index["best"]["score"] == pytest.approx(wer[best_epoch])
    assert index["averaged"] == {"file": "model_avg_1.pth", "from": ["epoch=7.ckpt"]}
    assert index["final"]["epoch"] == 7 and index["tokenizer"]["sp_model_path"].startswith("tokenizer/")
    for name in ("epoch=7.ckpt", "last.ckpt", "best.ckpt", "final.ckpt", "model_avg_1.pth"):
        state, config, _ = load_checkpoint(os.path.join(run_dir, name))
        load_model(ModelConfig.from_dict(config), state, name)  # loads strictly
    # the validation WER is what eval.py measures for best.ckpt on that list (beam 1)
    result = str(tmp_path / "val.json")
    assert eval_cli.main(["--root-dir", corpus.root, "--test-file", "train.csv", "--pretrained-model-path",
                          os.path.join(run_dir, "best.ckpt"), "--beam-size", "1", "--num-workers", "0",
                          "--output-json", result]) == 0
    with open(result) as handle:
        assert json.load(handle)["wer"] == pytest.approx(wer[best_epoch], abs=1e-6)
