"""Checkpoint loading (legacy .pth, Lightning .ckpt with weights_only) and averaging."""

import argparse
import os

import pytest
import torch

from espnet.training.checkpoints import (
    average_last_checkpoints,
    average_state_dicts,
    epoch_checkpoints,
    load_checkpoint,
)


def write_ckpt(path, state, hparams=None):
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "hyper_parameters": hparams or {}}, path)


def test_average_floats_and_floor_divides_integers(tmp_path):
    paths = []
    for i, (w, n) in enumerate([(1.0, 3), (2.0, 4), (4.0, 6)]):
        p = str(tmp_path / f"epoch={i}.ckpt")
        write_ckpt(p, {"w": torch.full((2,), w), "bn.num_batches_tracked": torch.tensor(n)})
        paths.append(p)
    avg = average_state_dicts(paths)
    torch.testing.assert_close(avg["w"], torch.full((2,), 7.0 / 3), rtol=1e-5, atol=1e-8)
    assert avg["bn.num_batches_tracked"].item() == 13 // 3
    assert avg["bn.num_batches_tracked"].dtype == torch.int64


def test_average_last_uses_numeric_epoch_order(tmp_path):
    for epoch in (0, 1, 2, 10, 11):
        write_ckpt(str(tmp_path / f"epoch={epoch}.ckpt"), {"w": torch.tensor([float(epoch)])})
    assert [os.path.basename(p) for p in epoch_checkpoints(str(tmp_path))] == [
        "epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt", "epoch=10.ckpt", "epoch=11.ckpt"]
    out = average_last_checkpoints(str(tmp_path), max_n=3, meta={"model_config": {"modality": "video"}})
    assert os.path.basename(out) == "model_avg_3.pth"
    state, config, meta = load_checkpoint(out)
    assert state["w"].item() == pytest.approx((2 + 10 + 11) / 3)
    assert config == {"modality": "video"} and meta["averaged"][-1] == "epoch=11.ckpt"
    assert set(torch.load(out, weights_only=True)) == {"w"}  # plain, legacy-loadable state dict


def test_original_lightning_ckpt_with_namespace_loads_weights_only(tmp_path, legacy_dir):
    state = torch.load(os.path.join(legacy_dir, "tiny_video.pth"), weights_only=True)
    path = str(tmp_path / "epoch=74.ckpt")
    write_ckpt(path, state, argparse.Namespace(modality="video", lr=1e-3))
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # the Namespace needs the explicit allow-list
    loaded, config, hparams = load_checkpoint(path)
    assert config is None and hparams["modality"] == "video"
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)  # the same weights read back: exact


def test_prefix_is_stripped_once_and_only_at_start(tmp_path):
    path = str(tmp_path / "x.ckpt")
    torch.save({"state_dict": {"model.encoder.model.w": torch.ones(1)}}, path)
    state, _, _ = load_checkpoint(path)
    assert list(state) == ["encoder.model.w"]
    torch.save({"state_dict": {"ema.w": torch.ones(1)}}, path)
    with pytest.raises(ValueError, match=r"unexpected key 'ema.w'"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "nope.pth"))
