"""Portable experiments: a run directory holds its tokenizer and names it relatively, so a
moved run evaluates with no tokenizer flags; the Hugging Face-style export folder
(config.json + model.safetensors + tokenizer + README) loads without unpickling anything
and decodes identically."""

import json
import os
import shutil

import pytest
import torch

from espnet.asr import eval_cli
from espnet.training import train_cli
from bad_corpus import BadCorpus, train_args
from espnet.training.checkpoints import load_checkpoint, write_sidecar
from espnet.training.export import export_hf_folder
from espnet.training.export import main as export_main
from espnet.training.tokenizer_files import copy_tokenizer


def decode(corpus, model_path, out, capsys):
    """eval.py with only --root-dir, --test-file and --pretrained-model-path (+ speed flags)."""
    assert eval_cli.main(["--root-dir", corpus.root, "--test-file", "test.csv", "--pretrained-model-path", model_path,
                          "--beam-size", "2", "--num-workers", "0", "--output-json", out]) == 0, capsys.readouterr().err
    with open(out) as handle:
        return json.load(handle)["utterances"]


def test_moved_run_and_export_folder_decode_identically(toy_corpus, tmp_path, monkeypatch, capsys):
    spm = tmp_path / "spm"
    spm.mkdir()
    for key in ("sp_model_path", "dict_path"):
        shutil.copy(toy_corpus[key], spm)
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    corpus.tokenizer_args = lambda: ["--sp-model-path", str(spm / os.path.basename(toy_corpus["sp_model_path"])),
                                     "--dict-path", str(spm / os.path.basename(toy_corpus["dict_path"]))]
    exp = tmp_path / "exp"
    assert train_cli.main(train_args(corpus, str(exp), "train.csv", "--val-file", "val.csv", "--average-last", "1")) == 0
    reference = decode(corpus, str(exp / "run" / "model_avg_1.pth"), str(tmp_path / "ref.json"), capsys)
    assert reference and all("score" in u for u in reference)

    hparams = torch.load(str(exp / "run" / "best.ckpt"), weights_only=True)["hyper_parameters"]
    with open(exp / "run" / "model_avg_1.json") as handle:
        sidecar = json.load(handle)
    for recorded in (hparams, sidecar):
        assert (recorded["sp_model_path"], recorded["dict_path"]) == ("tokenizer/toy_unigram.model",
                                                                      "tokenizer/toy_unigram_units.txt")
    shutil.rmtree(spm)  # the tokenizer given to train.py is gone
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(str(exp / "run"), str(moved))
    for name in ("model_avg_1.pth", "best.ckpt", "final.ckpt"):  # one epoch: the same weights in all three
        assert decode(corpus, str(moved / name), str(tmp_path / f"{name}.json"), capsys) == reference, name

    out = tmp_path / "hf"
    assert export_main(["--pretrained-model-path", str(moved / "model_avg_1.pth"), "--hf-dir", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors", "toy_unigram.model",
                                       "toy_unigram_units.txt"]
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"] == {"sp_model_path": "toy_unigram.model", "dict_path": "toy_unigram_units.txt"}
    assert config["model_config"]["audio_encoder"] == "resnet1d" and config["format"] == "avsr-e2e"
    assert "--pretrained-model-path THIS_FOLDER" in (out / "README.md").read_text()
    state, _, meta = load_checkpoint(str(out))
    plain = torch.load(str(moved / "model_avg_1.pth"), weights_only=True)
    assert set(state) == set(plain) and all(torch.equal(state[k], plain[k]) for k in plain)
    assert meta["sp_model_path"] == str(out / "toy_unigram.model")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called for an export folder")

    monkeypatch.setattr(torch, "load", no_pickle)
    assert decode(corpus, str(out), str(tmp_path / "hf.json"), capsys) == reference
    monkeypatch.undo()

    assert export_main(["--pretrained-model-path", str(moved / "model_avg_1.pth"), "--hf-dir", str(out)]) == 2
    assert f"--hf-dir {out} exists and is not empty" in capsys.readouterr().err
    (out / "model.safetensors").unlink()
    assert eval_cli.main(["--root-dir", corpus.root, "--test-file", "test.csv", "--pretrained-model-path", str(out)]) == 2
    assert f"{out} is a directory but not an export folder: it has no model.safetensors" in capsys.readouterr().err


def test_export_without_sentencepiece_and_tokenizer_conflicts(toy_corpus, tmp_path):
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig

    # a model whose decoder would bring its own tokenizer has no SentencePiece files at all
    config = ModelConfig(odim=12, vision_encoder=None, audio_encoder="resnet1d", audio_encoder_conf={"width": 4}, adim=16,
                         aheads=2, eunits=32, elayers=1, decoder_conf={"dunits": 32, "dlayers": 1})
    path = str(tmp_path / "model.pth")
    torch.manual_seed(0)
    torch.save(E2E(config).state_dict(), path)
    write_sidecar(path, {"model_config": config.to_dict()})
    out = export_hf_folder(path, str(tmp_path / "hf"))
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    assert "no SentencePiece tokenizer" in open(os.path.join(out, "README.md")).read()
    state, stored, meta = load_checkpoint(out)
    assert meta == {"sp_model_path": None, "dict_path": None} and stored["odim"] == 12
    assert copy_tokenizer(None, None, str(tmp_path / "run")) == {"sp_model_path": None, "dict_path": None}

    run = tmp_path / "run"
    copy_tokenizer(toy_corpus["sp_model_path"], toy_corpus["dict_path"], str(run))
    other = tmp_path / "other" / os.path.basename(toy_corpus["dict_path"])
    other.parent.mkdir()
    other.write_text("a 1\n")
    with pytest.raises(ValueError, match="already holds a different tokenizer file than"):
        copy_tokenizer(toy_corpus["sp_model_path"], str(other), str(run))


def test_tied_weights_are_exported_once_each(tmp_path):
    from safetensors.torch import load_file, save_file

    from espnet.training.export import _unshared

    weight = torch.randn(4, 3)
    state = {"decoder.embed.weight": weight, "decoder.proj_out.weight": weight, "view": weight[1:]}
    with pytest.raises(RuntimeError):  # what safetensors says about shared storage
        save_file(state, str(tmp_path / "raw.safetensors"))
    save_file(_unshared(state), str(tmp_path / "model.safetensors"))
    loaded = load_file(str(tmp_path / "model.safetensors"))
    assert all(torch.equal(loaded[k], state[k]) for k in state)
