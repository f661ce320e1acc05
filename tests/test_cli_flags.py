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


@pytest.mark.parametrize("argv,message", [
    (["--vision-encoder", "resnet", "--fusion-type", "gated"], "--fusion-type gated applies to audio-visual models only"),
    (["--vision-encoder", "resnet", "--vision-pool", "mean"],
     "--vision-pool does not apply to this model (vision encoder resnet, decoder transformer): it is an option of "
     "vision encoder vit, vision encoder clip-vit"),
    (["--audio-encoder", "resnet1d", "--whisper-pad-seconds", "5"], "it is an option of audio encoder whisper"),
    (["--audio-encoder", "resnet1d", "--whisper-pad-30s"], "--whisper-pad-seconds does not apply"),
    (["--vision-encoder", "resnet", "--llm-prompt", "Say it."], "--llm-prompt does not apply"),
    (["--vision-encoder", "resnet", "--llm-downsample", "2"], "it is an option of decoder llama"),
    (["--audio-encoder", "whisper", "--wavlm-layer-weights"], "it is an option of audio encoder wavlm"),
    (["--vision-encoder", "resnet", "--unfreeze-vision"],
     "it is an option of vision encoder vit, vision encoder vivit, vision encoder clip-vit"),
    (["--audio-encoder", "resnet1d", "--unfreeze-audio"], "--unfreeze-audio does not apply"),
    (["--vision-encoder", "resnet", "--decoder", "llama", "--dlayers", "2"], "it is an option of decoder transformer"),
    (["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--projection", "mlp"],
     "--projection applies to single-stream models"),
    (["--vision-encoder", "vit", "--vision-pool", "pooled"], "--vision-pool (vit): pool must be one of cls, mean"),
])
def test_flags_that_do_not_apply_are_errors(argv, message):
    with pytest.raises(ValueError) as err:
        resolve_model_config(parse(*argv), 10)
    assert message in str(err.value)


def test_option_flags_reach_the_chosen_components():
    config = resolve_model_config(parse("--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--resnet-width", "8",
                                        "--dlayers", "2"), 10)
    assert config.audio_encoder_conf == {"width": 8}  # one flag, both ResNets
    assert config.vision_encoder_conf == {"width": 8, "downsample": 1}
    assert config.decoder_conf == {"dunits": 3072, "dlayers": 2}
    config = resolve_model_config(parse("--audio-encoder", "whisper", "--whisper-pad-30s", "--audio-model-name", "/m/w",
                                        "--decoder", "whisper-decoder"), None)
    assert config.audio_encoder_conf == {"model_name": "/m/w", "unfreeze": False, "pad_seconds": 30.0}
    assert config.decoder_conf == {"model_name": None}


def test_option_flags_checked_against_a_checkpoint(capsys):
    stored = resolve_model_config(parse("--vision-encoder", "vit", "--vision-model-name", "/old/vit"), 10).to_dict()
    with pytest.raises(ValueError, match="--vision-pool mean contradicts the checkpoint, which was trained with "
                                         "--vision-pool cls"):
        resolve_model_config(parse("--vision-pool", "mean"), 10, stored)
    with pytest.raises(ValueError, match="--resnet-width does not apply to the checkpoint's model"):
        resolve_model_config(parse("--resnet-width", "8"), 10, stored)
    moved = resolve_model_config(parse("--vision-model-name", "/new/vit"), 10, stored)  # a moved model: allowed
    assert moved.vision_encoder_conf["model_name"] == "/new/vit"
    assert "note: --vision-model-name /new/vit replaces the checkpoint's /old/vit" in capsys.readouterr().err


def test_bottleneck_fusion_flags():
    av = ("--vision-encoder", "resnet", "--audio-encoder", "resnet1d")
    config = resolve_model_config(parse(*av, "--fusion-type", "bottleneck", "--bottleneck-tokens", "8",
                                        "--bottleneck-layers", "3"), 10)
    # its feed-forward size is its own option now (--eunits, shared with the encoder)
    assert (config.fusion_type, config.fusion_conf) == ("bottleneck", {"num_tokens": 8, "num_layers": 3,
                                                                        "linear_units": 3072})
    with pytest.raises(ValueError, match="--bottleneck-tokens does not apply to this model .*: it is an option of "
                                         "fusion bottleneck"):
        resolve_model_config(parse(*av, "--fusion-type", "gated", "--bottleneck-tokens", "8"), 10)
    with pytest.raises(ValueError, match=r"--bottleneck-tokens \(bottleneck\): num_tokens must be >= 1, got 0"):
        resolve_model_config(parse(*av, "--fusion-type", "bottleneck", "--bottleneck-tokens", "0"), 10)


@pytest.mark.parametrize("flag", ["--dist-timeout", "--signal-grace"])
@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_multi_process_time_limits_must_be_positive_seconds(capsys, flag, value):
    from espnet.training.train_cli import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["--root-dir", "data", "--train-file", "train.csv", "--audio-encoder", "resnet1d", flag, value])
    assert stop.value.code == 2
    assert f"{flag} must be a positive number of seconds, got {float(value):g}" in capsys.readouterr().err
