"""Checkpoints written before components declared their own options (flat ModelConfig, main
9b712e9, see tests/data/README.md) and configs of older layouts still load and decode
identically: the same token ids, and encoder outputs and scores within float32 rounding of
the stored reference (it was computed on another processor, whose kernels round differently;
see docs/reproducibility.md)."""

import os

import pytest
import torch

from espnet.asr.recognizer import build_beam_search
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.training.checkpoints import load_checkpoint

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def reference():
    return torch.load(os.path.join(DATA, "flat_reference.pt"), weights_only=True)


@pytest.mark.parametrize("name,path", [("flat_video", "flat_video.pth"), ("flat_av", "flat_av.ckpt")])
def test_flat_config_checkpoints_load_and_decode_identically(name, path, reference):
    from espnet.training.checkpoints import load_state_checked

    state, stored, _ = load_checkpoint(os.path.join(DATA, path))
    assert "resnet_width" in stored and "vision_encoder_conf" not in stored  # really the old layout
    config = ModelConfig.from_dict(stored)
    assert config.vision_encoder_conf == {"width": 8, "downsample": 1} and config.decoder_conf == {"dunits": 64, "dlayers": 1}
    if name == "flat_av":
        assert (config.fusion_type, config.audio_encoder_conf) == ("gated", {"width": 8})
    else:  # a single-stream model's stored fusion_type 'concat' was never used
        assert config.fusion_type is None and config.audio_encoder_conf == {}
    model = E2E(config)
    load_state_checked(model, state, path)
    model.eval()
    keys = ["video", "audio"] if name == "flat_av" else ["video"]
    inputs = {k: reference[k] for key in keys for k in (key, f"{key}_lengths")}
    with torch.no_grad():
        enc, enc_len = model.encode(inputs)
        assert torch.equal(enc_len, reference[f"{name}_encoder_lengths"])
        # float32 through a ResNet and one Conformer block: other processors differ by ~1e-6
        torch.testing.assert_close(enc, reference[f"{name}_encoder_out"], rtol=1e-5, atol=1e-5)
        search = build_beam_search(model, beam_size=5, ctc_weight=0.3)
        hyps = [search(enc[i, : int(enc_len[i])])[0] for i in range(2)]
    assert [h.yseq.tolist() for h in hyps] == reference[f"{name}_beam5_ids"]
    # sums of ~20 log-probabilities of about -40: other processors differ by ~4e-6
    torch.testing.assert_close(torch.tensor([h.score for h in hyps]), reference[f"{name}_beam5_scores"],
                               rtol=1e-5, atol=1e-5)


def test_older_flat_layouts_map_to_component_options():
    """The fields of the flat layouts (incl. names from before the pretrained-checkpoint work:
    whisper_pad_30s, decoder_dtype) go to the chosen components; unused ones had no effect."""
    old = {"odim": 30, "vision_encoder": "vit", "audio_encoder": "whisper", "decoder": "llama",
           "fusion_type": "attention", "vision_model_name": "/m/vit", "audio_model_name": "/m/whisper",
           "decoder_model_name": "/m/llama", "unfreeze_vision": True, "unfreeze_audio": False, "vision_pool": None,
           "whisper_pad_30s": True, "wavlm_layer_weights": False, "projection": "linear", "resnet_width": 16,
           "adim": 32, "aheads": 2, "eunits": 64, "elayers": 1, "dunits": 64, "dlayers": 1, "llm_prompt": "Say it.",
           "llm_downsample": 2, "decoder_dtype": "bfloat16", "use_qlora": False}
    config = ModelConfig.from_dict(old)
    assert config.vision_encoder_conf == {"model_name": "/m/vit", "unfreeze": True, "pool": "cls"}
    assert config.audio_encoder_conf == {"model_name": "/m/whisper", "unfreeze": False, "pad_seconds": 30.0}
    assert config.decoder_conf == {"model_name": "/m/llama", "prompt": "Say it.", "downsample": 2}
    assert (config.fusion_type, config.pretrained_dtype) == ("attention", "bfloat16")
    assert config.model_names() == {"vision_encoder": "/m/vit", "audio_encoder": "/m/whisper", "decoder": "/m/llama"}
