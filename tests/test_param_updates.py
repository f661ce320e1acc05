"""--log-param-updates: per-component gradient norm, parameter norm, update ratio and the
learning rate in the logger; a frozen pretrained frontend shows zero updates, its LoRA
adapters (--use-qlora) do not."""

import os

import pytest

from conftest import TINY_DIMS, read_metrics
from espnet.training.param_updates import component_of

pytest.importorskip("transformers")
pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")

from espnet.training import train_cli  # noqa: E402
from tiny_hf import save_tiny_vit  # noqa: E402


def test_components_of_parameter_names():
    assert component_of("frontend.model.encoder.layer.0.attention.query.lora_A.default.weight") == "adapters"
    assert component_of("decoder.llm.model.layers.1.self_attn.q_proj.lora_B.default.weight") == "adapters"
    assert component_of("vision_frontend.trunk.conv1.weight") == "vision_frontend"
    assert component_of("fusion.layer.bottleneck") == "fusion"
    assert component_of("proj_encoder.weight") == "proj_encoder"


def test_frozen_frontend_zero_adapters_and_new_modules_nonzero(toy_corpus, tmp_path):
    vit = save_tiny_vit(str(tmp_path / "vit"))
    exp = str(tmp_path / "exp")
    args = ["--exp-dir", exp, "--exp-name", "run", "--root-dir", toy_corpus["root"], "--train-file", "train.csv",
            "--vision-encoder", "vit", "--vision-model-name", vit, "--use-qlora", "--qlora-r", "4",
            "--sp-model-path", toy_corpus["sp_model_path"], "--dict-path", toy_corpus["dict_path"], *TINY_DIMS,
            "--max-epochs", "1", "--warmup-epochs", "1", "--max-frames", "150", "--num-workers", "0",
            "--accelerator", "cpu", "--log-param-updates", "2", "--log-every-n-steps", "1", "--average-last", "0"]
    assert train_cli.main(args) == 0
    rows = read_metrics(os.path.join(exp, "run"))
    logged = [r for r in rows if r.get("updates/lr")]
    steps = sorted(int(r["step"]) for r in logged)
    lr_monitor = {int(r["step"]): float(r["lr-AdamW"]) for r in rows if r.get("lr-AdamW")}
    assert len(steps) >= 3 and steps == list(range(0, 2 * len(steps), 2))  # every 2nd optimiser step
    for row in logged:
        value = lambda key: float(row[f"updates/{key}"])  # noqa: E731
        assert value("lr") == pytest.approx(lr_monitor[int(row["step"])]) and value("lr") > 0
        # the ViT's own weights are frozen (4-bit linears, float embeddings/norms): measured unchanged
        assert value("frontend/param_norm") > 0
        assert value("frontend/grad_norm") == 0 and value("frontend/update_ratio") == 0
        for part in ("adapters", "encoder", "decoder", "ctc"):  # (ViT size = adim: no projection)
            assert value(f"{part}/grad_norm") > 0 and 0 < value(f"{part}/update_ratio") < 1, part
    # an update is about lr per weight with Adam: the ratio scales with the step's learning rate
    first, last = logged[0], logged[-1]
    assert float(first["updates/encoder/update_ratio"]) / float(first["updates/lr"]) == pytest.approx(
        float(last["updates/encoder/update_ratio"]) / float(last["updates/lr"]), rel=0.5)
