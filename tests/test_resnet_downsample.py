"""``--resnet-downsample``: the video ResNet average-pools its frames before the stem."""

import argparse

import pytest
import torch

from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.frontend.resnet import VideoResNet
from espnet.training.cli_args import add_model_args, resolve_model_config


@pytest.mark.parametrize("training", [False, True])
def test_downsampled_frontend_is_the_plain_one_on_pooled_frames(training):
    torch.manual_seed(0)
    pooled = VideoResNet(width=16, downsample=2)
    plain = VideoResNet(width=16)
    plain.load_state_dict(pooled.state_dict())
    pooled.train(training)
    plain.train(training)
    x = torch.randn(2, 5, 1, 88, 87)  # an odd width: the last column is dropped
    lengths = torch.tensor([5, 3])
    by_hand = x[..., :86].reshape(2, 5, 1, 44, 2, 43, 2).mean(dim=(4, 6))
    out, out_lengths = pooled(x, lengths)
    expected, _ = plain(by_hand, lengths)
    assert out.shape == (2, 5, 128) and torch.equal(out_lengths, lengths)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_frames_smaller_than_the_pooling_are_refused():
    with pytest.raises(ValueError, match=r"--resnet-downsample 8 is larger than the frames \(4x6\)"):
        VideoResNet(width=4, downsample=8)(torch.zeros(1, 2, 1, 4, 6), torch.tensor([2]))


def test_flag_reaches_the_frontend_and_is_checked():
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--vision-encoder", "resnet", "--resnet-width", "4", "--resnet-downsample", "2"])
    config = resolve_model_config(args, 10)
    assert config.vision_encoder_conf == {"width": 4, "downsample": 2}
    assert E2E(config).frontend.downsample == 2
    default = resolve_model_config(parser.parse_args(["--vision-encoder", "resnet"]), 10)
    assert default.vision_encoder_conf["downsample"] == 1
    with pytest.raises(ValueError, match=r"--resnet-downsample \(resnet\): downsample must be >= 1, got 0"):
        resolve_model_config(parser.parse_args(["--vision-encoder", "resnet", "--resnet-downsample", "0"]), 10)
