"""Building a model for a checkpoint without random initial weights (espnet/utils/skip_weight_init)."""

import torch

from espnet.utils.skip_weight_init import skip_weight_init


def test_initialisers_do_nothing_inside_and_are_restored_after():
    with skip_weight_init():
        layer = torch.nn.Linear(4, 3)
        layer.weight.data.fill_(7.0)
        torch.nn.init.kaiming_uniform_(layer.weight)
        assert torch.equal(layer.weight, torch.full((3, 4), 7.0))  # left as it was
    torch.manual_seed(0)
    torch.nn.init.kaiming_uniform_(layer.weight)
    # restored: uniform within the bound sqrt(2) * sqrt(3 / fan_in) = sqrt(1.5) (a = 0, fan_in 4)
    assert 0.0 < float(layer.weight.abs().max()) <= 1.5 ** 0.5 + 1e-6


def test_strictly_loaded_model_equals_the_initialised_one():
    """The legacy decoder's blocks built without init and then loaded strictly compute what the
    source model computes (positional tables, made in __init__, are unaffected)."""
    from espnet.nets.pytorch_backend.decoder.transformer_decoder import TransformerDecoder

    torch.manual_seed(0)
    source = TransformerDecoder(odim=11, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1).eval()
    with skip_weight_init():
        built = TransformerDecoder(odim=11, attention_dim=8, attention_heads=2, linear_units=16, num_blocks=1).eval()
    built.load_state_dict(source.state_dict(), strict=True)
    tgt = torch.tensor([[10, 3, 4]])
    mask = torch.tril(torch.ones(1, 3, 3, dtype=torch.bool))
    memory = torch.randn(1, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(built(tgt, mask, memory, None)[0], source(tgt, mask, memory, None)[0])
