"""train.py / eval.py end to end on a generated corpus, and their error messages."""

import json
import os
import subprocess
import sys

import jiwer
import pytest
import torch

from conftest import REPO, TINY_DIMS

from espnet.asr import eval_cli
from espnet.training import train_cli


def run(script, *args):
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, os.path.join(REPO, script), *args], capture_output=True, text=True, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def trained(toy_corpus, tmp_path_factory):
    exp = str(tmp_path_factory.mktemp("exp"))
    proc = run("train.py", "--exp-dir", exp, "--exp-name", "tiny", "--modality", "video",
               "--root-dir", toy_corpus["root"], "--train-file", "train.csv", "--val-file", "val.csv",
               "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"],
               *TINY_DIMS, "--max-epochs", "2", "--warmup-epochs", "1", "--max-frames", "300",
               "--num-workers", "0", "--test-file", "test.csv", "--beam-size", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return os.path.join(exp, "tiny"), proc


def test_train_writes_checkpoints_average_and_wer(trained):
    run_dir, proc = trained
    files = set(os.listdir(run_dir))
    assert {"epoch=0.ckpt", "epoch=1.ckpt", "model_avg_2.pth", "model_avg_2.json", "test_results.json"} <= files
    assert "WER: " in proc.stdout
    assert os.path.isfile(os.path.join(run_dir, "logs", "version_0", "metrics.csv"))
    ckpt = torch.load(os.path.join(run_dir, "epoch=1.ckpt"), weights_only=True)
    config = ckpt["model_config"]
    assert (config["vision_encoder"], config["audio_encoder"], config["decoder"]) == ("resnet", None, "transformer")
    assert config["adim"] == 32


def test_eval_prints_wer_and_writes_json(trained, toy_corpus, tmp_path):
    run_dir, _ = trained
    out = str(tmp_path / "res.json")
    proc = run("eval.py", "--root-dir", toy_corpus["root"], "--test-file", "test.csv",
               "--pretrained-model-path", os.path.join(run_dir, "model_avg_2.pth"), "--beam-size", "2",
               "--output-json", out, "--num-workers", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("WER: ")
    res = json.load(open(out))
    n_test = len(open(toy_corpus["test"]).read().splitlines())
    assert res["num_utterances"] == n_test == len(res["utterances"])
    refs = [u["reference"].lower() for u in res["utterances"]]
    hyps = [u["hypothesis"].lower() for u in res["utterances"]]
    assert float(last.split()[1]) == pytest.approx(jiwer.wer(refs, hyps)) == pytest.approx(res["wer"])
    assert all(u["path"].endswith(".mp4") and u["reference"] for u in res["utterances"])


def test_eval_lightning_ckpt_and_flag_contradiction(trained, toy_corpus, capsys):
    run_dir, _ = trained
    ckpt = os.path.join(run_dir, "epoch=1.ckpt")
    common = ["--root-dir", toy_corpus["root"], "--test-file", "test.csv", "--pretrained-model-path", ckpt,
              "--beam-size", "1", "--num-workers", "0"]
    assert eval_cli.main(common) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")
    assert eval_cli.main(common + ["--modality", "audio"]) == 2
    assert "--modality audio contradicts" in capsys.readouterr().err
    assert eval_cli.main(common + ["--audio-encoder", "resnet1d"]) == 2
    assert "--audio-encoder resnet1d contradicts" in capsys.readouterr().err
    assert eval_cli.main(common + ["--adim", "64"]) == 2
    assert "--adim 64 contradicts" in capsys.readouterr().err


def test_eval_error_paths(trained, toy_corpus, tmp_path, capsys):
    run_dir, _ = trained
    ckpt = os.path.join(run_dir, "model_avg_2.pth")
    base = ["--root-dir", toy_corpus["root"], "--pretrained-model-path", ckpt, "--num-workers", "0", "--beam-size", "1"]
    assert eval_cli.main(base + ["--test-file", str(tmp_path / "none.csv")]) == 2
    assert "label list not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("toy,spk05/utt00005.mp4,44,3 4\ntoy,spk05/utt00011.mp4,44\n")
    assert eval_cli.main(base + ["--test-file", str(bad)]) == 2
    assert "bad.csv:2: expected 'dataset,rel_path,input_length,token_ids" in capsys.readouterr().err
    missing = tmp_path / "missing.csv"
    missing.write_text("toy,spk05/does_not_exist.mp4,44,3 4\n")
    assert eval_cli.main(base + ["--test-file", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "video file not found" in err and "spk05/does_not_exist.mp4" in err
    assert eval_cli.main(base + ["--test-file", "test.csv", "--pretrained-model-path", str(tmp_path / "no.pth")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_unknown_modality_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.parse_args(["--root-dir", "r", "--train-file", "t.csv", "--modality", "lips",
                              "--sp-model-path", "a", "--dict-path", "b"])
    assert exc.value.code == 2
    assert "invalid choice: 'lips'" in capsys.readouterr().err


def test_legacy_checkpoint_decodes_through_eval(legacy_dir, legacy_spm, legacy_config, toy_corpus, tmp_path, capsys):
    from datamodule.label_list import format_label_line, read_label_list
    from datamodule.text_transform import TextTransform

    tt = TextTransform(*legacy_spm)
    rows = [format_label_line(u.dataset, u.rel_path, u.input_length, tt.tokenize(u.transcript).tolist())
            for u in read_label_list(toy_corpus["test"])]
    csv = tmp_path / "legacy_test.csv"
    csv.write_text("\n".join(rows) + "\n")
    dims = []
    for key in ("adim", "aheads", "eunits", "elayers", "dunits", "dlayers"):
        dims += [f"--{key}", str(legacy_config[key])]
    out = tmp_path / "legacy.json"
    args = ["--modality", "video", "--root-dir", toy_corpus["root"], "--test-file", str(csv),
            "--pretrained-model-path", os.path.join(legacy_dir, "tiny_video.pth"),
            "--sp-model-path", legacy_spm[0], "--dict-path", legacy_spm[1], "--beam-size", "2",
            "--num-workers", "0", "--output-json", str(out), *dims]
    assert eval_cli.main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")
    res = json.load(open(out))
    assert res["num_utterances"] == len(rows)
    # same weights as an original Lightning checkpoint (keys prefixed 'model.')
    state = torch.load(os.path.join(legacy_dir, "tiny_video.pth"), weights_only=True)
    ckpt = tmp_path / "epoch=0.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, ckpt)
    out2 = tmp_path / "legacy_ckpt.json"
    args[args.index("--pretrained-model-path") + 1] = str(ckpt)
    args[args.index("--output-json") + 1] = str(out2)
    assert eval_cli.main(args) == 0
    assert [u["hypothesis"] for u in json.load(open(out2))["utterances"]] == [u["hypothesis"] for u in res["utterances"]]
    # wrong sizes give a clear mismatch error
    args[args.index("--adim") + 1] = "32"
    args[args.index("--aheads") + 1] = "2"
    assert eval_cli.main(args) == 2
    assert "does not match a video model (resnet / - / transformer) with adim=32" in capsys.readouterr().err


def test_audio_visual_gated_model_trains_and_evaluates_without_model_flags(toy_corpus, tmp_path):
    exp = str(tmp_path / "exp")
    proc = run("train.py", "--exp-dir", exp, "--exp-name", "av", "--vision-encoder", "resnet",
               "--audio-encoder", "resnet1d", "--fusion-type", "gated", "--decoder", "transformer",
               "--root-dir", toy_corpus["root"], "--train-file", "train.csv",
               "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"],
               *TINY_DIMS, "--resnet-width", "8", "--max-epochs", "1", "--warmup-epochs", "1",
               "--max-frames", "300", "--num-workers", "0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = os.path.join(exp, "av", "model_avg_1.pth")
    state = torch.load(ckpt, weights_only=True)
    assert any(k.startswith("fusion.layer.gate.") for k in state)
    assert any(k.startswith("vision_frontend.") for k in state) and any(k.startswith("audio_frontend.") for k in state)
    out = str(tmp_path / "av.json")
    proc = run("eval.py", "--root-dir", toy_corpus["root"], "--test-file", "test.csv",
               "--pretrained-model-path", ckpt, "--beam-size", "2", "--num-workers", "0",
               "--decode-snr-target", "0", "--output-json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("WER: ")
    assert json.load(open(out))["num_utterances"] == len(open(toy_corpus["test"]).read().splitlines())


def test_planned_component_is_a_clear_error(toy_corpus, capsys):
    code = train_cli.main(["--root-dir", toy_corpus["root"], "--train-file", "train.csv", "--vision-encoder", "resnet",
                           "--decoder", "llama", "--decoder-model-name", "/nonexistent",
                           "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"]])
    assert code == 2
    assert "cannot load the LLaMA decoder '/nonexistent' (given by --decoder-model-name): no such directory" \
        in capsys.readouterr().err


def test_audio_visual_span_mismatch_is_reported(toy_corpus, tmp_path):
    import shutil

    from datamodule.av_dataset import AVDataset
    from datamodule.label_list import read_label_list
    from datamodule.media import load_audio, write_wav

    utt = read_label_list(toy_corpus["test"])[0]
    root = tmp_path / "root"
    src = os.path.join(toy_corpus["root"], "toy", utt.rel_path)
    dst = root / "toy" / utt.rel_path
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    audio = load_audio(src[:-4] + ".wav")
    write_wav(str(dst)[:-4] + ".wav", audio[: audio.size(0) - 4000, 0])  # 0.25 s short
    (root / "labels").mkdir()
    (root / "labels" / "t.csv").write_text(f"toy,{utt.rel_path},{utt.input_length},1 2\n")
    ds = AVDataset(str(root), str(root / "labels" / "t.csv"), "audiovisual")
    with pytest.raises(ValueError, match=r"utt.*\.mp4: audio lasts .* s but the video .* s .*differ by more than 0.1 s"):
        ds[0]
    ok = AVDataset(str(root), str(root / "labels" / "t.csv"), "audiovisual", av_tolerance=0.5)[0]
    assert ok["audio"].size(0) == ok["video"].size(0) * 640
