"""The model reproduces the original Auto-AVSR numerically (fixtures made by its code)."""

import json
import os

import pytest
import torch

from espnet.asr.recognizer import build_beam_search
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.model_config import LEGACY_MODALITY_ENCODERS
from flag_config import model_config


def legacy_config(modality, **sizes):
    vision, audio = LEGACY_MODALITY_ENCODERS[modality]
    return model_config(vision_encoder=vision, audio_encoder=audio, decoder="transformer", **sizes)


def tiny_model(cfg, modality):
    return E2E(legacy_config(modality, odim=cfg["odim"], adim=cfg["adim"], aheads=cfg["aheads"],
                         eunits=cfg["eunits"], elayers=cfg["elayers"], dunits=cfg["dunits"],
                         dlayers=cfg["dlayers"], cnn_module_kernel=cfg["cnn_module_kernel"],
                         ctc_weight=cfg["ctc_weight"], lsm_weight=cfg["lsm_weight"]))


@pytest.fixture(scope="module", params=["video", "audio"])
def loaded(request, legacy_dir, legacy_config):
    m = request.param
    model = tiny_model(legacy_config, m)
    state = torch.load(os.path.join(legacy_dir, f"tiny_{m}.pth"), weights_only=True)
    model.load_state_dict(state, strict=True)
    ref = torch.load(os.path.join(legacy_dir, f"tiny_{m}_reference.pt"), weights_only=True)
    return m, model.eval(), ref


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def assert_matches_legacy(ours, reference):
    """Within 1e-4 of the original code's output (values up to ~3; measured differences are
    ~1.5e-6, the float32 rounding of other kernels and of the original order of operations)."""
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4)


def test_stage_outputs(loaded):
    _, model, ref = loaded
    with torch.no_grad():
        feats, lengths = model.frontend(ref["input"], ref["lengths"])
        assert_matches_legacy(feats, ref["frontend_out"])
        proj = model.proj_encoder(feats)
        assert_matches_legacy(proj, ref["proj_out"])
        enc, enc_lengths = model.encoder(proj, lengths)
        assert_matches_legacy(enc, ref["encoder_out"])
        assert_matches_legacy(model.ctc.ctc_lo(enc), ref["ctc_logits"])
        out = model.decoder.forward_train(enc, enc_lengths, ref["labels"])
        assert torch.equal(out["ys_in"], ref["decoder_in"])  # token ids
        assert_matches_legacy(out["logits"], ref["decoder_logits"])


def test_losses_and_accuracy(loaded):
    _, model, ref = loaded
    with torch.no_grad():
        inputs = {model.modality: ref["input"], f"{model.modality}_lengths": ref["lengths"]}
        loss, loss_ctc, loss_att, acc = model(inputs, ref["labels"])
    for name, value in (("loss", loss), ("loss_ctc", loss_ctc), ("loss_att", loss_att)):
        assert value.item() == pytest.approx(ref[name].item(), rel=1e-4), name
    assert acc == pytest.approx(ref["acc"].item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("beam", [1, 5])
def test_beam_search_hypotheses(loaded, beam):
    _, model, ref = loaded
    search = build_beam_search(model, beam_size=beam, ctc_weight=0.1)
    n = int(ref["lengths"][0])
    with torch.no_grad():
        enc, enc_len = model.encode({model.modality: ref["input"][:1, :n], f"{model.modality}_lengths": ref["lengths"][:1]})
        hyps = search(enc[0, : int(enc_len[0])])
    assert hyps[0].yseq[1:].tolist() == ref[f"beam{beam}_ids"].tolist()
    assert hyps[0].score == pytest.approx(ref[f"beam{beam}_score"], abs=1e-3)


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_full_size_state_dict_matches_legacy_manifest(legacy_dir, modality):
    with open(os.path.join(legacy_dir, f"legacy_{modality}_state_dict_shapes.json")) as handle:
        manifest = json.load(handle)
    with torch.device("meta"):
        model = E2E(legacy_config(modality))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == manifest


def watch_pool_layout(frontend):
    """A list that gets, at each forward, whether the video stem's pooling was fed channels-last."""
    seen = []
    frontend.frontend3D[3].register_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].is_contiguous(memory_format=torch.channels_last_3d)))
    return seen


def test_video_frontend_training_layout_matches_the_legacy_computation():
    """Training runs the video stem and trunk channels-last (faster on CPU): the same features
    and gradients as the legacy layout, to float rounding, with the pooling fed channels-last."""
    from espnet.nets.pytorch_backend.frontend.resnet import VideoResNet

    torch.manual_seed(0)
    fast = VideoResNet(width=16).train()
    plain = VideoResNet(width=16).train()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 7, 1, 40, 40)
    lengths = torch.tensor([7, 5])

    seen = watch_pool_layout(fast)
    out, out_lengths = fast(x, lengths)
    # the legacy computation: the stem and the trunk in their default layouts
    y = plain.frontend3D(x.transpose(1, 2))
    ref = plain.trunk(y.transpose(1, 2).reshape(14, y.size(1), y.size(3), y.size(4))).reshape(2, 7, -1)
    assert seen == [True] and torch.equal(out_lengths, lengths)
    assert out.shape == (2, 7, 128) and max_diff(out, ref) <= 1e-5 * ref.abs().max().item()
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        assert (a.grad - b.grad).abs().max().item() <= 1e-4 * b.grad.abs().max().item() + 1e-7, name


def test_narrow_video_frontends_train_in_the_default_layout_on_several_threads():
    """Below MIN_CHANNELS_LAST_WIDTH the channels-last backward of PyTorch's 1x1 stride-2
    convolution corrupted the heap on two threads (a crash of the process, so it runs in a
    child): training steps of a width-4 frontend on 2 threads must run clean."""
    import subprocess
    import sys

    from espnet.nets.pytorch_backend.frontend.resnet import MIN_CHANNELS_LAST_WIDTH, VideoResNet

    assert MIN_CHANNELS_LAST_WIDTH > 4
    narrow = VideoResNet(width=4).train()
    seen = watch_pool_layout(narrow)
    narrow(torch.randn(1, 5, 1, 40, 40), torch.tensor([5]))
    assert seen == [False]
    code = ("import torch\n"
            "from espnet.nets.pytorch_backend.frontend.resnet import VideoResNet\n"
            "torch.set_num_threads(2)\n"
            "model = VideoResNet(width=4).train()\n"
            "for n in range(40):\n"
            "    x = torch.randn(3, 20 + n, 1, 88, 88)\n"
            "    model(x, torch.full((3,), 20 + n))[0].sum().backward()\n"
            "print('trained')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0 and "trained" in proc.stdout, proc.stderr[-2000:]
