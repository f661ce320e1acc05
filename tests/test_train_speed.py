"""benchmarks/train_speed.py at a tiny size: data loading alone, the step alone and train.py
epochs are measured and reported side by side."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_speed_benchmark_runs_at_a_tiny_size(toy_corpus, tmp_path):
    out = tmp_path / "speed"
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "train_speed.py"), "--out", str(out),
           "--root-dir", toy_corpus["root"], "--modalities", "audiovisual", "--adim", "16", "--elayers", "1",
           "--resnet-width", "4", "--epochs", "1", "--max-frames", "200",
           "--flags", "--num-workers 0 --num-threads 1 --precision 32",
           "--step-precisions", "32,bf16-mixed"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "train_speed.json").read_text())["results"]["audiovisual"]
    frames = sum(int(line.split(",")[2]) for line in open(toy_corpus["train"]) if line.strip())
    assert result["epoch_frames"] == frames  # the loader gave every utterance once
    (epoch,) = result["epoch_all"]
    assert epoch["frames"] == frames and epoch["batches"] > 1 and epoch["seconds"] > 0
    assert result["epoch_threads"] == 1
    for key in ("load_fps", "step_fps", "epoch_fps", "step_cpu_fps", "epoch_cpu_fps"):
        assert result[key] > 0, key
    assert result["epoch_over_step"] == result["epoch_fps"] / result["step_fps"]
    assert result["precision"] == "32" and result["step_cpu_fps_bf16-mixed"] > 0  # the step also timed in bf16
    assert "[audiovisual] step alone at 32 vs bf16-mixed: " in proc.stdout
    table = (out / "train_speed.md").read_text()
    assert "| audiovisual |" in table and "epoch / step" in table
    assert "x step alone (wall time)" in proc.stdout and "(CPU time)" in proc.stdout
