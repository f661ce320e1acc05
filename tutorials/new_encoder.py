"""Tutorial: add a new vision encoder — one file and one registry entry — and use it.

    python tutorials/new_encoder.py --out exp/tutorial_new_encoder

Steps:

1. The encoder lives in one file: ``tutorials/examples/tiny_lip_encoder.py`` (printed
   below). It subclasses ``BaseFrontend``, declares its option ``width`` next to the class
   (``options = (Option("width", 16, ..., flag="--tiny-lip-width"),)``), sets ``output_dim``
   and ``frame_rate``, and implements ``forward(x (B, T, 1, H, W), lengths) -> (feats
   (B, T', D), lengths')``.
2. One registry entry makes it a ``--vision-encoder`` choice and its option a flag.
   Permanently, that is one line in ``espnet/nets/pytorch_backend/registry.py``::

       VISION_ENCODERS.add("tiny-lip", "tutorials.examples.tiny_lip_encoder:TinyLipEncoder")

   This tutorial makes the same call at run time (``VISION_ENCODERS.add`` in this process),
   which is enough for everything below; ``train.py``/``eval.py`` started as separate
   commands only see entries in ``registry.py``.
3. Build a video model with it (``ModelConfig(vision_encoder="tiny-lip",
   vision_encoder_conf={"width": 8}, ...)`` → ``E2E``),
   check that padding a batch does not change an utterance's features (eval mode), and take
   30 optimiser steps on one batch of a generated corpus (``OUT/data``): the loss falls.
4. Decode an utterance of that batch with joint CTC/attention beam search.
5. Fuse it with the 1D-ResNet audio encoder (``audio_encoder="resnet1d"``, gated fusion):
   one forward/backward; gradients reach the new encoder.
6. Train with ``train.py`` (called in this process, so the run-time entry is known) with
   ``--vision-encoder tiny-lip --tiny-lip-width 8`` for 1 epoch; the checkpoint's stored
   config names ``tiny-lip`` and its width, and it loads and decodes a test clip like any
   other checkpoint (``inference.load_recognizer`` / ``transcribe``).

Writes ``OUT/new_encoder.json`` (losses, hypothesis, checks) and the run in ``OUT/exp``.
"""

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, TINY_MODEL, make_corpus  # noqa: E402  (also puts the repository on sys.path)

import torch  # noqa: E402

NAME = "tiny-lip"
TARGET = "tutorials.examples.tiny_lip_encoder:TinyLipEncoder"
SIZES = dict(adim=32, aheads=2, eunits=64, elayers=1)
DECODER_CONF = {"dunits": 64, "dlayers": 1}
WIDTH = 8


def register() -> None:
    """The registry entry, made at run time (idempotent within a process)."""
    from espnet.nets.pytorch_backend.registry import VISION_ENCODERS

    if NAME not in VISION_ENCODERS:
        VISION_ENCODERS.add(NAME, TARGET)


def batch_of(corpus, modality: str, n: int = 4):
    """The first ``n`` training utterances, test transforms (no augmentation), padded."""
    from datamodule.collate import collate_pad
    from datamodule.data_module import build_dataset

    dataset = build_dataset(corpus["root"], "train.csv", "test", modality)
    batch = collate_pad([dataset[i] for i in range(n)])
    inputs = {}
    for key in ("video", "audio"):
        if f"{key}s" in batch:
            inputs[key], inputs[f"{key}_lengths"] = batch[f"{key}s"], batch[f"{key}_lengths"]
    return inputs, batch["targets"], dataset


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--steps", type=int, default=30, help="Optimiser steps on one batch. (Default: 30)")
    p.add_argument("--epochs", type=int, default=1, help="train.py epochs with the new encoder. (Default: 1)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from datamodule.text_transform import TextTransform
    from espnet.asr.recognizer import DecodeOptions, recognize
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.nets.pytorch_backend.model_config import ModelConfig

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    report = {}

    # 1. the encoder file
    path = os.path.join(REPO, *TARGET.split(":")[0].split(".")) + ".py"
    print(f"== 1. the new encoder: {os.path.relpath(path, REPO)}\n")
    with open(path, encoding="utf8") as handle:
        print(handle.read())

    # 2. one registry entry
    register()
    print(f"== 2. registered --vision-encoder {NAME} -> {TARGET}")

    # 3. a model with it; padding check; a few optimiser steps on one batch
    corpus = make_corpus(os.path.join(args.out, "data"))
    tokenizer = TextTransform(corpus["sp_model_path"], corpus["dict_path"])
    config = ModelConfig(odim=tokenizer.odim, vision_encoder=NAME, vision_encoder_conf={"width": WIDTH},
                         decoder_conf=DECODER_CONF, **SIZES)
    model = E2E(config)
    print(f"\n== 3. video model: frontend {type(model.frontend).__name__} (output {model.frontend.output_dim}-d, "
          f"{model.frontend.frame_rate:g} Hz), {sum(p.numel() for p in model.parameters()):,} parameters")
    inputs, targets, dataset = batch_of(corpus, "video")
    model.eval()
    with torch.no_grad():
        padded, _ = model.frontend(inputs["video"], inputs["video_lengths"])
        n0 = int(inputs["video_lengths"][0])
        alone, _ = model.frontend(inputs["video"][:1, :n0], inputs["video_lengths"][:1])
    report["padding_max_abs_diff"] = float((padded[0, :n0] - alone[0]).abs().max())
    print(f"padding check: max |features in a padded batch - features alone| = {report['padding_max_abs_diff']:.2e}")
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(args.steps):
        loss, loss_ctc, loss_att, acc = model(inputs, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d}: loss {float(loss):.3f} (ctc {float(loss_ctc):.3f}, attention {float(loss_att):.3f}, "
                  f"accuracy {float(acc):.2f})")
    report["losses"] = losses

    # 4. decode one utterance of the batch
    model.eval()
    n0 = int(inputs["video_lengths"][0])
    best = recognize(model, {"video": inputs["video"][0, :n0]}, DecodeOptions(beam_size=5, ctc_weight=0.3))
    report["hypothesis"] = model.decoder.ids_to_text(best.token_ids, tokenizer)
    report["reference"] = tokenizer.post_process(targets[0])
    print(f"\n== 4. decoding utterance 0 of the batch\nreference:  {report['reference']}\nhypothesis: {report['hypothesis']}")

    # 5. audio-visual: the new encoder fused with the 1D ResNet audio encoder
    av_config = ModelConfig(odim=tokenizer.odim, vision_encoder=NAME, audio_encoder="resnet1d", fusion_type="gated",
                            vision_encoder_conf={"width": WIDTH}, audio_encoder_conf={"width": WIDTH},
                            decoder_conf=DECODER_CONF, **SIZES)
    av_model = E2E(av_config).train()
    av_inputs, av_targets, _ = batch_of(corpus, "audiovisual")
    av_loss = av_model(av_inputs, av_targets)[0]
    av_loss.backward()
    grad = torch.sqrt(sum(p.grad.pow(2).sum() for p in av_model.vision_frontend.parameters() if p.grad is not None))
    report["av_loss"], report["av_vision_grad_norm"] = float(av_loss), float(grad)
    print(f"\n== 5. audio-visual ({NAME} + resnet1d, gated fusion): loss {float(av_loss):.3f}, "
          f"gradient norm at the new encoder {float(grad):.3e}")

    # 6. train.py with --vision-encoder tiny-lip
    import train

    size_flags = [flag for key, value in {**SIZES, **DECODER_CONF}.items() for flag in (f"--{key}", str(value))]
    assert size_flags + ["--resnet-width", str(WIDTH)] == TINY_MODEL  # the same toy size as the other tutorials
    exp = os.path.join(args.out, "exp")
    argv = ["--exp-dir", exp, "--exp-name", NAME, "--vision-encoder", NAME, "--tiny-lip-width", str(WIDTH),
            "--root-dir", corpus["root"],
            "--train-file", "train.csv", "--sp-model-path", corpus["sp_model_path"], "--dict-path", corpus["dict_path"],
            *size_flags, "--max-epochs", str(args.epochs), "--warmup-epochs", "1", "--lr", "2e-3", "--max-frames", "400",
            "--num-workers", "0"]
    print("\n== 6. $ python train.py " + " ".join(argv), flush=True)
    start = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit("train.py failed with the new encoder (see above)")
    checkpoint = os.path.join(exp, NAME, f"model_avg_{args.epochs}.pth")
    with open(os.path.splitext(checkpoint)[0] + ".json", encoding="utf8") as handle:
        report["checkpoint_config"] = json.load(handle)["model_config"]
    print(f"train.py with --vision-encoder {NAME}: {time.perf_counter() - start:.1f} s; stored vision_encoder = "
          f"{report['checkpoint_config']['vision_encoder']!r} with options "
          f"{report['checkpoint_config']['vision_encoder_conf']}")
    from datamodule.label_list import read_label_list
    from inference import load_clip, load_recognizer, transcribe

    trained, trained_tokenizer = load_recognizer(checkpoint)
    report["trained_frontend_output_dim"] = trained.frontend.output_dim  # 4 * --tiny-lip-width
    test = read_label_list(corpus["test"])[0]
    clip = os.path.join(corpus["root"], test.dataset, test.rel_path)
    report["trained_hypothesis"] = transcribe(trained, trained_tokenizer, load_clip(clip, trained), beam_size=2)
    print(f"decoded {os.path.relpath(clip, args.out)} with {os.path.relpath(checkpoint, args.out)} "
          f"(frontend {type(trained.frontend).__name__}): {report['trained_hypothesis']!r}")

    out = os.path.join(args.out, "new_encoder.json")
    with open(out, "w", encoding="utf8") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nloss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.steps} steps; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
