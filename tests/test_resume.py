"""Exact resume: a run stopped by SIGTERM / SIGINT and resumed with --ckpt-path ends with the
weights of the uninterrupted run, whatever the number of DataLoader workers."""

import os
import signal

import pytest
import torch

from espnet.training import train_cli
from bad_corpus import BadCorpus, train_args
from espnet.training.model_module import ModelModule

AV_MODEL = ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--resnet-width", "8"]


def final_weights(run_dir):
    return torch.load(os.path.join(run_dir, "epoch=1.ckpt"), weights_only=True)["state_dict"]


def max_abs_diff(a, b):
    assert set(a) == set(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def send_at(monkeypatch, signum, epoch, batch):
    """Deliver ``signum`` to this process at the end of training batch ``batch`` of ``epoch``."""
    def hook(self, outputs, batch_, batch_idx):
        if self.current_epoch == epoch and batch_idx == batch:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(ModelModule, "on_train_batch_end", hook, raising=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Bit-exact comparisons need one CPU thread: with two, a resumed run ended 1.3e-5 away
    from the uninterrupted one (multi-threaded CPU kernels in a fresh process), although two
    uninterrupted runs matched exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(toy_corpus, tmp_path_factory, one_thread):
    tmp = tmp_path_factory.mktemp("resume")
    corpus = BadCorpus(toy_corpus, str(tmp / "root"))

    def args(name, workers, *extra):
        return train_args(corpus, str(tmp / name), "train.csv", "--val-file", "val.csv", "--max-frames", "150",
                          "--num-threads", "1", *extra, model=AV_MODEL, epochs=2, workers=workers)

    assert train_cli.main(args("full", 0)) == 0
    return tmp, args


def test_sigterm_mid_epoch_then_resume_gives_the_same_weights(setup, monkeypatch, capsys):
    tmp, args = setup
    send_at(monkeypatch, signal.SIGTERM, epoch=1, batch=0)
    assert train_cli.main(args("term", 1)) == 143
    last = str(tmp / "term" / "run" / "last.ckpt")
    assert f"stopped: SIGTERM received; resumable checkpoint written: {last}" in capsys.readouterr().err
    assert not [f for f in os.listdir(tmp / "term" / "run") if f.startswith("model_avg")]
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 1 and {"torch", "numpy", "python"} <= set(state["rng_states"])
    assert state["DataModule"]["train_sampler"] == {"epoch": 1, "start": 2}  # signal seen after batch 0, stop after 1
    monkeypatch.undo()
    assert train_cli.main(args("term", 1, "--ckpt-path", last)) == 0
    assert max_abs_diff(final_weights(tmp / "full" / "run"), final_weights(tmp / "term" / "run")) <= 1e-6


def test_sigint_then_resume_and_resume_from_an_epoch_checkpoint(setup, monkeypatch, capsys):
    tmp, args = setup
    send_at(monkeypatch, signal.SIGINT, epoch=0, batch=1)
    assert train_cli.main(args("int", 0)) == 130
    assert "stopped: SIGINT received" in capsys.readouterr().err
    monkeypatch.undo()
    assert train_cli.main(args("int", 2, "--ckpt-path", str(tmp / "int" / "run" / "last.ckpt"))) == 0
    full = final_weights(tmp / "full" / "run")
    assert max_abs_diff(full, final_weights(tmp / "int" / "run")) <= 1e-6
    # an end-of-epoch checkpoint of the uninterrupted run, continued elsewhere
    assert train_cli.main(args("from_epoch0", 0, "--ckpt-path", str(tmp / "full" / "run" / "epoch=0.ckpt"))) == 0
    assert max_abs_diff(full, final_weights(tmp / "from_epoch0" / "run")) <= 1e-6


def test_sigterm_inside_an_accumulation_stops_after_its_optimiser_step(setup, monkeypatch, capsys):
    tmp, args = setup
    accumulate = ("--accumulate-grad-batches", "2")
    assert train_cli.main(args("acc_full", 0, *accumulate)) == 0
    send_at(monkeypatch, signal.SIGTERM, epoch=1, batch=1)  # seen after batch 1; batches 2+3 form one step
    assert train_cli.main(args("acc_term", 0, *accumulate)) == 143
    last = str(tmp / "acc_term" / "run" / "last.ckpt")
    assert torch.load(last, weights_only=True)["DataModule"]["train_sampler"] == {"epoch": 1, "start": 4}
    monkeypatch.undo()
    assert train_cli.main(args("acc_term", 0, *accumulate, "--ckpt-path", "last")) == 0
    assert max_abs_diff(final_weights(tmp / "acc_full" / "run"), final_weights(tmp / "acc_term" / "run")) <= 1e-6
