"""--freeze-param: the named parameters keep their initial values through training (their
modules in eval mode, so batch-norm statistics stay too); the rest trains; a prefix that names
nothing is refused in one line."""

import os

import torch

from bad_corpus import BadCorpus, train_args, write_untrained_model
from espnet.training import train_cli
from espnet.training.checkpoints import load_checkpoint
from espnet.training.freezing import freeze


def test_freeze_stops_gradients_and_keeps_the_modules_in_eval():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5),
                                torch.nn.Linear(4, 2))
    frozen = freeze(model, ["0", "1."])
    assert frozen == [model[0], model[1]]
    assert [p.requires_grad for p in model.parameters()] == [False, False, False, False, True, True]
    assert not model[0].training and not model[1].training and model[3].training
    try:
        freeze(model, ["2"])  # a dropout has no parameters
    except ValueError as err:
        assert str(err) == ("--freeze-param '2' matches no trainable parameter of the model "
                            "(its top-level modules: 0, 1, 3)")
    else:
        raise AssertionError("a prefix without parameters was accepted")


def test_train_with_a_frozen_encoder(toy_corpus, tmp_path, capsys):
    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    source = write_untrained_model(corpus, str(tmp_path / "source.pth"))
    before = torch.load(source, weights_only=True)
    exp = str(tmp_path / "exp")
    flags = ["--pretrained-model-path", source, "--average-last", "1"]  # every weight starts as the source's
    args = train_args(corpus, exp, "train.csv", *flags, "--freeze-param", "frontend", "proj_encoder", "encoder",
                      epochs=2)
    assert train_cli.main(args) == 0
    after, _, _ = load_checkpoint(os.path.join(exp, "run", "final.ckpt"))
    kept = [k for k in before if k.startswith(("frontend.", "proj_encoder.", "encoder."))]
    trained = [k for k in before if k.startswith(("decoder.", "ctc."))]
    assert any("running_mean" in k for k in kept)  # the ResNet's batch norms: their statistics too
    for key in kept:  # untouched copies: compared exactly
        assert torch.equal(after[key], before[key]), key
    assert all(not torch.equal(after[k], before[k]) for k in trained if k.endswith(".weight"))

    code = train_cli.main(train_args(corpus, str(tmp_path / "bad"), "train.csv", "--freeze-param", "encodr"))
    err = capsys.readouterr().err
    assert code == 2
    assert "--freeze-param 'encodr' matches no trainable parameter of the model (its top-level modules: " in err
    assert "encoder" in err and "Traceback" not in err
