"""Pretrained (Hugging Face) frontends with tiny random models saved to a local directory
and loaded back offline: shapes, frame rates, lengths, padding invariance, freezing,
Whisper log-mel agreement, missing-model error, E2E training step."""

import math

import pytest
import torch

import transformers

from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.factories.frontend_factory import FrontendFactory
from flag_config import model_config
from tiny_hf import save_tiny_vit

TINY = dict(odim=12, adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1)


def _save(model, root, name):
    path = str(root / name)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dirs(offline_hub, tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf_models")
    t = transformers
    dirs = {}
    dirs["vit"] = save_tiny_vit(str(root / "vit"), seed=0)
    dirs["clip-vit"] = _save(
        t.CLIPVisionModel(
            t.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=48, projection_dim=16)
        ),
        root, "clip",
    )
    dirs["vivit"] = _save(
        t.VivitModel(
            t.VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 16, 16], hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64),
            add_pooling_layer=False,
        ),
        root, "vivit",
    )
    whisper_cfg = t.WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500, max_target_positions=32,
        vocab_size=64, pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3,
        suppress_tokens=None, begin_suppress_tokens=None,
    )
    dirs["whisper"] = _save(t.WhisperModel(whisper_cfg), root, "whisper")
    t.WhisperFeatureExtractor(feature_size=80).save_pretrained(dirs["whisper"])
    dirs["wavlm"] = _save(
        t.WavLMModel(
            t.WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_buckets=32,
                          max_bucket_distance=64, feat_extract_norm="group")
        ),
        root, "wavlm",
    )
    return dirs


def build(kind, path, **kwargs):
    from espnet.nets.pytorch_backend.registry import AUDIO_ENCODERS, VISION_ENCODERS

    registry = VISION_ENCODERS if kind in VISION_ENCODERS.available() else AUDIO_ENCODERS
    return registry.resolve_class(kind)(path, **kwargs)


def video(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 1, 88, 88, generator=g)


def audio(b, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, s, 1, generator=g)


# ---- vision ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind,dim", [("vit", 32), ("clip-vit", 24)])
def test_per_frame_frontends_shapes_and_padding(model_dirs, kind, dim):
    front = build(kind, model_dirs[kind])
    assert front.output_dim == dim and front.frame_rate == 25.0
    x, lengths = video(2, 7), torch.tensor([7, 4])
    feats, out_len = front(x, lengths)
    assert feats.shape == (2, 7, dim) and out_len.tolist() == [7, 4]
    assert feats[1, 4:].abs().sum() == 0 and feats[1, :4].abs().sum() > 0
    alone, _ = front(x[1:, :4], lengths[1:])
    assert torch.allclose(alone[0], feats[1, :4], atol=1e-5)
    # the other pooling option
    pools = {"vit": "mean", "clip-vit": "mean"}
    other = build(kind, model_dirs[kind], pool=pools[kind])
    assert other(x, lengths)[0].shape == (2, 7, dim)


def test_vivit_tubelets_chunks_and_lengths(model_dirs):
    front = build("vivit", model_dirs["vivit"])
    assert front.output_dim == 32 and front.frame_rate == 12.5  # 25 / tubelet_t (2)
    x, lengths = video(2, 19), torch.tensor([19, 6])  # 19 frames: 3 chunks of num_frames 8
    feats, out_len = front(x, lengths)
    assert feats.shape == (2, 10, 32) and out_len.tolist() == [10, 3]
    assert feats[1, 3:].abs().sum() == 0 and feats[0].abs().sum(-1).gt(0).all()
    alone, alone_len = front(x[1:, :6], lengths[1:])
    assert alone.shape == (1, 3, 32) and alone_len.tolist() == [3]
    assert torch.allclose(alone[0], feats[1, :3], atol=1e-5)


# ---- audio ----------------------------------------------------------------------------


def test_whisper_log_mel_matches_feature_extractor(model_dirs):
    from espnet.nets.pytorch_backend.frontend.audio.whisper import WhisperLogMel

    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    g = torch.Generator().manual_seed(1)
    t = torch.arange(24000) / 16000.0
    wave = 0.1 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(24000, generator=g)
    wave = wave * torch.linspace(0.2, 1.0, 24000)
    mel = WhisperLogMel(n_mels=80)
    ref = torch.from_numpy(fe(wave.numpy(), sampling_rate=16000, return_tensors="np")["input_features"])  # 30 s
    short = torch.cat([wave[:17000], torch.zeros(7000)])  # shorter item in a padded batch
    ref_short = torch.from_numpy(fe(wave[:17000].numpy(), sampling_rate=16000, return_tensors="np")["input_features"])
    ours = mel(torch.stack([wave, short]), torch.tensor([24000, 17000]))
    assert ours.shape == (2, 80, 150)
    assert (ours[0] - ref[0, :, :150]).abs().max() <= 1e-3
    assert (ours[1, :, :106] - ref_short[0, :, :106]).abs().max() <= 1e-3
    # padded to 30 s: the whole 3000-frame feature extractor output
    full = mel(torch.nn.functional.pad(wave, (0, 480000 - 24000))[None], torch.tensor([24000]))
    assert full.shape == ref.shape and (full - ref).abs().max() <= 1e-3


def test_whisper_shapes_rate_and_padding_invariance(model_dirs):
    front = build("whisper", model_dirs["whisper"])
    assert front.output_dim == 32 and front.frame_rate == 50.0
    assert not any(p.requires_grad for p in front.parameters())
    lengths = torch.tensor([16000, 9000, 4001])
    x = audio(3, 16000)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 7.0  # garbage in the padding
    feats, out_len = front(x, lengths)
    # mel frames 100, 56, 25 -> encoder frames ceil(/2)
    assert feats.shape == (3, 50, 32) and out_len.tolist() == [50, 28, 13]
    assert feats[1, 28:].abs().sum() == 0
    alone, alone_len = front(x[1:2, :9000], lengths[1:2])
    assert alone.shape == (1, 28, 32) and alone_len.tolist() == [28]
    assert torch.allclose(alone[0], feats[1, :28], atol=1e-4)
    longer = torch.cat([x, audio(3, 5000, seed=3)], 1)
    feats2, _ = front(longer, lengths)
    assert torch.allclose(feats2[:, :50], feats, atol=1e-4)
    # 30 s mode: Whisper's own input; the trailing silence is input, so all 1500 frames are
    # valid, and an item does not depend on the batch padding
    padded = build("whisper", model_dirs["whisper"], pad_seconds=30)
    f30, len30 = padded(x, lengths)
    assert f30.shape == (3, 1500, 32) and len30.tolist() == [1500, 1500, 1500]
    f30_alone, _ = padded(x[1:2, :9000], lengths[1:2])
    assert torch.allclose(f30_alone[0], f30[1], atol=1e-4)
    # padding to 0.75 s: shorter clips get silence up to 12000 samples (38 frames), longer
    # ones keep their length; the batch padding beyond is masked
    short = build("whisper", model_dirs["whisper"], pad_seconds=0.75)
    fs, len_s = short(x, lengths)
    assert fs.shape == (3, 50, 32) and len_s.tolist() == [50, 38, 38]
    alone, _ = short(x[2:3, :4001], lengths[2:3])
    assert alone.shape == (1, 38, 32) and torch.allclose(alone[0], fs[2, :38], atol=1e-4)
    with pytest.raises(ValueError, match="--whisper-pad-seconds must be in \\[0, 30\\], got 31"):
        build("whisper", model_dirs["whisper"], pad_seconds=31)


def test_audio_frontends_match_hf_forward(model_dirs):
    """Unpadded: our encoder paths give what the Hugging Face models' own forward gives."""
    whisper = build("whisper", model_dirs["whisper"])
    wave = 0.1 * audio(1, 48000)
    mel = whisper.mel(torch.nn.functional.pad(wave[..., 0], (0, 480000 - 48000)), torch.tensor([48000]))
    with torch.no_grad():
        ref = whisper.model(input_features=mel).last_hidden_state
        assert torch.allclose(whisper.encode(mel), ref, atol=1e-4)
    wavlm = build("wavlm", model_dirs["wavlm"])
    assert wavlm.normalize is False  # no preprocessor config with do_normalize: the raw waveform
    with torch.no_grad():
        ref = wavlm.model(wave[..., 0]).last_hidden_state
    ours, _ = wavlm(wave, torch.tensor([48000]))
    assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-4)


def test_wavlm_normalises_like_its_feature_extractor(model_dirs, tmp_path):
    """With ``do_normalize`` in the model's preprocessor config, each item is normalised over
    its valid samples exactly as ``Wav2Vec2FeatureExtractor`` does, in a padded batch too."""
    import shutil

    path = str(tmp_path / "wavlm_norm")
    shutil.copytree(model_dirs["wavlm"], path)
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    fe.save_pretrained(path)
    wavlm = build("wavlm", path)
    assert wavlm.normalize is True
    waves = [0.3 * audio(1, 16000, seed=1)[0, :, 0] + 0.2, 0.05 * audio(1, 9000, seed=2)[0, :, 0]]
    feats = fe([w.numpy() for w in waves], sampling_rate=16000, padding=True, return_tensors="pt")
    batch = torch.stack([waves[0], torch.nn.functional.pad(waves[1], (0, 7000), value=5.0)]).unsqueeze(-1)
    ours, out_len = wavlm(batch, torch.tensor([16000, 9000]))
    with torch.no_grad():
        ref = [wavlm.model(feats["input_values"][i:i + 1, :n]).last_hidden_state[0] for i, n in enumerate((16000, 9000))]
    assert torch.allclose(ours[0], ref[0], atol=1e-4)
    assert torch.allclose(ours[1, : int(out_len[1])], ref[1], atol=1e-4)


@pytest.mark.parametrize("layer_weights", [False, True])
def test_wavlm_shapes_rate_and_padding_invariance(model_dirs, layer_weights):
    front = build("wavlm", model_dirs["wavlm"], layer_weights=layer_weights)
    assert front.output_dim == 32 and front.frame_rate == 50.0
    lengths = torch.tensor([16000, 7000])
    x = audio(2, 16000)
    x[1, 7000:] = -5.0
    feats, out_len = front(x, lengths)
    expected = front.model._get_feat_extract_output_lengths(lengths).tolist()
    assert out_len.tolist() == expected and expected[0] == 49  # ~50 Hz: (16000 - 400) // 320 + 1
    assert feats.shape == (2, 49, 32) and feats[1, expected[1]:].abs().sum() == 0
    alone, alone_len = front(x[1:, :7000], lengths[1:])
    assert alone_len.tolist() == [expected[1]]
    assert torch.allclose(alone[0], feats[1, : expected[1]], atol=1e-4)
    if layer_weights:
        trainable = [n for n, p in front.named_parameters() if p.requires_grad]
        assert trainable == ["layer_weights"]
        feats.pow(2).sum().backward()
        assert front.layer_weights.grad is not None and front.layer_weights.grad.abs().sum() > 0


# ---- loading, freezing ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vit", "clip-vit", "vivit", "whisper", "wavlm"])
def test_frozen_and_unfrozen(model_dirs, kind):
    frozen = build(kind, model_dirs[kind])
    assert not any(p.requires_grad for p in frozen.model.parameters())
    x, lengths = (video(1, 4), torch.tensor([4])) if kind in ("vit", "clip-vit", "vivit") else (audio(1, 3200), torch.tensor([3200]))
    x.requires_grad_(True)
    assert not frozen(x, lengths)[0].requires_grad  # ran under no_grad: nothing kept for backward
    frozen.train()
    assert frozen.training and not frozen.model.training
    assert not any(m.training for m in frozen.model.modules())
    unfrozen = build(kind, model_dirs[kind], freeze=False)
    assert all(p.requires_grad for n, p in unfrozen.model.named_parameters() if "embed_positions" not in n)
    unfrozen.train()
    assert unfrozen.model.training
    assert unfrozen(x, lengths)[0].requires_grad
    unfrozen.eval()
    assert not unfrozen.model.training


def test_from_config_reads_names_and_flags(model_dirs):
    config = model_config(vision_encoder="vit", audio_encoder="whisper", vision_model_name=model_dirs["vit"],
                         audio_model_name=model_dirs["whisper"], unfreeze_audio=True, **TINY)
    vision = FrontendFactory.create_vision_encoder("vit", config)
    audio_front = FrontendFactory.create_audio_encoder("whisper", config)
    assert vision.frozen and not audio_front.frozen


def test_missing_model_gives_clear_error(tmp_path):
    from espnet.nets.pytorch_backend.frontend.hf_base import PretrainedModelNotFound

    missing = str(tmp_path / "no-such-model")
    with pytest.raises(PretrainedModelNotFound, match=r"no-such-model.*--vision-model-name.*huggingface-cli download"):
        build("vit", missing)
    with pytest.raises(PretrainedModelNotFound, match=r"cannot load the Whisper frontend 'someone/absent-whisper'.*"
                                                     r"HF_HUB_OFFLINE.*save_pretrained"):
        build("whisper", "someone/absent-whisper")
    # default model name (not in the offline cache) via the config
    with pytest.raises(PretrainedModelNotFound, match=r"google/vit-base-patch16-224-in21k"):
        FrontendFactory.create_vision_encoder("vit", model_config(vision_encoder="vit", **TINY))


def test_wrong_model_type_is_rejected(model_dirs):
    with pytest.raises(ValueError, match=r"is a 'whisper' model; the ViT frontend needs one of: vit"):
        build("vit", model_dirs["whisper"])


# ---- end to end -----------------------------------------------------------------------


def e2e_inputs(vision, audio_enc):
    """A batch of 2 (10 and 7 frames at 25 Hz) for the streams the model reads."""
    lengths = torch.tensor([10, 7])
    inputs = {}
    if vision:
        inputs["video"], inputs["video_lengths"] = video(2, 10), lengths
    if audio_enc:
        inputs["audio"], inputs["audio_lengths"] = audio(2, 6400), lengths * 640
    return inputs


@pytest.mark.parametrize("vision,audio_enc", [("vit", None), ("clip-vit", None), ("vivit", None), (None, "whisper"),
                                              (None, "wavlm"), ("vit", "whisper")])
def test_e2e_forward_backward(model_dirs, vision, audio_enc):
    torch.manual_seed(0)
    config = model_config(vision_encoder=vision, audio_encoder=audio_enc,
                         vision_model_name=model_dirs.get(vision), audio_model_name=model_dirs.get(audio_enc),
                         unfreeze_vision=vision == "vit", **TINY)
    model = E2E(config)
    model.train()
    inputs = e2e_inputs(vision, audio_enc)
    label = torch.tensor([[3, 4, 5], [6, 7, -1]])
    loss, _, _, _ = model(inputs, label)
    assert torch.isfinite(loss)
    loss.backward()
    # the missing-stream embeddings are used only when a stream is missing (tests/test_missing_streams.py)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fusion.missing_")}
    assert all(g is not None for g in grads.values())
    front = "frontend" if not (vision and audio_enc) else "vision_frontend"
    front_grads = [n for n in grads if n.startswith(f"{front}.model.")]
    assert bool(front_grads) == (vision == "vit")  # only the unfrozen frontend trains
    frozen = model.frontend if hasattr(model, "frontend") else model.audio_frontend
    if vision != "vit":
        assert not frozen.model.training


@pytest.mark.parametrize("vision,audio_enc", [("clip-vit", None), ("vivit", None), (None, "wavlm"),
                                              ("vit", "whisper")])
def test_qlora_on_pretrained_frontends(model_dirs, vision, audio_enc):
    """--use-qlora: every pretrained frontend gets 4-bit linear layers and LoRA adapters on
    its attention projections, which receive gradients; its own weights stay frozen."""
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    config = model_config(vision_encoder=vision, audio_encoder=audio_enc, vision_model_name=model_dirs.get(vision),
                         audio_model_name=model_dirs.get(audio_enc), use_qlora=True, **TINY)
    model = E2E(config).train()
    inputs = e2e_inputs(vision, audio_enc)
    loss, _, _, _ = model(inputs, torch.tensor([[3, 4, 5], [6, 7, -1]]))
    loss.backward()
    fronts = [m for m in (getattr(model, k, None) for k in ("frontend", "vision_frontend", "audio_frontend")) if m]
    assert len(fronts) == (2 if vision and audio_enc else 1)
    for front in fronts:
        net = front.model
        assert net.training and any(isinstance(m, bnb.nn.Linear4bit) for m in net.modules())
        adapters = {n: p for n, p in net.named_parameters() if "lora_B" in n}
        assert adapters and all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in adapters.values())
        assert all(not p.requires_grad for n, p in net.named_parameters() if "lora_" not in n)
        adapted = {n.split(".")[-4] for n in adapters}  # X.q_proj.lora_B.default.weight
        if "WavLM" in type(net).__name__:
            assert adapted == {"intermediate_dense", "output_dense"}
        else:  # the attention projections (ViT/ViViT q/k/v/o_proj, CLIP and Whisper q/k/v/out_proj)
            assert {"q_proj", "k_proj", "v_proj"} < adapted <= {"q_proj", "k_proj", "v_proj", "o_proj", "out_proj"}


def test_qlora_wavlm_keeps_directly_read_attention_weights(model_dirs):
    bnb = pytest.importorskip("bitsandbytes")
    config = dict(audio_encoder="wavlm", vision_encoder=None, audio_model_name=model_dirs["wavlm"], use_qlora=True,
                  **TINY)
    model = E2E(model_config(**config))
    attn = model.frontend.model.encoder.layers[0].attention
    assert all(type(getattr(attn, n)) is torch.nn.Linear for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
    assert isinstance(model.frontend.model.encoder.layers[0].feed_forward.output_dense.base_layer, bnb.nn.Linear4bit)
    with pytest.raises(ValueError, match="reads these layers' weights directly"):
        E2E(model_config(**config, qlora_target_modules="q_proj,v_proj"))


CLI_RUNS = {
    "vit": ["--vision-encoder", "vit"],
    "clip-vit": ["--vision-encoder", "clip-vit"],
    "vivit": ["--vision-encoder", "vivit"],
    "whisper": ["--audio-encoder", "whisper"],
    "wavlm": ["--audio-encoder", "wavlm"],
    "vit+whisper": ["--vision-encoder", "vit", "--audio-encoder", "whisper", "--fusion-type", "concat"],
}


@pytest.mark.parametrize("run", list(CLI_RUNS))
def test_train_and_eval_cli_with_pretrained_frontend(run, model_dirs, toy_corpus, tmp_path, capsys):
    import json
    import os

    from espnet.asr import eval_cli
    from espnet.training import train_cli

    flags = list(CLI_RUNS[run])
    for name in run.split("+"):
        kind = "--vision-model-name" if name in ("vit", "clip-vit", "vivit") else "--audio-model-name"
        flags += [kind, model_dirs[name]]
    code = train_cli.main(["--exp-dir", str(tmp_path), "--exp-name", "m", *flags, "--decoder", "transformer",
                           "--root-dir", toy_corpus["root"], "--train-file", "train.csv",
                           "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"],
                           "--adim", "16", "--aheads", "2", "--eunits", "32", "--elayers", "1", "--dunits", "32",
                           "--dlayers", "1", "--max-epochs", "1", "--warmup-epochs", "1", "--max-frames", "300",
                           "--num-workers", "0"])
    assert code == 0, capsys.readouterr().err[-2000:]
    ckpt = os.path.join(str(tmp_path), "m", "model_avg_1.pth")
    with open(ckpt[:-4] + ".json") as handle:
        config = json.load(handle)["model_config"]
    stored_names = {conf: config[conf]["model_name"] for conf in ("vision_encoder_conf", "audio_encoder_conf")
                    if config[conf]}
    expected = {("vision_encoder_conf" if name in ("vit", "clip-vit", "vivit") else "audio_encoder_conf"): model_dirs[name]
                for name in run.split("+")}
    assert stored_names == expected
    capsys.readouterr()
    out = str(tmp_path / "res.json")
    assert eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", "test.csv", "--pretrained-model-path", ckpt,
                          "--beam-size", "2", "--num-workers", "0", "--output-json", out]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")
    with open(out) as handle:
        assert json.load(handle)["num_utterances"] == len(open(toy_corpus["test"]).read().splitlines())


def test_frontend_option_flags_reach_the_frontends(model_dirs):
    import argparse

    from espnet.training.cli_args import add_model_args, resolve_model_config

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--vision-encoder", "vit", "--vision-model-name", model_dirs["vit"], "--vision-pool", "mean",
                              "--audio-encoder", "whisper", "--audio-model-name", model_dirs["whisper"], "--whisper-pad-30s",
                              "--adim", "16", "--aheads", "2", "--eunits", "32", "--elayers", "1", "--dunits", "32",
                              "--dlayers", "1"])
    model = E2E(resolve_model_config(args, 12))
    assert model.vision_frontend.pool == "mean" and model.audio_frontend.pad_samples == 480000
    args = parser.parse_args(["--audio-encoder", "wavlm", "--audio-model-name", model_dirs["wavlm"], "--wavlm-layer-weights",
                              "--adim", "16", "--aheads", "2", "--eunits", "32", "--elayers", "1", "--dunits", "32",
                              "--dlayers", "1"])
    model = E2E(resolve_model_config(args, 12))
    assert any(p.requires_grad for p in model.frontend.parameters())  # the layer weights train while frozen
    assert not any(p.requires_grad for p in model.frontend.model.parameters())
