"""benchmarks/nar_decoding.py: ``--paraformer-sampling-ratio`` is checked against the
Paraformer's own bounds before any corpus is generated or model trained."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "nar_decoding.py")


def test_refuses_a_sampling_ratio_outside_the_decoders_bounds(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    for value, message in (("2", "sampling_ratio must be <= 1, got 2.0"),
                           ("-0.1", "sampling_ratio must be >= 0, got -0.1"),
                           ("nan", "sampling_ratio must be a finite number, got nan")):
        proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--paraformer-sampling-ratio",
                               value], capture_output=True, text=True, env=env, timeout=120)  # a hang fails
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines()[-1] == f"nar_decoding.py: error: --paraformer-sampling-ratio: {message}"
        assert proc.stdout == ""
    assert not (tmp_path / "o").exists()  # nothing generated


def test_help_names_the_flag():
    proc = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "--paraformer-sampling-ratio PARAFORMER_SAMPLING_RATIO The Paraformer's --paraformer-sampling-ratio " \
           "(glancing sampler share; 0 = none)" in text
