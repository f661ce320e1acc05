"""QLoRA manager (issue #7): 4-bit NF4 base weights + LoRA adapters on the pretrained
components, trainable-only checkpoints, eval rebuild, averaging, merging. Tiny random
LLaMA / ViT models saved to tmp dirs and loaded offline; bitsandbytes runs on CPU."""

import json
import os
import sys

import pytest
import torch

from conftest import TINY_ENCODER_DIMS

pytest.importorskip("transformers")
bnb = pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")

from espnet.asr import eval_cli  # noqa: E402
from espnet.training import train_cli  # noqa: E402
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E  # noqa: E402
from espnet.nets.pytorch_backend.lora.qlora_manager import (  # noqa: E402
    FINGERPRINT_BUFFER,
    QLoRAManager,
    parameter_table,
)
from espnet.nets.pytorch_backend.model_config import ModelConfig  # noqa: E402
from flag_config import model_config
from tiny_hf import save_tiny_llama, save_tiny_vit  # noqa: E402

TEXTS = ["bin blue at one now", "lay green by two soon"]


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora_models")
    return {
        "llama": save_tiny_llama(str(root / "llama"), hidden=64, init_std=0.3),
        "llama_other": save_tiny_llama(str(root / "llama_other"), seed=1, hidden=64, init_std=0.3),
        "vit": save_tiny_vit(str(root / "vit")),
    }


def _config(hf_dirs, **kw):
    base = dict(odim=10, vision_encoder="resnet", adim=32, aheads=2, eunits=64, elayers=1,
                decoder="llama", decoder_model_name=hf_dirs["llama"], use_qlora=True,
                dropout_rate=0.0, mask_conv_padding=True, qlora_dropout=0.0)
    base.update(kw)
    if base["vision_encoder"] == "resnet":
        base["resnet_width"] = 8
    if base["decoder"] == "transformer":
        base.update(dunits=64, dlayers=1)
    return model_config(**base)


def _model(hf_dirs, seed=0, **kw):
    torch.manual_seed(seed)
    return E2E(_config(hf_dirs, **kw))


def _video(b=2, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(b, t, 1, 88, 88, generator=g), "video_lengths": torch.tensor([t, t - 3])[:b]}


def _step(model, opt, inputs):
    loss, *_ = model(inputs, torch.zeros(2, 3, dtype=torch.long), texts=TEXTS)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_targeted_layers_are_4bit_and_adapters_trainable(hf_dirs):
    model = _model(hf_dirs)
    llm = model.decoder.llm
    linears = {n: m for n, m in llm.named_modules() if isinstance(m, (torch.nn.Linear, bnb.nn.Linear4bit))}
    quantized = [n for n, m in linears.items() if isinstance(m, bnb.nn.Linear4bit)]
    # every linear layer of the 2 blocks (q,k,v,o + gate,up,down) is 4-bit; lm_head is kept
    assert len(quantized) == 2 * 7
    assert type(llm.lm_head) is torch.nn.Linear and not llm.lm_head.weight.requires_grad
    for name in quantized:
        w = linears[name].weight
        assert w.dtype == torch.uint8 and w.quant_state.quant_type == "nf4" and w.quant_state.nested
        assert not w.requires_grad
    adapted = {n.rsplit(".", 1)[0] for n, _ in llm.named_modules() if n.endswith("lora_A")}
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    adapters = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    assert len(adapters) == 2 * 4 * 2 and all(p.requires_grad for _, p in adapters)
    trainable = dict(QLoRAManager.get_trainable_params(model))
    assert len(trainable) > 0
    assert all(name in trainable for name, _ in adapters)
    # new modules stay full precision and trainable; embeddings of the LLM are frozen
    for prefix in ("frontend.", "proj_encoder.", "encoder.", "ctc.", "decoder.proj."):
        params = [p for n, p in model.named_parameters() if n.startswith(prefix)]
        assert params and all(p.requires_grad and p.dtype == torch.float32 for p in params), prefix
    assert not llm.get_input_embeddings().weight.requires_grad
    table = parameter_table(model)
    assert table.splitlines()[-1].startswith("total") and "decoder" in table and "14" in table.splitlines()[-1]


def test_one_step_changes_adapters_not_base_and_loss_drops(hf_dirs):
    model = _model(hf_dirs).train()
    q = model.decoder.llm.model.layers[0].self_attn.q_proj
    base = q.base_layer.weight.data.clone()
    lora_b = q.lora_B["default"].weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = _video()
    losses = [_step(model, opt, inputs)]
    assert not torch.equal(lora_b, q.lora_B["default"].weight)
    assert torch.equal(base, q.base_layer.weight.data)
    losses += [_step(model, opt, inputs) for _ in range(7)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_pretrained_frontend_gets_adapters_and_gradients(hf_dirs):
    model = _model(hf_dirs, vision_encoder="vit", vision_model_name=hf_dirs["vit"], decoder="transformer",
                   decoder_model_name=None).train()
    vit = model.frontend.model
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in vit.modules()) == 6  # q, k, v, attn-out, mlp in/out
    assert model.frontend.model.training  # adapters train: no longer the frozen eval-mode frontend
    loss, *_ = model(_video(), torch.tensor([[1, 2, 3], [4, 5, -1]]))
    loss.backward()
    grads = [p.grad for n, p in vit.named_parameters() if "lora_B" in n]  # lora_B starts at 0: A gets none yet
    assert len(grads) == 4 and all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    # the decoder is a small from-scratch Transformer: full precision, trainable
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_errors(hf_dirs, monkeypatch):
    with pytest.raises(ValueError, match="nothing to quantise; QLoRA applies to pretrained ones"):
        _model(hf_dirs, decoder="transformer", decoder_model_name=None)
    with pytest.raises(ValueError, match=r"--qlora-target-modules query matches no linear layer of decoder .*q_proj"):
        _model(hf_dirs, qlora_target_modules="query")
    model = _model(hf_dirs, qlora_target_modules="q_proj, v_proj")
    adapted = {n.rsplit(".", 2)[-2] for n, _ in model.named_modules() if n.endswith("lora_A")}
    assert adapted == {"q_proj", "v_proj"}
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError, match="pip install bitsandbytes"):
        _model(hf_dirs)


def test_cli_flag_errors(toy_corpus, capsys):
    args = ["--root-dir", toy_corpus["root"], "--train-file", "train.csv", "--vision-encoder", "resnet",
            "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"]]
    assert train_cli.main(args + ["--qlora-r", "4"]) == 2
    assert "--qlora-r only apply with --use-qlora" in capsys.readouterr().err
    assert train_cli.main(args + ["--use-qlora"]) == 2
    assert "--use-qlora: the model has only small components trained from scratch (resnet, transformer)" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.parse_args(args + ["--merge-lora"])
    assert "--merge-lora needs --use-qlora" in capsys.readouterr().err


def _save_plain(model, path, sp):
    from espnet.training.checkpoints import write_sidecar

    torch.save(model.checkpoint_state_dict(), path)
    write_sidecar(path, {"model_config": model.config.to_dict(), "sp_model_path": sp[0], "dict_path": sp[1]})


def test_checkpoint_round_trip_through_eval_and_merge(hf_dirs, toy_corpus, tmp_path, capsys):
    from datamodule.text_transform import TextTransform
    from espnet.asr.evaluate import evaluate
    from espnet.nets.pytorch_backend.decoder.base_decoder import DecodeOptions
    from espnet.training.export import main as export_main

    sp = (toy_corpus["sp_model_path"], toy_corpus["dict_path"])
    odim = TextTransform(*sp).odim
    model = _model(hf_dirs, odim=odim).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(3):
        _step(model, opt, _video())
    model.eval()
    path = str(tmp_path / "qlora.pth")
    _save_plain(model, path, sp)
    saved = torch.load(path, weights_only=True)
    llm_keys = [k for k in saved if k.startswith("decoder.llm.")]
    assert llm_keys and all("lora_" in k for k in llm_keys)  # no 4-bit or frozen pretrained weight stored
    assert not any(v.dtype == torch.uint8 for k, v in saved.items() if k != FINGERPRINT_BUFFER)

    reference = evaluate(model, TextTransform(*sp), toy_corpus["root"], "test.csv",
                         DecodeOptions(beam_size=1, max_new_tokens=5), progress=False)
    out = str(tmp_path / "eval.json")
    common = ["--root-dir", toy_corpus["root"], "--test-file", "test.csv", "--beam-size", "1",
              "--max-new-tokens", "5", "--num-workers", "0", "--accelerator", "cpu"]
    assert eval_cli.main(common + ["--pretrained-model-path", path, "--output-json", out]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")
    with open(out) as handle:
        rebuilt = [u["hypothesis"] for u in json.load(handle)["utterances"]]
    assert rebuilt == [u["hypothesis"] for u in reference.utterances]

    # --merge-lora: a full-precision model without --use-qlora that decodes the same
    assert export_main(["--pretrained-model-path", path, "--merge-lora"]) == 0
    merged_path = str(tmp_path / "qlora_merged.pth")
    merged = torch.load(merged_path, weights_only=True)
    with open(os.path.splitext(merged_path)[0] + ".json") as handle:
        assert json.load(handle)["model_config"]["use_qlora"] is False
    plain = E2E(ModelConfig.from_dict({**model.config.to_dict(), "use_qlora": False}))
    assert set(merged) == set(plain.state_dict())
    assert all(v.is_floating_point() for k, v in merged.items() if k.startswith("decoder.llm."))
    out2 = str(tmp_path / "eval_merged.json")
    capsys.readouterr()
    assert eval_cli.main(common + ["--pretrained-model-path", merged_path, "--output-json", out2]) == 0
    with open(out2) as handle:
        assert [u["hypothesis"] for u in json.load(handle)["utterances"]] == rebuilt

    # adapters trained on other pretrained weights: a clear error, not silent garbage
    capsys.readouterr()
    assert eval_cli.main(common + ["--pretrained-model-path", path, "--decoder-model-name",
                                   hf_dirs["llama_other"]]) == 2
    err = capsys.readouterr().err
    assert f"--decoder-model-name {hf_dirs['llama_other']} replaces the" in err
    assert "its LoRA adapters were trained on other pretrained weights" in err


def test_averaging_copies_quantized_weights(tmp_path):
    from espnet.nets.pytorch_backend.lora.quantize import quantize_linears
    from espnet.training.checkpoints import average_state_dicts, quantized_keys

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
    quantize_linears(net, torch.float32, keep=[net[1]])
    states = []
    for i in range(3):
        state = {k: v.clone() for k, v in net.state_dict().items()}
        state["1.weight"] = torch.full_like(state["1.weight"], float(i))
        state[FINGERPRINT_BUFFER] = torch.arange(32, dtype=torch.uint8) + 200  # sums would overflow uint8
        states.append(state)
        torch.save(state, tmp_path / f"s{i}.pth")
    paths = [str(tmp_path / f"s{i}.pth") for i in range(3)]
    q_keys = quantized_keys(states[0])
    assert "0.weight" in q_keys and "0.weight.absmax" in q_keys and "0.weight.quant_map" in q_keys
    avg = average_state_dicts(paths)
    for key in q_keys | {FINGERPRINT_BUFFER}:
        assert torch.equal(avg[key], states[0][key]), key  # copied from the first, not averaged: exact
    torch.testing.assert_close(avg["1.weight"], torch.ones_like(avg["1.weight"]), rtol=1e-5, atol=1e-8)  # of 0, 1, 2
    changed = dict(states[2])
    changed["0.weight"] = changed["0.weight"] ^ 1
    torch.save(changed, tmp_path / "s2.pth")
    with pytest.raises(ValueError, match="frozen tensor 0.weight differs"):
        average_state_dicts(paths)


def test_train_and_eval_cli_vit_llama_qlora(hf_dirs, toy_corpus, tmp_path, capsys):
    exp = str(tmp_path / "exp")
    args = ["--exp-dir", exp, "--exp-name", "run", "--root-dir", toy_corpus["root"],
            "--train-file", "train.csv", "--vision-encoder", "vit", "--vision-model-name",
            hf_dirs["vit"], "--decoder", "llama", "--decoder-model-name", hf_dirs["llama"],
            "--use-qlora", "--qlora-r", "4", "--merge-lora", "--sp-model-path",
            toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"], *TINY_ENCODER_DIMS,
            "--warmup-epochs", "1", "--max-frames", "300", "--num-workers", "0", "--accelerator", "cpu"]
    assert train_cli.main(args + ["--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    ckpt = torch.load(os.path.join(exp, "run", "epoch=0.ckpt"), weights_only=True)
    assert not any(v.dtype == torch.uint8 for k, v in ckpt["state_dict"].items() if not k.endswith(FINGERPRINT_BUFFER))
    # resuming from the adapter-only Lightning checkpoint restores model and optimiser
    assert train_cli.main(args + ["--max-epochs", "2", "--ckpt-path", os.path.join(exp, "run", "last.ckpt")]) == 0
    assert os.path.isfile(os.path.join(exp, "run", "model_avg_2.pth"))
    total = [line for line in out.splitlines() if line.startswith("total")]
    assert total and "%" in total[0]
    avg = os.path.join(exp, "run", "model_avg_2.pth")
    state = torch.load(avg, weights_only=True)
    assert any("frontend.model." in k and "lora_A" in k for k in state)
    assert not any(k.startswith("frontend.model.") and "lora_" not in k for k in state)
    assert os.path.isfile(os.path.join(exp, "run", "model_avg_2_merged.pth"))
    code = eval_cli.main(["--root-dir", toy_corpus["root"], "--test-file", "test.csv", "--pretrained-model-path", avg,
                          "--beam-size", "1", "--max-new-tokens", "4", "--num-workers", "0", "--accelerator", "cpu"])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("WER: ")
