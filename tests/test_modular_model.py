"""Registries, factories, projection, fusion and every buildable component combination."""

import argparse
import itertools

import pytest
import torch

from espnet.asr.recognizer import DecodeOptions, recognize
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.factories.decoder_factory import DecoderFactory
from espnet.nets.pytorch_backend.factories.frontend_factory import FrontendFactory
from espnet.nets.pytorch_backend.factories.fusion_factory import FusionFactory
from espnet.nets.pytorch_backend.fusion.temporal_alignment import resample_stream
from espnet.nets.pytorch_backend.model_config import ModelConfig
from flag_config import model_config
from espnet.nets.pytorch_backend.projection.auto_projection import AutoProjection
from espnet.nets.pytorch_backend.registry import AUDIO_ENCODERS, DECODERS, FUSIONS, MODEL_REGISTRY, VISION_ENCODERS

TINY = dict(odim=12, adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1, resnet_width=4)
VISION = [None] + VISION_ENCODERS.available()
AUDIO = [None] + AUDIO_ENCODERS.available()


def combos():
    """Every combination of the components that need no pretrained weights (those with a
    ``default_model_name`` are covered by tests/test_hf_frontends.py with tiny local models)."""
    def scratch(registry, names):
        return [n for n in names if n is None or not getattr(registry.resolve_class(n), "default_model_name", "")]

    for v, a in itertools.product(scratch(VISION_ENCODERS, VISION), scratch(AUDIO_ENCODERS, AUDIO)):
        if v is None and a is None:
            continue
        for fusion in (FUSIONS.available() if v and a else [None]):
            for dec in scratch(DECODERS, DECODERS.available()):
                yield v, a, fusion, dec


def make_inputs(model, lengths=(10, 7)):
    inputs = {}
    if model.config.vision_encoder:
        inputs["video"] = torch.randn(len(lengths), max(lengths), 1, 88, 88)
        inputs["video_lengths"] = torch.tensor(lengths)
    if model.config.audio_encoder:
        inputs["audio"] = torch.randn(len(lengths), max(lengths) * 640, 1)
        inputs["audio_lengths"] = torch.tensor(lengths) * 640
    return inputs


@pytest.mark.parametrize("vision,audio,fusion,decoder", list(combos()))
def test_every_combination_trains_and_decodes(vision, audio, fusion, decoder):
    torch.manual_seed(0)
    uses_resnet = bool({"resnet", "resnet1d"} & {vision, audio})  # --resnet-width is refused without a ResNet
    tiny = TINY if uses_resnet else {k: v for k, v in TINY.items() if k != "resnet_width"}
    config = model_config(vision_encoder=vision, audio_encoder=audio, fusion_type=fusion, decoder=decoder, **tiny)
    model = E2E(config)
    assert model.modality == ("audiovisual" if vision and audio else "video" if vision else "audio")
    inputs = make_inputs(model)
    label = torch.tensor([[3, 4, 5], [6, 7, -1]])
    loss, loss_ctc, loss_att, acc = model(inputs, label)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    # the missing-stream embeddings are used only when a stream is missing (tests/test_missing_streams.py)
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fusion.missing_")]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    model.eval()
    enc, enc_len = model.encode(inputs)
    assert enc.shape == (2, 10, TINY["adim"]) and enc_len.tolist() == [10, 7]
    item = {k: inputs[k][1, : int(inputs[f"{k}_lengths"][1])] for k in ("video", "audio") if k in inputs}
    hyp = recognize(model, item, DecodeOptions(beam_size=3))
    assert len(hyp.token_ids) <= 7 and model.eos not in hyp.token_ids and hyp.score < 0


@pytest.mark.parametrize("fusion", FUSIONS.available())
def test_fusion_output_ignores_padding(fusion):
    torch.manual_seed(0)
    config = model_config(vision_encoder="resnet", audio_encoder="resnet1d", fusion_type=fusion, **TINY)
    layer = FusionFactory.create_fusion(fusion, 24, 40, config).eval()
    v, a = torch.randn(2, 9, 24), torch.randn(2, 18, 40)  # video 25 Hz, audio 50 Hz
    v_len, a_len = torch.tensor([9, 6]), torch.tensor([18, 12])
    # the layer's rate: the slower stream's (25 Hz), or the kept stream's for residual (audio, 50 Hz)
    rate = layer.output_rate(25.0, 50.0)
    want = (v_len if rate == 25.0 else a_len).tolist()
    out, lengths = layer((v, v_len, 25.0), (a, a_len, 50.0))
    assert rate == (50.0 if fusion == "residual" else 25.0)
    assert out.shape == (2, want[0], 16) and lengths.tolist() == want
    assert out[1, want[1]:].abs().sum() == 0
    # more padding with garbage in it, and a different batch-mate: valid outputs unchanged
    v2 = torch.cat([v, 100 * torch.randn(2, 5, 24)], 1)
    a2 = torch.cat([a, 100 * torch.randn(2, 10, 40)], 1)
    v2[1, 6:] = 50.0
    a2[1, 12:] = -50.0
    out2, lengths2 = layer((v2, v_len, 25.0), (a2, a_len, 50.0))
    assert lengths2.tolist() == want
    torch.testing.assert_close(out2[0, : want[0]], out[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out2[1, : want[1]], out[1, : want[1]], rtol=1e-5, atol=1e-5)
    alone, _ = layer((v[1:, :6], v_len[1:], 25.0), (a[1:, :12], a_len[1:], 50.0))
    torch.testing.assert_close(alone[0], out[1, : want[1]], rtol=1e-5, atol=1e-5)


def test_resample_stream_rates_and_lengths():
    # small integers, their halves and sums: exact in float32 on any processor (no rounding)
    x = torch.arange(12.0).view(1, 12, 1).repeat(2, 1, 1)
    lengths = torch.tensor([12, 7])
    down, down_len = resample_stream(x, lengths, 50.0, 25.0)
    assert down_len.tolist() == [6, 4]
    assert down[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5, 8.5, 10.5]
    assert down[1, 3, 0].item() == 6.0  # partial window: only the valid frame 6
    same, same_len = resample_stream(x, lengths, 25.0, 25.0)
    assert same is x and same_len is lengths
    up, up_len = resample_stream(x[:, :6], torch.tensor([6, 3]), 25.0, 50.0)
    assert up_len.tolist() == [12, 6]
    assert up[0, :4, 0].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert up[1, 5, 0].item() == 2.0 and up[1, 6:].abs().sum() == 0  # clamped to the valid range
    odd, odd_len = resample_stream(x, lengths, 30.0, 25.0)
    assert odd_len.tolist() == [10, 5]
    assert odd[0, 1, 0].item() == pytest.approx(1.2)


def test_auto_projection_modes_and_legacy_keys():
    x = torch.randn(2, 5, 8)
    ident = AutoProjection(8, 8)
    assert ident(x) is x and not list(ident.parameters())
    lin = AutoProjection(8, 4)
    assert set(lin.state_dict()) == {"weight", "bias"} and lin(x).shape == (2, 5, 4)
    mlp = AutoProjection(8, 4, mode="mlp")
    assert set(mlp.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    with pytest.raises(ValueError, match="'linear' or 'mlp'"):
        AutoProjection(8, 4, mode="conv")


def test_registries_and_factories():
    assert set(MODEL_REGISTRY) == {"vision_encoder", "audio_encoder", "encoder", "decoder", "fusion"}
    assert VISION_ENCODERS.choices()[:4] == ["resnet", "vit", "vivit", "clip-vit"]
    assert set(AUDIO_ENCODERS.choices()) == {"resnet1d", "whisper", "wavlm", "logmel"}
    assert set(DECODERS.choices()) == {"transformer", "llama", "whisper-decoder", "paraformer", "llm"}
    assert DECODERS.canonical("llm") == "llama"
    # static facts live on the classes; the CLI, the model and the tests read them there
    assert VISION_ENCODERS.resolve_class("resnet").frame_rate == 25.0
    assert AUDIO_ENCODERS.resolve_class("whisper").frame_rate == 50.0
    assert AUDIO_ENCODERS.resolve_class("whisper").default_model_name == "openai/whisper-base"
    config = model_config(**TINY)
    front = FrontendFactory.create_vision_encoder("resnet", config)
    assert front.output_dim == 8 * TINY["resnet_width"] and front.frame_rate == type(front).frame_rate == 25.0
    assert type(DecoderFactory.create_decoder("transformer", config)).__name__ == "TransformerDecoder"
    assert type(DecoderFactory.create_decoder("paraformer", config)).__name__ == "ParaformerDecoder"
    with pytest.raises(ValueError, match=r"unknown vision encoder 'resnet50' for --vision-encoder; registered: resnet, vit"):
        FrontendFactory.create_vision_encoder("resnet50", config)
    assert DECODERS.available() == ["transformer", "llama", "whisper-decoder", "paraformer"]
    from espnet.nets.pytorch_backend.frontend.hf_base import PretrainedModelNotFound

    no_transformer = {k: v for k, v in TINY.items() if k not in ("dunits", "dlayers")}  # its options only
    for name, what in (("whisper-decoder", "Whisper"), ("llm", "LLaMA")):
        missing = model_config(**no_transformer, decoder=name, decoder_model_name="/nonexistent/model")
        with pytest.raises(PretrainedModelNotFound, match=rf"cannot load the {what} decoder '/nonexistent/model'"):
            DecoderFactory.create_decoder(name, missing)


def test_model_config_validation_and_modality():
    with pytest.raises(ValueError, match="needs a vision encoder, an audio encoder, or both"):
        ModelConfig(vision_encoder=None, audio_encoder=None)
    assert ModelConfig.from_dict({"modality": "audio"}).audio_encoder == "resnet1d"
    av = ModelConfig(vision_encoder="resnet", audio_encoder="resnet1d")
    assert av.modality == "audiovisual" and av.fusion_type == "concat"
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"colour": "red"})


def test_model_config_holds_the_chosen_components_options():
    config = ModelConfig(vision_encoder="vit", audio_encoder="resnet1d", fusion_type="gated",
                         vision_encoder_conf={"pool": "mean"}, audio_encoder_conf={"width": 8})
    # every option of each chosen component, defaults filled in; nothing of other components
    assert config.vision_encoder_conf == {"model_name": None, "unfreeze": False, "pool": "mean"}
    assert config.audio_encoder_conf == {"width": 8}
    assert config.decoder_conf == {"dunits": 3072, "dlayers": 6} and config.fusion_conf == {}
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"vision encoder resnet has no option pool \(its options: width, downsample\)"):
        ModelConfig(vision_encoder="resnet", vision_encoder_conf={"pool": "mean"})
    with pytest.raises(ValueError, match="vision encoder vit: pool must be one of cls, mean, got 'pooled'"):
        ModelConfig(vision_encoder="vit", vision_encoder_conf={"pool": "pooled"})
    with pytest.raises(ValueError, match="audio_encoder_conf is set but the model has no audio encoder"):
        ModelConfig(vision_encoder="resnet", audio_encoder_conf={"width": 8})
    with pytest.raises(ValueError, match="--fusion-type gated applies to audio-visual models only"):
        ModelConfig(vision_encoder="resnet", fusion_type="gated")


def _bottleneck_streams(layers, v, a, mask):
    """The vision and audio frames of a bottleneck fusion after its last layer."""
    from espnet.nets.pytorch_backend.fusion.bottleneck_fusion import BottleneckFusion

    torch.manual_seed(0)
    fusion = BottleneckFusion(24, 40, 16, num_tokens=3, num_layers=layers, heads=2, linear_units=32).eval()
    seen = {}
    fusion.norm_vision.register_forward_hook(lambda m, args, out: seen.__setitem__("v", args[0]))
    fusion.norm_audio.register_forward_hook(lambda m, args, out: seen.__setitem__("a", args[0]))
    out = fusion(v, a, mask)
    return out, seen["v"], seen["a"]


def test_bottleneck_fusion_exchanges_only_through_its_tokens():
    """One layer: each stream sees only itself and the learned tokens, so neither stream
    depends on the other yet; from the second layer on, the averaged tokens carry the other
    stream's information into both."""
    torch.manual_seed(1)
    v, a, a_other = torch.randn(2, 9, 24), torch.randn(2, 9, 40), torch.randn(2, 9, 40)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    out1, v1, a1 = _bottleneck_streams(1, v, a, mask)
    out1b, v1b, a1b = _bottleneck_streams(1, v, a_other, mask)
    assert out1.shape == (2, 9, 16) and out1[1, 6:].abs().sum() == 0
    # the vision stream ignores the audio after one layer: the same computation on the same
    # inputs, so bit for bit (a tolerance would let a small leak of audio through)
    assert torch.equal(v1, v1b)
    assert not torch.allclose(out1, out1b)  # the per-frame output combines both streams
    _, v2, _ = _bottleneck_streams(2, v, a, mask)
    _, v2b, _ = _bottleneck_streams(2, v, a_other, mask)
    assert (v2[:, :6] - v2b[:, :6]).abs().min() > 0  # every valid vision frame now hears the audio
    fusion = FusionFactory.create_fusion("bottleneck", 24, 40, model_config(
        vision_encoder="resnet", audio_encoder="resnet1d", fusion_type="bottleneck", bottleneck_tokens=5,
        bottleneck_layers=3, **TINY)).layer
    assert tuple(fusion.bottleneck.shape) == (5, 16) and len(fusion.vision_layers) == len(fusion.audio_layers) == 3
    with pytest.raises(ValueError, match="fusion bottleneck: num_layers must be >= 1, got 0"):
        ModelConfig(vision_encoder="resnet", audio_encoder="resnet1d", fusion_type="bottleneck",
                    fusion_conf={"num_layers": 0})


def test_residual_fusion_starts_as_the_kept_stream():
    """The gate starts closed: the output is the kept stream (identity when its size is the
    model size), and training opens the gate (the gate and the other stream's projection get
    gradients)."""
    from espnet.nets.pytorch_backend.fusion.residual_fusion import ResidualFusion

    torch.manual_seed(0)
    v, a = torch.randn(2, 9, 24), torch.randn(2, 9, 16)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    fusion = ResidualFusion(24, 16, 16)
    out = fusion(v, a, mask)
    assert torch.equal(out, a.masked_fill(~mask.unsqueeze(-1), 0.0))  # a closed gate adds exact zeros
    out.pow(2).sum().backward()
    assert float(fusion.alpha.grad.abs().sum()) > 0 and fusion.proj_other.weight.grad is not None
    vision_kept = ResidualFusion(24, 16, 16, keep="vision")
    assert vision_kept.proj_kept.mode == "linear"  # 24 -> 16: projected
    with torch.no_grad():
        expected = vision_kept.proj_kept(v).masked_fill(~mask.unsqueeze(-1), 0.0)
        torch.testing.assert_close(vision_kept(v, a, mask), expected, rtol=1e-5, atol=1e-8)
    config = model_config(vision_encoder="resnet", audio_encoder="resnet1d", fusion_type="residual",
                          residual_keep="vision", **TINY)
    assert config.fusion_conf == {"keep": "vision"}
