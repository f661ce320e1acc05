"""Model flags: encoder selection, deprecated --modality, contradictions, legacy inference."""

import argparse

import pytest

from espnet.training.cli_args import add_model_args, infer_legacy_modality, resolve_model_config


def parse(*argv):
    p = argparse.ArgumentParser()
    add_model_args(p)
    return p.parse_args(list(argv))


def test_encoder_flags_choose_the_modality():
    assert resolve_model_config(parse("--vision-encoder", "resnet"), 10).modality == "video"
    assert resolve_model_config(parse("--audio-encoder", "resnet1d"), 10).modality == "audio"
    config = resolve_model_config(parse("--vision-encoder", "resnet", "--audio-encoder", "resnet1d",
                                        "--fusion-type", "gated", "--decoder", "transformer", "--adim", "32"), 10)
    assert (config.modality, config.fusion_type, config.adim, config.odim) == ("audiovisual", "gated", 32, 10)


def test_deprecated_modality_maps_to_legacy_components(capsys):
    config = resolve_model_config(parse("--modality", "audio"), 10)
    assert (config.vision_encoder, config.audio_encoder, config.decoder) == (None, "resnet1d", "transformer")
    assert "--modality is deprecated; --modality audio means --audio-encoder resnet1d --decoder transformer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--modality video contradicts --audio-encoder resnet1d"):
        resolve_model_config(parse("--modality", "video", "--audio-encoder", "resnet1d"), 10)


def test_flags_checked_against_stored_config():
    stored = resolve_model_config(parse("--vision-encoder", "resnet", "--audio-encoder", "resnet1d"), 10).to_dict()
    assert resolve_model_config(parse(), 10, stored).fusion_type == "concat"
    with pytest.raises(ValueError, match="--fusion-type gated contradicts the checkpoint, which was trained with fusion_type=concat"):
        resolve_model_config(parse("--fusion-type", "gated"), 10, stored)
    with pytest.raises(ValueError, match="--modality video contradicts the checkpoint, which is a audiovisual model"):
        resolve_model_config(parse("--modality", "video"), 10, stored)
    with pytest.raises(ValueError, match="the tokenizer has 11 tokens but the checkpoint model has odim 10"):
        resolve_model_config(parse(), 11, stored)


def test_legacy_weights_without_flags_use_their_modality():
    assert infer_legacy_modality(["frontend.frontend3D.0.weight", "encoder.x"]) == "video"
    assert infer_legacy_modality(["frontend.trunk.conv1.weight"]) == "audio"
    config = resolve_model_config(parse(), 5049, state_keys=["frontend.trunk.conv1.weight"])
    assert config.audio_encoder == "resnet1d" and config.vision_encoder is None
    with pytest.raises(ValueError, match="choose the input: --vision-encoder and/or --audio-encoder"):
        resolve_model_config(parse(), 10)


def test_registry_choices_in_argparse(capsys):
    with pytest.raises(SystemExit):
        parse("--vision-encoder", "resnet50")
    err = capsys.readouterr().err
    assert "invalid choice: 'resnet50'" in err and "'vit'" in err and "'clip-vit'" in err
    assert parse("--decoder", "llm").decoder == "llm"


def test_bottleneck_fusion_flags():
    av = ("--vision-encoder", "resnet", "--audio-encoder", "resnet1d")
    config = resolve_model_config(parse(*av, "--fusion-type", "bottleneck", "--bottleneck-tokens", "8",
                                        "--bottleneck-layers", "3"), 10)
    assert (config.fusion_type, config.bottleneck_tokens, config.bottleneck_layers) == ("bottleneck", 8, 3)
    with pytest.raises(ValueError, match="--bottleneck-tokens only apply to an audio-visual model with "
                                         "--fusion-type bottleneck"):
        resolve_model_config(parse(*av, "--fusion-type", "gated", "--bottleneck-tokens", "8"), 10)
