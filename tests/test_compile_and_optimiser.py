"""train.py --compile compiles the model's training forward (here with the eager backend:
Dynamo traces the model, no C++ compilation) and trains; the fused AdamW makes the same
update as PyTorch's default one; fp16 mixed precision keeps the unfused one (its gradient
scaler), bf16 mixed precision the fused one, clipped by the training module."""

import os
import types

import pytest
import torch

from espnet.training.scheduler import adamw_warmup_cosine, build_adamw


def test_train_with_compile_trains_and_checkpoints_plain_keys(capsys, toy_corpus, tmp_path):
    from bad_corpus import BadCorpus, train_args
    from espnet.training import train_cli

    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    exp = str(tmp_path / "exp")
    train = corpus.write("few.csv", corpus.lines["train"][:4])
    code = train_cli.main(train_args(corpus, exp, train, "--compile", "eager", "--average-last", "1",
                                     "--num-threads", "1"))
    assert code == 0
    assert "compiled: torch.compile(backend='eager') of the model's training forward" in capsys.readouterr().out
    state = torch.load(os.path.join(exp, "run", "model_avg_1.pth"), weights_only=True)
    assert state and not [k for k in state if "_orig_mod" in k]  # in-place compile: the usual keys


def test_compile_flag_values(capsys):
    from espnet.training.train_cli import parse_args

    base = ["--root-dir", "r", "--train-file", "t.csv"]
    assert parse_args(base).compile is None
    assert parse_args(base + ["--compile"]).compile == "inductor"
    with pytest.raises(SystemExit) as stop:
        parse_args(base + ["--compile", "no-such-backend"])
    assert stop.value.code == 2
    assert "--compile: unknown torch.compile backend 'no-such-backend' (one of: " in capsys.readouterr().err


def test_fused_adamw_makes_the_default_update():
    torch.manual_seed(0)
    weights = [torch.randn(7, 5), torch.randn(5)]
    fused_params = [torch.nn.Parameter(w.clone()) for w in weights]
    plain_params = [torch.nn.Parameter(w.clone()) for w in weights]
    fused, plain = build_adamw(fused_params, 1e-2, 0.03), build_adamw(plain_params, 1e-2, 0.03, fused=False)
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    assert fused.param_groups[0]["betas"] == (0.9, 0.98)
    for step in range(4):
        grads = [torch.randn_like(w) for w in weights]
        for params, opt in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for a, b, w in zip(fused_params, plain_params, weights):
        assert (a - w).abs().max() > 1e-3  # the weights moved
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision, fused", [("32-true", True), ("bf16-mixed", True), ("16-mixed", False)])
def test_the_recipe_optimiser_is_fused_except_with_fp16_scaling(precision, fused):
    trainer = types.SimpleNamespace(precision=precision, estimated_stepping_batches=10)
    (opt,), _ = adamw_warmup_cosine(torch.nn.Linear(3, 2).parameters(), trainer, 1e-3, 0.03, 1, 2)
    assert bool(opt.param_groups[0]["fused"]) is fused


def test_fused_optimiser_without_a_scaler_is_clipped_by_norm():
    """bf16 mixed precision has no gradient scaler: the training module clips a fused
    optimiser's gradients itself (Lightning refuses), by their total norm, as Lightning does."""
    from espnet.training.model_module import ModelModule

    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(4))]
    params[0].grad, params[1].grad = torch.full((3,), 3.0), torch.full((4,), 4.0)
    norm = float(torch.cat([p.grad for p in params]).norm())
    opt = build_adamw(params, 1e-3, 0.0)
    assert opt._step_supports_amp_scaling  # fused: what Lightning refuses to clip under mixed precision
    module = types.SimpleNamespace(trainer=types.SimpleNamespace(precision_plugin=types.SimpleNamespace(scaler=None)))
    ModelModule.configure_gradient_clipping(module, opt, 2.0, "norm")
    clipped = torch.cat([p.grad for p in params])
    torch.testing.assert_close(float(clipped.norm()), 2.0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(clipped, torch.cat([torch.full((3,), 3.0), torch.full((4,), 4.0)]) * 2.0 / norm)
    with pytest.raises(ValueError, match="gradient clipping by value is not supported with the fused optimiser"):
        ModelModule.configure_gradient_clipping(module, opt, 2.0, "value")
