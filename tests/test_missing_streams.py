"""Audio-visual models with a stream missing: modality dropout in training, the learned
stand-in embeddings, decoding with either stream missing (``eval.py --drop-stream``, marked
label lines), and initialising an audio-visual model from an audio-only and a video-only one."""

import os
import shutil

import pytest
import torch

from espnet.asr import eval_cli
from datamodule.av_dataset import AVDataset
from datamodule.collate import collate_pad
from datamodule.label_list import format_label_line, read_label_list
from datamodule.preflight import check_label_list
from datamodule.transforms import AudioTransform, VideoTransform
from espnet.asr.recognizer import DecodeOptions, recognize, recognize_batch
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.training.model_module import ModelModule
from espnet.training.val_decoding import batch_inputs
from flag_config import model_config

TINY = dict(adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1, resnet_width=4)
TINY_AV = dict(vision_encoder="resnet", audio_encoder="resnet1d", fusion_type="gated", **TINY)


def av_model(odim=30, **overrides):
    torch.manual_seed(0)
    model = E2E(model_config(odim=odim, **{**TINY_AV, **overrides}))
    with torch.no_grad():  # distinct stand-ins (they start at zero)
        model.fusion.missing_vision.normal_()
        model.fusion.missing_audio.normal_()
    return model


def dataset(corpus, p=0.0, subset="train", seed=3, **kwargs):
    return AVDataset(corpus["root"], corpus["train"], "audiovisual", VideoTransform(subset), AudioTransform(subset),
                     seed=seed, modality_dropout=p, **kwargs)


def streams(item):
    return tuple(k for k in ("video", "audio") if k in item)


def test_modality_dropout_leaves_out_one_stream_per_utterance(toy_corpus):
    none, every, half = dataset(toy_corpus, 0.0), dataset(toy_corpus, 1.0), dataset(toy_corpus, 0.5)
    n = len(none)
    assert all(streams(none[(0, i)]) == ("video", "audio") for i in range(n))
    kept = [streams(every[(0, i)]) for i in range(n)]
    assert all(len(k) == 1 for k in kept) and {("video",), ("audio",)} <= set(kept)
    assert kept == [streams(every[(0, i)]) for i in range(n)]  # keyed: the same again
    assert kept != [streams(every[(1, i)]) for i in range(n)]  # another epoch, other draws
    assert 0 < sum(len(streams(half[(0, i)])) == 1 for i in range(n)) < n
    for i, k in enumerate(kept):
        if k == ("audio",):  # the kept stream is augmented exactly as without dropout
            # (the same draws and steps on the same waveform: bit for bit)
            assert torch.equal(every[(0, i)]["audio"], none[(0, i)]["audio"])
    batch = collate_pad([every[(0, i)] for i in range(n)])
    has_video = torch.tensor([k == ("video",) for k in kept])
    assert torch.equal(batch["video_present"], has_video) and torch.equal(batch["audio_present"], ~has_video)
    assert (batch["video_lengths"][~has_video] == 0).all() and (batch["audio_lengths"][has_video] == 0).all()
    with pytest.raises(ValueError, match="--modality-dropout drops one of two streams; this is a video model"):
        AVDataset(toy_corpus["root"], toy_corpus["train"], "video", modality_dropout=0.5)


def test_a_missing_stream_is_the_learned_embedding_whatever_its_content():
    model = av_model().train()
    torch.manual_seed(1)
    inputs = {"video": torch.randn(3, 9, 1, 88, 88), "video_lengths": torch.tensor([9, 9, 7]),
              "audio": torch.randn(3, 9 * 640, 1), "audio_lengths": torch.tensor([9, 9, 7]) * 640,
              "video_present": torch.tensor([True, False, True])}
    model.eval()
    with torch.no_grad():
        fused, lengths = model.fuse_frontends(inputs)
        scrambled = dict(inputs, video=inputs["video"].clone())
        scrambled["video"][1] = torch.randn(9, 1, 88, 88) * 5  # what a missing row holds does not matter
        # (bit for bit: the same batch through the same kernels; only the replaced row's input differs)
        assert torch.equal(model.fuse_frontends(scrambled)[0], fused)
        # row 1 is the fusion layer applied to the video stand-in and the row's own audio
        a, _ = model.audio_frontend(inputs["audio"][1:2], inputs["audio_lengths"][1:2])
        v = model.fusion.missing_vision.view(1, 1, -1).expand(1, 9, -1)
        expected = model.fusion.layer(v, a, torch.ones(1, 9, dtype=torch.bool))
        torch.testing.assert_close(fused[1:2], expected, rtol=1e-5, atol=1e-6)
        # and what a batch without any video gives it
        alone = model.fuse_frontends({"audio": inputs["audio"][1:2], "audio_lengths": inputs["audio_lengths"][1:2]})
        torch.testing.assert_close(alone[0], fused[1:2], rtol=1e-5, atol=1e-6)
        # rows with both streams are unaffected by the stand-in
        both = model.fuse_frontends({k: v[[0, 2]] for k, v in inputs.items() if k != "video_present"})
        torch.testing.assert_close(both[0], fused[[0, 2]], rtol=1e-5, atol=1e-6)
    assert lengths.tolist() == [9, 9, 7]
    model.train()
    loss = model(inputs, torch.tensor([[3, 4], [5, -1], [6, 7]]))[0]
    loss.backward()
    assert model.fusion.missing_vision.grad.abs().sum() > 0  # trained where the video was missing
    assert model.fusion.missing_audio.grad is None or model.fusion.missing_audio.grad.abs().sum() == 0


@pytest.mark.parametrize("fusion", ["concat", "add", "gated", "attention", "bottleneck"])
def test_audio_visual_model_decodes_with_either_stream_missing(fusion):
    model = av_model(fusion_type=fusion).eval()
    torch.manual_seed(2)
    both = [{"video": torch.randn(n, 1, 88, 88), "audio": torch.randn(n * 640, 1)} for n in (9, 6, 11)]
    items = [{"audio": both[0]["audio"]}, {"video": both[1]["video"]}, both[2], {"audio": both[1]["audio"]}]
    options = DecodeOptions(beam_size=2, ctc_weight=0.3)
    batched = recognize_batch(model, items, options)
    for item, hyp in zip(items, batched):
        alone = recognize(model, item, options)
        assert hyp.token_ids == alone.token_ids and hyp.score == pytest.approx(alone.score, rel=1e-5)
        assert hyp.score < 0 and all(0 < t < model.odim for t in hyp.token_ids)
    with torch.no_grad():  # without its audio, the utterance is encoded from the video and the audio stand-in
        no_audio = model.encode({"video": both[1]["video"][None], "video_lengths": torch.tensor([6])})[0]
        with_audio = model.encode({"video": both[1]["video"][None], "video_lengths": torch.tensor([6]),
                                   "audio": both[1]["audio"][None], "audio_lengths": torch.tensor([6 * 640])})[0]
    assert no_audio.shape == with_audio.shape == (1, 6, 16) and not torch.allclose(no_audio, with_audio)


def test_a_model_without_stand_ins_needs_both_streams():
    torch.manual_seed(0)
    config = model_config(odim=30, **TINY_AV)
    config.missing_stream_embeddings = False  # as configs written before the embeddings load
    model = E2E(config).eval()
    assert not any(n.startswith("fusion.missing_") for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="has no embeddings for a missing stream"):
        model.encode({"audio": torch.randn(1, 640 * 5, 1), "audio_lengths": torch.tensor([640 * 5])})


def marked_list(corpus, tmp_path):
    """A copy of the corpus whose label list has a line without video and one without audio."""
    root = tmp_path / "corpus"
    shutil.copytree(corpus["root"], root)
    utts = read_label_list(corpus["train"])
    lines = []
    for i, (u, missing) in enumerate(zip(utts[:3], (None, "video", "audio"))):
        base = os.path.join(root, u.dataset, os.path.splitext(u.rel_path)[0])
        if missing:
            os.remove(base + (".mp4" if missing == "video" else ".wav"))
        lines.append(format_label_line(u.dataset, u.rel_path, u.input_length, u.token_ids, u.transcript, missing))
    path = root / "labels" / "marked.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return str(root), str(path)


def test_marked_lines_pass_the_preflight_and_lack_their_stream(toy_corpus, tmp_path):
    root, path = marked_list(toy_corpus, tmp_path)
    assert "|missing=video" in open(path).read().splitlines()[1]
    utts = read_label_list(path)
    assert [u.missing for u in utts] == [None, "video", "audio"] and not utts[1].rel_path.endswith("video")
    assert check_label_list(root, path, "audiovisual", use_cache=False).problems == []
    problems = check_label_list(root, path, "video", use_cache=False).problems
    assert [(p.line, p.message) for p in problems] == [
        (2, "the line marks the video as missing, and this video model reads nothing else")]
    ds = AVDataset(root, path, "audiovisual", VideoTransform("test"), AudioTransform("test"))
    assert [streams(ds[i]) for i in range(3)] == [("video", "audio"), ("audio",), ("video",)]
    with pytest.raises(ValueError, match="marks the video as missing, and this video model reads nothing else"):
        AVDataset(root, path, "video", VideoTransform("test"))[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("toy,a.mp4|missing=lips,10,1 2\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"bad.csv:1: 'a.mp4\|missing=lips': the mark must be"):
        read_label_list(str(bad))


def write_checkpoint(model, path, corpus):
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "model_config": model.config.to_dict(),
                "hyper_parameters": {"sp_model_path": corpus["sp_model_path"], "dict_path": corpus["dict_path"]}}, path)


def test_eval_drop_stream(toy_corpus, tmp_path, capsys):
    from datamodule.text_transform import TextTransform

    odim = TextTransform(toy_corpus["sp_model_path"], toy_corpus["dict_path"]).odim
    ckpt = str(tmp_path / "av.ckpt")
    write_checkpoint(av_model(odim=odim), ckpt, toy_corpus)
    root, marked = marked_list(toy_corpus, tmp_path)
    common = ["--root-dir", root, "--pretrained-model-path", ckpt, "--beam-size", "1", "--num-workers", "0"]
    wers = {}
    for drop in (None, "video", "audio"):
        out = str(tmp_path / f"{drop}.json")
        extra = ["--drop-stream", drop] if drop else []
        assert eval_cli.main(common + ["--test-file", "test.csv", "--output-json", out, *extra]) == 0
        wers[drop] = float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    assert all(0 <= w for w in wers.values())
    assert eval_cli.main(common + ["--test-file", marked]) == 0  # marked lines decode from the other stream
    assert "WER:" in capsys.readouterr().out
    code = eval_cli.main(common + ["--test-file", "test.csv", "--drop-stream", "audio", "--decode-snr-target", "0"])
    assert code == 2 and "--drop-stream audio removes it" in capsys.readouterr().err
    video_ckpt = str(tmp_path / "v.ckpt")
    torch.manual_seed(0)
    write_checkpoint(E2E(model_config(odim=odim, vision_encoder="resnet", **TINY)), video_ckpt, toy_corpus)
    code = eval_cli.main(["--root-dir", root, "--test-file", "test.csv", "--pretrained-model-path", video_ckpt,
                          "--drop-stream", "video", "--num-workers", "0"])
    assert code == 2 and "only an audio-visual model has another stream" in capsys.readouterr().err


def test_init_audio_visual_from_audio_and_video_models(tmp_path):
    torch.manual_seed(0)
    audio = E2E(model_config(odim=30, audio_encoder="resnet1d", **TINY))
    video = E2E(model_config(odim=30, vision_encoder="resnet", **TINY))
    torch.save(audio.state_dict(), tmp_path / "a.pth")
    torch.save(video.state_dict(), tmp_path / "v.pth")
    config = model_config(odim=30, **TINY_AV)
    hparams = {"model_config": config.to_dict(), "lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 1, "max_epochs": 1,
               "init_audio_from": str(tmp_path / "a.pth"), "init_video_from": str(tmp_path / "v.pth")}
    for encoder_from, source in (("audio", audio), ("video", video)):  # weights are copied: exact
        av = ModelModule({**hparams, "init_encoder_from": encoder_from}).model.state_dict()
        for key, value in audio.state_dict().items():
            if key.startswith("frontend."):
                assert torch.equal(av["audio_frontend." + key[len("frontend."):]], value), key
        for key, value in video.state_dict().items():
            if key.startswith("frontend."):
                assert torch.equal(av["vision_frontend." + key[len("frontend."):]], value), key
        for key, value in source.state_dict().items():
            if key.startswith(("encoder.", "decoder.", "ctc.")):
                assert torch.equal(av[key], value), key
        assert torch.equal(av["fusion.layer.proj_audio.weight"], audio.state_dict()["proj_encoder.weight"])
        assert torch.equal(av["fusion.layer.proj_vision.bias"], video.state_dict()["proj_encoder.bias"])
    with pytest.raises(ValueError, match=r"--init-audio-from .*v.pth: expected an audio-only model, got a video-only"):
        ModelModule({**hparams, "init_audio_from": str(tmp_path / "v.pth")})
    small = E2E(model_config(odim=30, audio_encoder="resnet1d", **{**TINY, "adim": 8, "aheads": 2}))
    torch.save(small.state_dict(), tmp_path / "small.pth")
    with pytest.raises(ValueError, match="weights that do not fit this model"):
        ModelModule({**hparams, "init_audio_from": str(tmp_path / "small.pth")})


def transferred(config, source: str, **flags):
    """``(fresh, transferred)`` state dicts of a ``config`` model: as initialised with seed 1 alone,
    and as :class:`ModelModule` initialises it from ``source`` with the ``transfer_*`` ``flags``."""
    hparams = {"model_config": config.to_dict(), "lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 1,
               "max_epochs": 1, "pretrained_model_path": source, **flags}
    torch.manual_seed(1)
    fresh = E2E(config).state_dict()
    torch.manual_seed(1)
    return fresh, ModelModule(hparams).model.state_dict()


def test_transfer_backend_starts_a_video_model_from_an_audio_model(tmp_path):
    """--transfer-backend: proj_encoder, encoder, decoder and CTC come from a model of the other
    modality, the frontend keeps its fresh initialisation."""
    torch.manual_seed(0)
    audio = E2E(model_config(odim=30, audio_encoder="resnet1d", **TINY))
    torch.save(audio.state_dict(), tmp_path / "a.pth")
    video_config = model_config(odim=30, vision_encoder="resnet", **TINY)
    hparams = {"model_config": video_config.to_dict(), "lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 1,
               "max_epochs": 1, "pretrained_model_path": str(tmp_path / "a.pth"), "transfer_backend": True}
    fresh, video = transferred(video_config, str(tmp_path / "a.pth"), transfer_backend=True)
    backend = ("proj_encoder.", "encoder.", "decoder.", "ctc.")
    moved = [k for k in video if k.startswith(backend)]  # copied weights: compared exactly
    assert moved and all(torch.equal(video[k], audio.state_dict()[k]) for k in moved)
    assert not torch.equal(video["proj_encoder.weight"], fresh["proj_encoder.weight"])
    assert all(torch.equal(video[k], fresh[k]) for k in video if k.startswith("frontend."))
    # an audio-visual model takes encoder, decoder and CTC (its fusion layer replaces proj_encoder)
    av = ModelModule({**hparams, "model_config": model_config(odim=30, **TINY_AV).to_dict()}).model.state_dict()
    assert all(torch.equal(av[k], v) for k, v in audio.state_dict().items() if k.startswith(("encoder.", "ctc.")))
    small = E2E(model_config(odim=30, audio_encoder="resnet1d", **{**TINY, "adim": 8}))
    torch.save(small.state_dict(), tmp_path / "small.pth")
    with pytest.raises(ValueError, match=r"small.pth: backend weights do not match the model"):
        ModelModule({**hparams, "pretrained_model_path": str(tmp_path / "small.pth")})


def test_transfer_from_an_audio_visual_model(tmp_path):
    """--transfer-encoder between audio-visual models: both frontends, the fusion layer (with its
    stand-ins) and the encoder; the new decoder starts fresh. A single-modality model takes only
    the back-end of an audio-visual checkpoint."""
    torch.manual_seed(0)
    source = E2E(model_config(odim=30, **TINY_AV)).state_dict()
    torch.save(source, tmp_path / "av.pth")
    target = model_config(odim=30, **{**TINY_AV, "decoder": "paraformer"})
    fresh, av = transferred(target, str(tmp_path / "av.pth"), transfer_encoder=True)
    parts = ("vision_frontend.", "audio_frontend.", "fusion.", "encoder.")
    moved = [k for k in av if k.startswith(parts)]
    assert "fusion.missing_audio" in moved and any(k.startswith("vision_frontend.") for k in moved)
    assert all(torch.equal(av[k], source[k]) for k in moved)  # copied weights: compared exactly
    assert all(torch.equal(av[k], fresh[k]) for k in av if k.startswith(("decoder.", "ctc.")))
    with pytest.raises(ValueError, match=r"--transfer-encoder from an audio-visual checkpoint needs an audio-visual "
                                         r"model \(this is a video model\); --transfer-backend takes"):
        transferred(model_config(odim=30, vision_encoder="resnet", **TINY), str(tmp_path / "av.pth"),
                    transfer_encoder=True)
    _, audio = transferred(model_config(odim=30, audio_encoder="resnet1d", **TINY), str(tmp_path / "av.pth"),
                           transfer_backend=True)
    backend = [k for k in audio if k.startswith(("encoder.", "decoder.", "ctc."))]
    assert backend and all(torch.equal(audio[k], source[k]) for k in backend)


def test_transfer_flags_are_checked(capsys):
    from espnet.training.train_cli import parse_args

    for argv, message in ((["--transfer-backend"], "--transfer-backend/--transfer-ar-scorer need "
                                                   "--pretrained-model-path"),
                          (["--transfer-ar-scorer"], "--transfer-ar-scorer need --pretrained-model-path"),
                          (["--transfer-backend", "--transfer-encoder", "--pretrained-model-path", "a.pth"],
                           "--transfer-frontend, --transfer-encoder and --transfer-backend are mutually exclusive"),
                          (["--transfer-backend", "--transfer-ar-scorer", "--pretrained-model-path", "a.pth"],
                           "--transfer-ar-scorer and --transfer-backend both take the checkpoint's decoder")):
        with pytest.raises(SystemExit):
            parse_args(["--root-dir", "d", "--train-file", "t.csv", "--vision-encoder", "resnet", *argv])
        assert message in capsys.readouterr().err
    assert parse_args(["--root-dir", "d", "--train-file", "t.csv", "--vision-encoder", "resnet", "--transfer-backend",
                       "--pretrained-model-path", "a.pth"]).transfer_backend
