"""Files a later step reads are written beside and renamed: an interrupted write leaves the
old file (or none), never a truncated one, and no temporary file behind."""

import json
import os

import pytest
import torch

from espnet.utils.atomic_write import atomic_json_dump, atomic_open, atomic_torch_save, current_umask


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "model.pth")
    atomic_torch_save({"w": torch.arange(4)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(path, "wb") as handle:
            handle.write(b"half a model")
            raise RuntimeError("disk full")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(4))  # integers: exact
    assert os.listdir(tmp_path) == ["model.pth"]


def test_json_with_nan_is_refused_before_anything_is_written(tmp_path):
    path = str(tmp_path / "results.json")
    with pytest.raises(ValueError, match="JSON"):
        atomic_json_dump({"wer": float("nan")}, path)
    assert os.listdir(tmp_path) == []
    atomic_json_dump({"wer": 0.25}, path)
    with open(path, encoding="utf8") as handle:
        assert json.load(handle) == {"wer": 0.25}
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~current_umask())


def test_averaged_model_and_sidecar_are_written_through_the_atomic_path(tmp_path, monkeypatch):
    """A crash while the averaged model is written leaves no model_avg_*.pth at all (its sidecar
    is written first, so a .pth under its final name always has its own)."""
    from espnet.training import checkpoints

    state = {"state_dict": {"model.w": torch.ones(3)}, "pytorch-lightning_version": "2"}
    for epoch in range(2):
        torch.save(state, str(tmp_path / f"epoch={epoch}.ckpt"))

    def crash(obj, handle):
        handle.write(b"truncated")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.average_last_checkpoints(str(tmp_path), 2, meta={"model_config": {}})
    assert sorted(f for f in os.listdir(tmp_path) if not f.startswith("epoch=")) == ["model_avg_2.json"]
