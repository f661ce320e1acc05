"""--accumulate-grad-batches: the same update as a K-times larger batch, a schedule that
counts optimiser steps, stopping on a signal only between optimiser steps; and the
throughput/memory values of the progress bar."""

import os

import pytest
import torch

from espnet.training import train_cli
from bad_corpus import BadCorpus, train_args
from conftest import read_metrics
from toy_lightning import LinearToy, fit_toy


def toy_run(tmp_path, name, batch_size, accumulate):
    module = LinearToy(batch_size=batch_size, max_epochs=3)
    trainer = fit_toy(module, str(tmp_path / name), "--accumulate-grad-batches", str(accumulate))
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    return module.model.weight.detach().clone(), trainer.global_step, scheduler.last_epoch, scheduler.get_last_lr()


def test_accumulated_batches_update_like_one_larger_batch(tmp_path):
    big = toy_run(tmp_path, "big", batch_size=8, accumulate=1)
    accumulated = toy_run(tmp_path, "acc", batch_size=2, accumulate=4)
    small = toy_run(tmp_path, "small", batch_size=2, accumulate=1)
    # 3 epochs of 8 examples: one optimiser step per epoch, and the schedule took 3 steps
    assert big[1:3] == accumulated[1:3] == (3, 3)
    assert accumulated[3] == pytest.approx(big[3])
    assert torch.allclose(accumulated[0], big[0], atol=1e-6)
    assert small[1] == 12 and (small[0] - big[0]).abs().max() > 1e-3  # without accumulation: another trajectory


def test_last_incomplete_accumulation_still_steps_and_is_scheduled(tmp_path):
    # 4 batches per epoch, K = 3: steps after batches 3 and 4 -> 2 per epoch, ceil(4 / 3)
    weight, steps, scheduled, _ = toy_run(tmp_path, "odd", batch_size=2, accumulate=3)
    assert steps == scheduled == 6


def test_train_cli_accumulates_and_shows_throughput(toy_corpus, tmp_path, capsys):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    exp = str(tmp_path / "exp")
    args = train_args(corpus, exp, "train.csv", "--max-frames", "150", "--accumulate-grad-batches", "4",
                      "--log-every-n-steps", "1", "--save-every", "2", "--average-last", "1")
    assert train_cli.main(args) == 0
    shown = capsys.readouterr()
    # (1 epoch, --save-every 2: no epoch checkpoint to average, which is said)
    assert "note: no epoch=E.ckpt to average (--save-every 2, stopped after epoch 0); using final.ckpt" in shown.out
    shown = shown.out + shown.err  # the progress bar (rich on stdout, or tqdm on stderr) shows both
    assert "frames_per_s" in shown and "rss_gb" in shown
    ckpt = torch.load(os.path.join(exp, "run", "final.ckpt"), weights_only=True)
    batches = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"]
    assert batches >= 5 and ckpt["global_step"] == -(-batches // 4)
    assert ckpt["lr_schedulers"][0]["last_epoch"] == ckpt["global_step"]
    rows = read_metrics(os.path.join(exp, "run"))
    fps = [float(r["frames_per_s"]) for r in rows if r.get("frames_per_s")]
    rss = [float(r["rss_gb"]) for r in rows if r.get("rss_gb")]
    assert len(fps) == len(rss) == ckpt["global_step"] and min(fps) > 0 and 0.05 < min(rss) < 64
