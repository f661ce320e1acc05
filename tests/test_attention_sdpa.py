"""The attention layers' fused path (scaled_dot_product_attention, the relative-position
term as an additive bias) matches the step-by-step computation of the original Auto-AVSR:
outputs and gradients, with padding, a causal mask and an utterance of length 0."""

import copy

import pytest
import torch

from espnet.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
    set_sdpa,
)
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding


def both_paths(layer):
    """The layer twice, same weights: fused and step by step."""
    reference = copy.deepcopy(layer)
    assert set_sdpa(layer, True) == 1 and set_sdpa(reference, False) == 1
    return layer, reference


def run_with_grads(layer, inputs):
    inputs = [None if x is None else x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = layer(*inputs)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad(set_to_none=True)
    return out, [x.grad for x in inputs if x is not None and x.is_floating_point()], grads


def assert_same(fused, reference, inputs):
    out, in_grads, grads = run_with_grads(fused, inputs)
    ref_out, ref_in_grads, ref_grads = run_with_grads(reference, inputs)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    for g, r in zip(in_grads, ref_in_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    return out


def padding_mask(lengths, t):
    return (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(1)  # (B, 1, T)


@pytest.mark.parametrize("lengths", [[9, 9, 9], [9, 5, 0]])
def test_relative_position_attention_matches_the_reference(lengths):
    torch.manual_seed(0)
    fused, reference = both_paths(RelPositionMultiHeadedAttention(4, 32, 0.0).eval())
    x = torch.randn(3, 9, 32)
    _, pos_emb = RelPositionalEncoding(32, 0.0)(x)
    assert pos_emb.shape == (1, 17, 32)
    mask = padding_mask(lengths, 9)
    out = assert_same(fused, reference, [x, x, x, pos_emb, mask])
    if lengths[-1] == 0:  # no key to attend: the output projection's bias alone, on both paths
        torch.testing.assert_close(out[2], fused.linear_out.bias.expand(9, 32))
    assert_same(fused, reference, [x, x, x, pos_emb, None])


def test_plain_attention_matches_the_reference_with_padding_and_causal_masks():
    torch.manual_seed(1)
    fused, reference = both_paths(MultiHeadedAttention(4, 32, 0.1).eval())
    query, memory = torch.randn(3, 6, 32), torch.randn(3, 11, 32)
    memory_mask = padding_mask([11, 7, 0], 11)  # (B, 1, T2), one utterance without frames
    assert_same(fused, reference, [query, memory, memory, memory_mask])
    causal = torch.tril(torch.ones(6, 6, dtype=torch.bool))[None] & padding_mask([6, 4, 1], 6)  # (B, T1, T1)
    assert_same(fused, reference, [query, query, query, causal])
    assert_same(fused, reference, [query, memory, memory, None])


def test_dropout_on_the_attention_weights_only_in_training():
    torch.manual_seed(2)
    layer = MultiHeadedAttention(4, 32, 0.5)
    x = torch.randn(2, 7, 32)
    mask = padding_mask([7, 4], 7)
    layer.train()
    a, b = layer(x, x, x, mask), layer(x, x, x, mask)
    assert (a - b).abs().max() > 1e-3  # weights dropped at random
    layer.eval()
    torch.testing.assert_close(layer(x, x, x, mask), layer(x, x, x, mask))
