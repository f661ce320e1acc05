"""Every tutorial (``tutorials/*.py``, files starting with ``_`` are helpers) runs as
``python tutorials/<name>.py --out DIR`` and produces what it promises."""

import ast
import glob
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import LEGACY, REPO

TUTORIALS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "tutorials", "*.py"))
                   if not os.path.basename(p).startswith("_"))


def run_tutorial(name, out):
    # as a reader runs it (README): no PYTHONPATH, the tutorial finds the repository itself
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tutorials", f"{name}.py"), "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    print(f"tutorials/{name}.py: {seconds:.1f} s")
    return proc


def check_inference(out, stdout):
    from datamodule.media import load_video

    results = json.load(open(os.path.join(out, "inference.json")))
    assert [r["modality"] for r in results] == ["audio", "video", "audiovisual"]
    frames = load_video(results[0]["clip"]).size(0)
    for r in results:
        assert f"hypothesis [{r['modality']}]: {r['hypothesis']}" in stdout
        assert os.path.isfile(r["checkpoint"]) and r["reference"]
        if r["modality"] != "audio":
            assert r["inputs"]["video"] == [frames, 1, 88, 88]
        if r["modality"] != "video":
            assert r["inputs"]["audio"][1] == 1 and abs(r["inputs"]["audio"][0] - 640 * frames) <= 1600
    assert results[2]["inputs"]["audio"][0] == 640 * frames  # audio-visual: cut/padded to the video


def check_feature_extraction(out, stdout):
    from datamodule.media import load_video

    index = json.load(open(os.path.join(out, "features", "index.json")))
    assert index["modality"] == "audiovisual" and index["format"] == "pt"
    assert index["frame_rate"] == {"vision_frontend": 25.0, "audio_frontend": 25.0, "fused": 25.0, "encoder": 25.0}
    assert len(index["clips"]) == 8  # the test split of the generated corpus
    for entry in index["clips"]:
        saved = torch.load(entry["files"][0], weights_only=True)
        feats = saved["features"]
        t = load_video(entry["clip"]).size(0)
        # tiny model: ResNet width 8 -> 64-d frontends; adim 32
        assert {k: tuple(v.shape) for k, v in feats.items()} == {
            "vision_frontend": (t, 64), "audio_frontend": (t, 64), "fused": (t, 32), "encoder": (t, 32)}
        assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in feats.values())
        assert float(feats["encoder"].std()) > 0
        assert entry["shapes"]["encoder"] == [t, 32]


def check_new_encoder(out, stdout):
    report = json.load(open(os.path.join(out, "new_encoder.json")))
    losses = report["losses"]
    assert len(losses) == 30 and losses[-1] < 0.8 * losses[0]  # one batch, 30 steps: the loss must fall
    assert report["padding_max_abs_diff"] < 1e-5
    assert report["encoder_choices"][-1] == "bigru" and {"conformer", "transformer", "none"} <= set(report["encoder_choices"])
    # the tutorial's own option: --bigru-layers 2 reached the component (its default is 1) and the checkpoint
    assert report["checkpoint_config"]["encoder"] == "bigru"
    assert report["checkpoint_config"]["encoder_conf"] == {"num_layers": 2} and report["trained_encoder_layers"] == 2
    assert report["test_wer"] >= 0.0 and "WER" in stdout
    assert "BiGRUEncoder" in stdout and "registered --encoder bigru" in stdout
    assert f"reference:  {report['reference']}" in stdout and report["reference"]
    # the tutorial stands alone: it calls the package, not train.py / eval.py
    source = open(os.path.join(REPO, "tutorials", "new_encoder.py"), encoding="utf8").read()
    assert not re.search(r"^\s*(import|from)\s+(train|eval)\b", source, re.MULTILINE)


def check_mouth_cropping(out, stdout):
    import matplotlib.image

    from datamodule.media import load_video

    crops = load_video(os.path.join(out, "carphone_mouth.mp4"))
    assert tuple(crops.shape) == (100, 3, 96, 96)  # 120 frames at 29.97 fps -> 100 at 25 fps
    for name in ("contact_sheet.png", "keypoints.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000
    sheet = (matplotlib.image.imread(os.path.join(out, "contact_sheet.png"))[..., 0] * 255).round()
    ours = crops[:, 0].float().numpy()
    assert np.abs(sheet[:96, :96] - ours[0]).mean() < 4  # the first tile is our first crop (the mp4: H.264)
    reference = os.path.join(LEGACY, "carphone_autoavsr_crops.npz")
    if os.path.isfile(reference):
        # 100 pairs, ours | Auto-AVSR's (96 + 1 + 96 px), 5 to a row, 12 px apart; frame 0 shows source frame 0
        assert sheet.shape == (20 * 108 - 12, 5 * 205 - 12)
        with np.load(reference) as fixture:
            np.testing.assert_array_equal(sheet[:96, 97:193], fixture["crops"][0])
        agreement = re.search(r"cross-correlation ([0-9.]+) on average, ([0-9.]+) in the worst frame", stdout)
        assert agreement and float(agreement[1]) >= 0.95 and float(agreement[2]) >= 0.9, stdout
    else:
        assert sheet.shape == (10 * 98 - 2, 10 * 98 - 2)
        assert "no crops of Auto-AVSR's own preparation at hand" in stdout


def check_qlora(out, stdout):
    results = json.load(open(os.path.join(out, "qlora.json")))
    adapters, merged = results["adapters"], results["merged"]
    assert adapters["wer"] == merged["wer"]  # merging changes nothing the model computes
    assert adapters["bytes"] < 0.6 * merged["bytes"]  # adapters + new modules only
    assert "--use-qlora" in stdout and "4-bit layers" in stdout
    state = torch.load(adapters["checkpoint"], weights_only=True)
    assert any("lora_A" in k for k in state) and not any(k.startswith("decoder.llm.") and "lora_" not in k
                                                          for k in state)


CHECKS = {"inference": check_inference, "feature_extraction": check_feature_extraction,
          "new_encoder": check_new_encoder, "mouth_cropping": check_mouth_cropping, "qlora": check_qlora}


def test_tutorials_are_discovered():
    assert {"inference", "feature_extraction", "new_encoder", "mouth_cropping", "qlora"} <= set(TUTORIALS)


@pytest.mark.parametrize("name", TUTORIALS)
def test_tutorial_runs(name, tmp_path):
    path = os.path.join(REPO, "tutorials", f"{name}.py")
    with open(path, encoding="utf8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read()))
    assert doc and f"tutorials/{name}.py --out" in doc, f"{path}: the docstring should say how to run it"
    out = tmp_path / "out"
    proc = run_tutorial(name, out)
    check = CHECKS.get(name)
    if check is not None:
        check(str(out), proc.stdout)
    else:  # a tutorial without a specific check: it must at least write into --out
        assert any(files for _, _, files in os.walk(out)), f"{name} wrote nothing under --out"
