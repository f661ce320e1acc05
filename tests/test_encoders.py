"""The encoder family (``--encoder``): its components train and decode, the Conformer's flags
are its options, configs saved before the family existed load as the same model, and the
family list of the CLI is the registry's."""

import argparse
import os

import pytest
import torch

from espnet.asr.recognizer import DecodeOptions, encode_utterances, recognize, recognize_batch
from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.encoder.identity_encoder import IdentityEncoder
from espnet.nets.pytorch_backend.model_config import CONFIG_VERSION, ModelConfig, families, migrate_config
from espnet.nets.pytorch_backend.registry import ENCODERS, MODEL_REGISTRY, ComponentSpec, Registry
from espnet.training.checkpoints import load_checkpoint, load_state_checked
from espnet.training.cli_args import add_model_args, name_fields, resolve_model_config
from flag_config import model_config

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TINY_AUDIO = dict(odim=12, audio_encoder="resnet1d", resnet_width=4, adim=16, aheads=2, dunits=32, dlayers=1,
                  dropout_rate=0.0)


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    return parser.parse_args(list(argv))


def _utterances(seed=0):
    """Two waveforms of 10 and 7 frames (640 samples each) and their targets (padded with -1)."""
    g = torch.Generator().manual_seed(seed)
    waves = [torch.randn(6400, 1, generator=g), torch.randn(4480, 1, generator=g)]
    audio = torch.zeros(2, 6400, 1)
    audio[0], audio[1, :4480] = waves
    targets = torch.tensor([[3, 5, 7, 2], [4, 6, -1, -1]])
    return {"audio": audio, "audio_lengths": torch.tensor([6400, 4480])}, targets, waves


@pytest.mark.parametrize("encoder,extra,params", [
    ("none", {}, 0),
    ("transformer", {"eunits": 24, "elayers": 2}, 2 * (4 * (16 * 16 + 16) + 16 * 24 + 24 + 24 * 16 + 16 + 4 * 16) + 32),
])
def test_encoder_trains_one_step_and_decodes(encoder, extra, params):
    torch.manual_seed(0)
    model = E2E(model_config(encoder=encoder, **TINY_AUDIO, **extra))
    assert model.config.encoder == encoder and model.config.encoder_conf == {
        "none": {}, "transformer": {"linear_units": 24, "num_blocks": 2}}[encoder]
    assert sum(p.numel() for p in model.encoder.parameters()) == params
    inputs, targets, waves = _utterances()
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    loss, loss_ctc, loss_att, _ = model(inputs, targets)
    assert torch.isfinite(loss) and float(loss_ctc.detach()) > 0 and float(loss_att.detach()) > 0
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"frontend", "proj_encoder", "decoder", "ctc"} <= changed
    assert ("encoder" in changed) == (params > 0)
    model.eval()
    items = [{"audio": w} for w in waves]
    with torch.no_grad():
        enc, enc_lengths = encode_utterances(model, items)
        alone, _ = model.encode({"audio": waves[1].unsqueeze(0), "audio_lengths": torch.tensor([4480])})
    assert tuple(enc.shape) == (2, 10, 16) and enc_lengths.tolist() == [10, 7]
    assert torch.allclose(enc[1, :7], alone[0], atol=1e-5)  # the batch's padding changes nothing
    options = DecodeOptions(beam_size=2, ctc_weight=0.3)
    batched = recognize_batch(model, items, options)
    for hyp, item in zip(batched, items):
        assert hyp.token_ids == recognize(model, item, options).token_ids
        assert all(1 <= t < 11 for t in hyp.token_ids)


def test_encoder_none_is_the_identity_and_elayers_0_spells_it(capsys):
    config = resolve_model_config(parse("--audio-encoder", "resnet1d", "--elayers", "0", "--adim", "16", "--aheads",
                                        "2", "--dunits", "32", "--dlayers", "1", "--resnet-width", "4"), 12)
    assert (config.encoder, config.encoder_conf) == ("none", {})
    model = E2E(config).eval()
    assert isinstance(model.encoder, IdentityEncoder) and not any(k.startswith("encoder.") for k in model.state_dict())
    inputs, _, _ = _utterances()
    with torch.no_grad():
        assert torch.equal(model.encode(inputs)[0], model.fuse_frontends(inputs)[0])
    assert resolve_model_config(parse("--elayers", "0"), 12, config.to_dict()).encoder == "none"
    # the old spelling came with the Conformer's other flags, which had no effect: still accepted, with a note
    old = resolve_model_config(parse("--audio-encoder", "resnet1d", "--elayers", "0", "--eunits", "64",
                                     "--mask-conv-padding"), 12)
    assert (old.encoder, old.encoder_conf) == ("none", {})
    err = capsys.readouterr().err
    assert "note: --eunits has no effect with --elayers 0 (= --encoder none, no encoder layers)" in err
    assert "note: --mask-conv-padding has no effect" in err
    with pytest.raises(ValueError, match="--elayers 0 \\(no encoder layers\\) contradicts --encoder transformer"):
        resolve_model_config(parse("--audio-encoder", "resnet1d", "--encoder", "transformer", "--elayers", "0"), 12)


@pytest.mark.parametrize("argv,message", [
    (["--encoder", "none", "--eunits", "64"],
     "--eunits does not apply to this model (audio encoder resnet1d, encoder none, decoder transformer): it is an "
     "option of encoder conformer, encoder transformer, fusion bottleneck"),
    (["--encoder", "transformer", "--mask-conv-padding"], "it is an option of encoder conformer"),
    (["--encoder", "transformer", "--cnn-module-kernel", "15"], "--cnn-module-kernel does not apply"),
    (["--elayers", "-1"], "--elayers (conformer): num_blocks must be >= 1, got -1"),
])
def test_encoder_flags_that_do_not_apply_are_errors(argv, message):
    with pytest.raises(ValueError) as err:
        resolve_model_config(parse("--audio-encoder", "resnet1d", *argv), 12)
    assert message in str(err.value)


def test_conformer_size_flags_are_its_options():
    config = resolve_model_config(parse("--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--fusion-type",
                                        "bottleneck", "--eunits", "24", "--elayers", "2", "--cnn-module-kernel", "7",
                                        "--mask-conv-padding", "--adim", "16", "--aheads", "2"), 12)
    assert (config.encoder, config.encoder_conf) == ("conformer", {"linear_units": 24, "num_blocks": 2,
                                                                   "cnn_module_kernel": 7, "mask_conv_padding": True})
    assert config.fusion_conf["linear_units"] == 24  # one flag, both components (as eunits before)
    encoder = E2E(config).encoder
    assert len(encoder.encoders) == 2 and encoder.encoders[0].conv_module.depthwise_conv.kernel_size == (7,)
    assert encoder.encoders[0].feed_forward.w_1.out_features == 24 and encoder.encoders[0].conv_module.mask_padding
    with pytest.raises(ValueError, match="--cnn-module-kernel must be odd, got 8"):
        E2E(model_config(odim=12, audio_encoder="resnet1d", resnet_width=4, adim=16, aheads=2, cnn_module_kernel=8))


def test_config_of_the_previous_layout_gives_the_same_model():
    """conf_av.ckpt (written by main 6f72fe5, Conformer sizes as top-level fields, see
    tests/data/README.md) maps to encoder options, loads by key and decodes as it did."""
    from espnet.asr.recognizer import build_beam_search

    state, stored, _ = load_checkpoint(os.path.join(DATA, "conf_av.ckpt"))
    assert "elayers" in stored and "encoder" not in stored and "config_version" not in stored  # the old layout
    config = ModelConfig.from_dict(stored)
    assert (config.encoder, config.encoder_conf) == ("conformer", {"linear_units": 24, "num_blocks": 2,
                                                                   "cnn_module_kernel": 7, "mask_conv_padding": True})
    assert config.fusion_conf == {"num_tokens": 2, "num_layers": 1, "linear_units": 24}
    assert (config.adim, config.aheads, config.decoder_conf) == (16, 2, {"dunits": 24, "dlayers": 1})
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert stored["eunits"] == 24 and "linear_units" not in stored["fusion_conf"]  # the input is not modified
    model = E2E(config)
    load_state_checked(model, state, "conf_av.ckpt")
    model.eval()
    inputs = torch.load(os.path.join(DATA, "flat_reference.pt"), weights_only=True)
    reference = torch.load(os.path.join(DATA, "conf_av_reference.pt"), weights_only=True)
    with torch.no_grad():
        enc, enc_len = model.encode({k: inputs[k] for k in ("video", "video_lengths", "audio", "audio_lengths")})
        assert torch.equal(enc_len, reference["encoder_lengths"])
        assert torch.allclose(enc, reference["encoder_out"], rtol=0, atol=1e-5)
        search = build_beam_search(model, beam_size=3, ctc_weight=0.3)
        hyps = [search(enc[i, : int(enc_len[i])])[0] for i in range(2)]
    assert [h.yseq.tolist() for h in hyps] == reference["beam3_ids"]
    assert torch.allclose(torch.tensor([h.score for h in hyps]), reference["beam3_scores"], rtol=0, atol=1e-4)


def test_flat_configs_map_their_encoder_fields():
    import json

    with open(os.path.join(DATA, "flat_video.json")) as handle:
        flat = json.load(handle)["model_config"]
    config = ModelConfig.from_dict(flat)
    assert (config.encoder, config.encoder_conf) == ("conformer", {"linear_units": 64, "num_blocks": 1,
                                                                   "cnn_module_kernel": 31, "mask_conv_padding": False})
    state, _, _ = load_checkpoint(os.path.join(DATA, "flat_video.pth"))
    assert set(E2E(config).state_dict()) == set(state)  # the Conformer's keys did not change
    no_conformer = ModelConfig.from_dict({**flat, "elayers": 0, "eunits": 99})
    assert (no_conformer.encoder, no_conformer.encoder_conf) == ("none", {})
    assert ModelConfig.from_dict({"modality": "audio", "elayers": 0}).encoder == "none"


def test_config_version():
    config = ModelConfig(vision_encoder="resnet", encoder="transformer")
    stored = config.to_dict()
    assert stored["config_version"] == CONFIG_VERSION == 3 and "elayers" not in stored
    assert migrate_config(stored) == {k: v for k, v in stored.items() if k != "config_version"}
    with pytest.raises(ValueError, match="model config version 4 is not one this code reads \\(0 to 3"):
        ModelConfig.from_dict({**stored, "config_version": 4})
    with pytest.raises(ValueError, match="unknown model config keys: elayers"):  # the current layout has no such field
        ModelConfig.from_dict({**stored, "elayers": 2})


class _TinyEncoder(IdentityEncoder):
    options = (Option("depth", 1, "Depth of the test encoder.", flag="--tiny-test-depth"),)


def test_the_cli_families_are_the_registrys(monkeypatch):
    assert name_fields() == tuple(r.name_field for r in MODEL_REGISTRY.values()) == tuple(k for k, _, _ in families())
    # a component added to the registry is a choice of its family's flag, with its option flag
    monkeypatch.setitem(ENCODERS._specs, "tiny-test", ComponentSpec("tiny-test", f"{__name__}:_TinyEncoder"))
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    assert "tiny-test" in actions["--encoder"].choices and "--tiny-test-depth" in actions
    config = resolve_model_config(parser.parse_args(["--audio-encoder", "resnet1d", "--encoder", "tiny-test",
                                                     "--tiny-test-depth", "3"]), 12)
    assert (config.encoder, config.encoder_conf) == ("tiny-test", {"depth": 3})
    # a family added to the registry gets its flag, with its components as choices
    extra = Registry("test family", "--test-family", "test", "test_family", help="A family of the test.")
    extra.add("only", f"{__name__}:_TinyEncoder")
    monkeypatch.setitem(MODEL_REGISTRY, "test_family", extra)
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    assert actions["--test-family"].choices == ["only"] and actions["--test-family"].help == "A family of the test."
    assert "test_family" in name_fields()
    # ... and the model config must have its fields
    from espnet.nets.pytorch_backend.model_config import _check_families

    with pytest.raises(TypeError, match="registry family 'test_family' needs the ModelConfig field\\(s\\) test_family, "
                                        "test_family_conf"):
        _check_families()
