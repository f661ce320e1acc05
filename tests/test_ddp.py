"""Two-process DDP training on CPU (gloo, plain BatchNorm): both ranks finish with the same
weights and exactly one averaged model is written."""

import os
import re
import subprocess
import sys

from bad_corpus import AUDIO_MODEL, BadCorpus, train_args
from conftest import REPO


def test_two_cpu_processes_train_one_epoch(toy_corpus, tmp_path):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    exp = str(tmp_path / "exp")
    args = train_args(corpus, exp, "train.csv", "--val-file", "val.csv", "--max-frames", "150",
                      "--accelerator", "cpu", "--gpus", "2", model=AUDIO_MODEL)
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # a subprocess: Lightning starts the second rank by running the same command line again
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "distributed_backend=gloo" in log
    digests = dict(re.findall(r"rank (\d)/2: training finished, parameter digest ([0-9a-f]{16})", log))
    assert set(digests) == {"0", "1"}, log[-4000:]
    assert digests["0"] == digests["1"]
    run_dir = os.path.join(exp, "run")
    assert [f for f in os.listdir(run_dir) if f.startswith("model_avg") and f.endswith(".pth")] == ["model_avg_1.pth"]
    assert log.count("averaged model: ") == 1
