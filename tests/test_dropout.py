"""The project's Dropout: on the CPU in training a 16-bit mask from 64-bit draws; elsewhere
``torch.nn.Dropout``."""

import pytest
import torch

from espnet.nets.pytorch_backend.dropout import Dropout
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from flag_config import model_config


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_training_mask_drops_the_share_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.full((64, 50, 40), 2.0, requires_grad=True)  # 128,000 elements
    y = Dropout(p)(x)
    kept = y != 0
    dropped_share = 1.0 - kept.float().mean().item()
    assert abs(dropped_share - p) < 0.006  # about 4 standard deviations
    scale = 65536 / (65536 - round(p * 65536))
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 * scale))
    y.sum().backward()  # the gradient is the same mask and scale
    torch.testing.assert_close(x.grad, kept.float() * scale)


def test_mask_is_seeded_and_differs_between_calls():
    drop = Dropout(0.3)
    x = torch.ones(3, 7, 11)  # a size that is not a multiple of four
    torch.manual_seed(5)
    first, second = drop(x), drop(x)
    torch.manual_seed(5)
    assert torch.equal(drop(x), first) and not torch.equal(first, second)


def test_mask_covers_every_element_position_evenly():
    """Each of the four 16-bit parts of a 64-bit draw is used: every position mod 4 drops its share."""
    torch.manual_seed(1)
    kept = Dropout(0.5)(torch.ones(400_000)) != 0
    for part in range(4):
        assert abs(kept[part::4].float().mean().item() - 0.5) < 0.01


def test_evaluation_zero_and_bf16():
    x = torch.randn(4, 9)
    drop = Dropout(0.2).eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))  # torch.nn.Dropout's own p = 1
    torch.manual_seed(2)
    y = Dropout(0.1)(x.bfloat16())
    kept = y != 0
    assert y.dtype == torch.bfloat16 and y.shape == x.shape and kept.any()
    # kept elements: x times the scale rounded once to bf16 (no bf16-rounded scale)
    expected = (x.bfloat16().float() * (65536 / (65536 - 6554))).bfloat16()
    assert torch.equal(y[kept], expected[kept])


def test_the_models_dropout_modules_are_this_one():
    model = E2E(model_config(odim=10, adim=16, aheads=2, eunits=32, elayers=1, dunits=32, dlayers=1))
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(isinstance(m, Dropout) for m in drops)
