"""benchmarks/gpu_speed.py: its tiny CPU mode runs every stage (training step at float32,
bf16-mixed and compiled, batched decoding) and writes the table and JSON; without a CUDA
device it refuses in one line."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "gpu_speed.py")


def run_tiny(out, stages: str):
    # CUDA hidden: the tiny mode runs on the CPU wherever the suite runs
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--modalities", "audio",
                           "--stages", stages, "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=240)  # a hang fails; generous for a loaded 2-core machine
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_speed.json").read_text())
    assert report["device"] == "cpu" and report["torch"] and report["device_name"]
    assert report["args"]["tiny"] is True and report["args"]["steps"] == 1
    return report, (out / "gpu_speed.md").read_text()


def test_tiny_cpu_mode_times_the_training_step(tmp_path):
    report, table = run_tiny(tmp_path / "gpu", "train")
    assert list(report["stages"]) == ["train audio"]
    assert report["stages"]["train audio"]["status"] == "ok" and report["stages"]["train audio"]["seconds"] > 0
    rows = {row["config"]: row for row in report["train"]}
    assert sorted(rows) == ["bf16-mixed", "float32"]
    for row in rows.values():
        assert row["modality"] == "audio" and not row["compiled"] and row["compile_seconds"] is None
        assert len(row["steps"]) == 1 and row["seconds_per_step"] == row["steps"][0] > 0
        assert row["frames_per_second"] == pytest.approx(2 * 5 / row["seconds_per_step"])  # 2 x 0.2 s x 25 Hz
        assert row["gflops_per_second"] > 0 and row["peak_share"] > 0 and row["speedup_over_standin"] > 0
        assert row["peak_memory_gb"] is None  # no GPU memory on the CPU
    assert table.startswith(f"# GPU speed: {report['device_name']}\n")
    assert "| audio | float32 |" in table and "| audio | bf16-mixed |" in table and "| train audio | ok |" in table
    assert report["decode"] is None and "(not measured)" in table


def test_tiny_cpu_mode_decodes_one_at_a_time_and_batched(tmp_path):
    report, table = run_tiny(tmp_path / "gpu", "decode")
    assert list(report["stages"]) == ["decode"] and report["stages"]["decode"]["status"] == "ok"
    assert report["train"] == [] and table.count("(not measured)") == 1
    decode = report["decode"]
    assert decode["tiny"] and decode["device"] == "cpu" and decode["num_utts"] == 2
    assert [(r["beam"], r["batch"]) for r in decode["rows"]] == [(40, 1), (40, 2)]
    for r in decode["rows"]:
        assert r["utt_per_s"] > 0 and r["rtf"] > 0 and r["identical_hypotheses"] is True
        assert r["utt_per_s"] == pytest.approx(2 / r["seconds"])
    assert "| 40 | 2 |" in table and "identical (max score difference" in table and "| decode | ok |" in table


def test_tiny_cpu_mode_compiles(tmp_path):
    report, table = run_tiny(tmp_path / "gpu", "compile")
    assert list(report["stages"]) == ["compile audio"] and report["stages"]["compile audio"]["status"] == "ok"
    assert report["decode"] is None and table.count("(not measured)") == 1
    (row,) = report["train"]
    assert row["config"] == "bf16-mixed + torch.compile" and row["compiled"] and row["precision"] == "bf16-mixed"
    assert row["seconds_per_step"] > 0 and row["frames_per_second"] > 0
    assert row["compile_seconds"] == pytest.approx(row["first_step_seconds"] - row["seconds_per_step"])
    assert row["standin_precision"] == "32"
    assert "| audio | bf16-mixed + torch.compile |" in table


def test_refuses_without_a_cuda_device(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")  # no GPU visible, even where there is one
    for extra, message in (([], "gpu_speed.py: error: no CUDA device (torch.cuda.is_available() is False); "
                                "--device cpu --tiny tests the script without one"),
                           (["--device", "cpu"], "gpu_speed.py: error: --device cpu: only with --tiny")):
        proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), *extra], capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "o").exists()  # nothing written


def test_stages_past_the_time_budget_are_skipped_and_reported(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--modalities", "audio", "--out",
                           str(out), "--time-budget", "5"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # nothing measured
    report = json.loads((out / "gpu_speed.json").read_text())
    assert list(report["stages"]) == ["train audio", "decode", "compile audio"]
    for stage in report["stages"].values():
        assert stage["status"].startswith("skipped: ") and stage["status"].endswith(" s of --time-budget left")
        assert stage["log"] is None
    assert report["train"] == [] and report["decode"] is None
    assert "| compile audio | skipped: " in (out / "gpu_speed.md").read_text()
