"""Two-process DDP training on CPU (gloo, plain BatchNorm) along the paths users take: with and
without a validation file, a batch count that does not split evenly, gradient accumulation,
resuming a DDP run, the non-finite guard firing on one rank, the torchrun launcher, and a rank
that stops answering (the collective times out; SIGTERM still ends the run). Every run has a
time limit: a hang fails the test and its processes are killed."""

import glob
import math
import os
import re
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import torch

from bad_corpus import AUDIO_MODEL, BadCorpus, train_args
from conftest import REPO

RUN_LIMIT_S = 300  # one DDP run of a tiny model takes well under a minute on 2 cores


@pytest.fixture
def corpus(toy_corpus, tmp_path):
    return BadCorpus(toy_corpus, str(tmp_path / "root"))


def ddp_args(corpus, exp, *extra):
    return train_args(corpus, exp, "train.csv", "--max-frames", "150", "--accelerator", "cpu", "--gpus", "2",
                      *extra, model=AUDIO_MODEL)


def start(args, log_path, torchrun=False, env_extra=None):
    """Start ``train.py args`` (under torchrun with 2 processes) in a session of its own,
    output to ``log_path``."""
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("MASTER_PORT", None)
    env.update(env_extra or {})
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        if torchrun else [sys.executable]
    log = open(log_path, "w")
    proc = subprocess.Popen([*launcher, os.path.join(REPO, "train.py"), *args], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    log.close()
    return proc


def finish(proc, log_path, limit=RUN_LIMIT_S):
    """Exit status and output of ``proc``; a run past ``limit`` seconds is killed (with every
    process of its session) and fails the test."""
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(log_path) as handle:
            pytest.fail(f"the DDP run hung (killed after {limit} s):\n{handle.read()[-4000:]}")
    kill_session(proc)
    with open(log_path) as handle:
        return code, handle.read()


def kill_session(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(args, tmp_path, name="run", torchrun=False):
    log_path = str(tmp_path / f"{name}.log")
    return finish(start(args, log_path, torchrun), log_path)


def digests(log):
    found = dict(re.findall(r"rank (\d)/2: training finished, parameter digest ([0-9a-f]{16})", log))
    assert set(found) == {"0", "1"}, log[-4000:]
    return found


def assert_one_model(log, run_dir, name, earlier=()):
    """Both ranks ended with the same weights; this run wrote the one averaged model ``name``
    (beside the ``earlier`` runs' models)."""
    assert digests(log)["0"] == digests(log)["1"], "the ranks finished with different weights"
    written = sorted(f for f in os.listdir(run_dir) if f.startswith("model_avg") and f.endswith(".pth"))
    assert written == sorted([name, *earlier])
    assert log.count("averaged model: ") == 1 and f"averaged model: {os.path.join(run_dir, name)}" in log


def batches_per_rank(corpus, label, max_frames=150, epoch=0):
    """What the training sampler gives each of 2 ranks for ``label`` (train.py's defaults)."""
    from datamodule.samplers import BucketBatchSampler

    lengths = [int(line.split(",")[2]) for line in corpus.lines[label]]
    counts = []
    for rank in (0, 1):
        sampler = BucketBatchSampler(lengths, max_frames, 400, shuffle=True, seed=42, rank=rank, world_size=2)
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    return counts, BucketBatchSampler(lengths, max_frames, 400, shuffle=True, seed=42)


def global_step(run_dir, name="final.ckpt"):
    return torch.load(os.path.join(run_dir, name), map_location="cpu", weights_only=False)["global_step"]


def test_two_cpu_processes_train_one_epoch(corpus, tmp_path):
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp, "--val-file", "val.csv"), tmp_path)
    assert code == 0, log[-4000:]
    assert "distributed_backend=gloo" in log
    assert_one_model(log, os.path.join(exp, "run"), "model_avg_1.pth")


def test_without_validation_file_and_an_odd_number_of_batches(corpus, tmp_path):
    """No --val-file used to hang: rank 0 synchronised the epoch metrics in the progress bar
    while rank 1 waited in the checkpoint policy's broadcast. The training list here makes an
    odd number of batches: a batch is split so both ranks get the same number, none is lost."""
    counts, single = batches_per_rank(corpus, "train")
    if len(single) % 2 == 0:  # make the count odd: leave out utterances until it is
        for n in range(len(corpus.lines["train"]) - 1, 0, -1):
            corpus.lines["train"] = corpus.lines["train"][:n]
            counts, single = batches_per_rank(corpus, "train")
            if len(single) % 2:
                break
        corpus.write("train.csv", corpus.lines["train"])
    assert len(single) % 2 == 1 and counts[0] == counts[1] == (len(single) + 1) // 2
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp), tmp_path)
    assert code == 0, log[-4000:]
    run_dir = os.path.join(exp, "run")
    assert_one_model(log, run_dir, "model_avg_1.pth")
    assert global_step(run_dir) == counts[0]
    assert "left out" not in log


def test_gradient_accumulation(corpus, tmp_path):
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp, "--val-file", "val.csv", "--accumulate-grad-batches", "2",
                             "--max-epochs", "2"), tmp_path)
    assert code == 0, log[-4000:]
    run_dir = os.path.join(exp, "run")
    assert_one_model(log, run_dir, "model_avg_2.pth")
    steps = sum(math.ceil(batches_per_rank(corpus, "train", epoch=e)[0][0] / 2) for e in (0, 1))
    assert global_step(run_dir) == steps  # optimiser steps: the last, incomplete accumulation steps too


def test_resume_a_ddp_run(corpus, tmp_path):
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp, "--val-file", "val.csv"), tmp_path, "first")
    assert code == 0, log[-4000:]
    run_dir = os.path.join(exp, "run")
    first_steps = global_step(run_dir, "last.ckpt")
    code, log = run(ddp_args(corpus, exp, "--val-file", "val.csv", "--max-epochs", "2", "--ckpt-path", "last"),
                    tmp_path, "resumed")
    assert code == 0, log[-4000:]
    assert "Restoring states from the checkpoint path" in log
    assert_one_model(log, run_dir, "model_avg_2.pth", earlier=["model_avg_1.pth"])
    assert global_step(run_dir) == first_steps + batches_per_rank(corpus, "train", epoch=1)[0][0]
    with open(os.path.join(run_dir, "checkpoints.json"), encoding="utf8") as handle:
        assert '"epoch": 1' in handle.read()


def write_float_wav(path, samples):
    with av.open(path, mode="w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def test_non_finite_loss_on_one_rank_stops_both(corpus, tmp_path):
    """One utterance whose samples are finite but huge (1e38): its per-utterance normalisation
    overflows, so only the rank whose batch holds it sees a NaN loss. Both ranks stop at the
    same step with the same error, which names that rank and utterance; no averaged model."""
    lines = corpus.lines["train"][:8]
    bad = corpus.copy_clip(lines[0], "huge")
    seconds = int(bad.split(",")[2]) / 25
    samples = np.full(int(seconds * 16000), 1e38, dtype=np.float32)
    samples[::2] *= -1
    write_float_wav(corpus.media("huge", ".wav"), samples)
    corpus.write("train.csv", [bad, *lines[1:]])
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp, "--max-frames", "300"), tmp_path)
    assert code == 1, log[-4000:]
    errors = {line for line in log.splitlines() if line.startswith("error: ")}
    assert len(errors) == 1, log[-4000:]  # the same line from each rank
    line = errors.pop()
    assert re.match(r"error: epoch 0, step \d+: non-finite loss nan.* on rank [01] on the batch of", line), line
    assert "bad/huge.mp4" in line and line.count(" on rank ") == 1, line
    assert "Traceback" not in log
    assert not glob.glob(os.path.join(exp, "run", "model_avg*"))


def test_torchrun_launch(corpus, tmp_path):
    """The launcher multi-node and SLURM users go through: torchrun starts both ranks."""
    exp = str(tmp_path / "exp")
    code, log = run(ddp_args(corpus, exp, "--val-file", "val.csv"), tmp_path, torchrun=True)
    assert code == 0, log[-4000:]
    assert "distributed_backend=gloo" in log
    assert_one_model(log, os.path.join(exp, "run"), "model_avg_1.pth")


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_slurm_launch(corpus, tmp_path):
    """What ``srun`` does for ``--nodes=1 --ntasks-per-node=2``: it starts the same command
    twice with the SLURM variables set; Lightning takes ranks and world size from them."""
    exp = str(tmp_path / "exp")
    args = ddp_args(corpus, exp, "--val-file", "val.csv")
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
             "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "avsr",
             "MASTER_PORT": str(free_port())}
    procs = [start(args, str(tmp_path / f"task{r}.log"),
                   env_extra={**slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)}) for r in (0, 1)]
    results = [finish(proc, str(tmp_path / f"task{r}.log")) for r, proc in enumerate(procs)]
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    log = results[0][1] + results[1][1]
    assert "distributed_backend=gloo" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in results[1][1]
    assert_one_model(log, os.path.join(exp, "run"), "model_avg_1.pth")


def start_and_freeze_rank_1(corpus, tmp_path, *extra):
    """Start a long DDP run, wait until its first epoch is written, then stop (SIGSTOP) rank 1:
    rank 0 then waits in a collective that rank 1 never reaches. Returns (proc, log path)."""
    import psutil

    exp = str(tmp_path / "exp")
    log_path = str(tmp_path / "frozen.log")
    proc = start(ddp_args(corpus, exp, "--max-epochs", "40", "--average-last", "0", *extra), log_path)
    deadline = time.monotonic() + RUN_LIMIT_S
    first_epoch = os.path.join(exp, "run", "last.ckpt")
    while not os.path.exists(first_epoch):
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_session(proc)
            with open(log_path) as handle:
                pytest.fail(f"the run did not get through its first epoch:\n{handle.read()[-4000:]}")
        time.sleep(0.2)
    children = [p for p in psutil.Process(proc.pid).children() if "train.py" in " ".join(p.cmdline())]
    assert len(children) == 1
    children[0].send_signal(signal.SIGSTOP)
    return proc, log_path


def test_a_stuck_collective_times_out_naming_the_rank(corpus, tmp_path):
    # long enough for rank 1 to start on a busy machine: the rendezvous has the same timeout
    proc, log_path = start_and_freeze_rank_1(corpus, tmp_path, "--dist-timeout", "45")
    code, log = finish(proc, log_path, limit=180)
    assert code == 1, log[-4000:]
    line = [line for line in log.splitlines() if line.startswith("error: ")][-1]
    assert re.match(r"error: rank 0 of 2 waited longer than --dist-timeout 45 s in a collective at epoch \d+, "
                    r"step \d+: another rank stopped, crashed or is stuck", line), line


def test_sigterm_ends_a_run_stuck_in_a_collective(corpus, tmp_path):
    proc, log_path = start_and_freeze_rank_1(corpus, tmp_path, "--signal-grace", "3")
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    code, log = finish(proc, log_path, limit=60)
    assert code == 128 + signal.SIGTERM, log[-4000:]
    assert time.monotonic() - sent < 30  # the 1800-s collective timeout did not have to run out
    line = [line for line in log.splitlines() if line.startswith("error: ")][-1]
    assert re.match(r"error: still running 3 s after SIGTERM \(--signal-grace\).*exiting without a new checkpoint "
                    r"\(rank 0 of 2, epoch \d+, step \d+\)", line), line
