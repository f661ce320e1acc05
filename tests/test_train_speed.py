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


def test_full_size_mode_at_a_tiny_size_compares_with_the_stand_in(tmp_path):
    """--full-size with --sizes shrunk and no original checkout: this project's step against its
    own code with the speed levers off, side by side, with frames/s and the share of the peak."""
    out = tmp_path / "full"
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "train_speed.py"), "--full-size", "--out", str(out),
           "--modalities", "audio", "--sizes", "odim=20,adim=16,aheads=2,eunits=32,elayers=1,dunits=32,dlayers=1,width=4",
           "--seconds", "0.4", "--steps", "2", "--tokens", "3", "--precisions", "bf16-mixed",
           "--baseline-precisions", "32,bf16-mixed"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "full_size.json").read_text())
    assert report["sizes"]["adim"] == 16 and report["sizes"]["elayers"] == 1
    assert sorted(report["results"]) == ["audio bf16-mixed vs 32", "audio bf16-mixed vs bf16-mixed"]
    for precision in ("32", "bf16-mixed"):
        assert report["peaks"][precision]["matmul"] > 0 and report["peaks"][precision]["conv"] > 0
        row = report["results"][f"audio bf16-mixed vs {precision}"]
        assert row["baseline"] == "standin" and len(row["ours_steps"]) == len(row["baseline_steps"]) == 2
        assert row["speedup"] == row["baseline_seconds"] / row["ours_seconds"]
        assert row["ours_fps"] == 2 * 10 / row["ours_seconds"]  # 2 utterances x 0.4 s x 25 Hz
        assert row["gflops_per_step"] > 0 and 0 < row["ours_peak_share"]
    assert "this project's code with the speed levers off (stand-in for the original)" in proc.stdout
    assert "| audio | bf16-mixed | standin 32 |" in (out / "full_size.md").read_text()


def test_full_size_mode_refuses_a_missing_checkout_and_shrunk_originals(tmp_path):
    script = os.path.join(REPO, "benchmarks", "train_speed.py")
    for extra, message in (([], "no Auto-AVSR checkout there"),
                           (["--sizes", "adim=16"], None)):
        checkout = tmp_path / "auto_avsr"
        if message is None:  # a checkout, but shrunk sizes
            (checkout / "espnet" / "nets" / "pytorch_backend").mkdir(parents=True)
            (checkout / "espnet" / "nets" / "pytorch_backend" / "e2e_asr_conformer.py").write_text("")
            message = "--sizes: the original Auto-AVSR model has fixed sizes"
        proc = subprocess.run([sys.executable, script, "--full-size", "--out", str(tmp_path / "o"),
                               "--original-checkout", str(checkout), *extra], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
