"""Tutorial: add a new encoder — one file and one registry entry — and use it.

    python tutorials/new_encoder.py --out exp/tutorial_new_encoder

The encoder sits between the frontend(s) (projected or fused to the model width ``adim``)
and the CTC head + decoder. ``--encoder`` chooses it like ``--vision-encoder``,
``--decoder`` or ``--fusion-type`` choose theirs: ``conformer`` (Auto-AVSR's, the default),
``transformer`` (the original ESPnet Transformer encoder) or ``none`` (no encoder layers).

Steps:

1. The encoder lives in one file: ``tutorials/examples/bigru_encoder.py`` (printed below).
   It subclasses ``BaseEncoder``, declares its option ``num_layers`` next to the class
   (``options = (Option("num_layers", 1, ..., flag="--bigru-layers"),)``), sets
   ``output_dim`` and implements ``forward(xs (B, T, adim), lengths) -> (B, T, adim), lengths``.
2. One registry entry makes it an ``--encoder`` choice and its option a flag.
   Permanently, that is one line in ``espnet/nets/pytorch_backend/registry.py``::

       ENCODERS.add("bigru", "tutorials.examples.bigru_encoder:BiGRUEncoder")

   This tutorial makes the same call at run time (``ENCODERS.add`` in this process), which is
   enough for everything below; ``train.py``/``eval.py`` started as separate commands only see
   entries in ``registry.py``.
3. Build a video model with the model flags ``train.py`` takes (``--encoder bigru
   --bigru-layers 2``, resolved by ``espnet.training.cli_args``), check that padding a batch
   does not change an utterance's encoder output, and take 30 optimiser steps on one batch of
   a generated corpus (``OUT/data``): the loss falls.
4. Decode an utterance of that batch with joint CTC/attention beam search.
5. Train it for an epoch with the package's Lightning module (``ModelModule`` +
   ``DataModule``, what ``train.py`` runs), save the checkpoint, load it back from the file
   (its stored config names ``bigru`` and its option) and score the test list with
   ``espnet.asr.evaluate``.

Writes ``OUT/new_encoder.json`` (losses, hypothesis, checks) and the checkpoint in ``OUT/exp``.
"""

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from espnet.training.tiny_models import make_corpus  # noqa: E402

import torch  # noqa: E402

NAME = "bigru"
TARGET = "tutorials.examples.bigru_encoder:BiGRUEncoder"
LAYERS = 2
#: The toy model: a ResNet lip frontend of width 8, adim 32, the new encoder, one decoder block.
MODEL_FLAGS = ["--vision-encoder", "resnet", "--resnet-width", "8", "--encoder", NAME, "--bigru-layers", str(LAYERS),
               "--adim", "32", "--aheads", "2", "--dunits", "64", "--dlayers", "1"]


def register() -> None:
    """The registry entry, made at run time (idempotent within a process)."""
    from espnet.nets.pytorch_backend.registry import ENCODERS

    if NAME not in ENCODERS:
        ENCODERS.add(NAME, TARGET)


def model_flags_parser() -> argparse.ArgumentParser:
    """The model flags of ``train.py`` / ``eval.py``, built from the registries."""
    from espnet.training.cli_args import add_model_args

    parser = argparse.ArgumentParser(add_help=False)
    add_model_args(parser)
    return parser


def batch_of(corpus, modality: str, n: int = 4):
    """The first ``n`` training utterances, test transforms (no augmentation), padded."""
    from datamodule.collate import collate_pad
    from datamodule.data_module import build_dataset

    dataset = build_dataset(corpus["root"], "train.csv", "test", modality)
    items = [dataset[i] for i in range(n)]
    batch = collate_pad(items)
    inputs = {}
    for key in ("video", "audio"):
        if f"{key}s" in batch:
            inputs[key], inputs[f"{key}_lengths"] = batch[f"{key}s"], batch[f"{key}_lengths"]
    return inputs, batch["targets"], items


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--steps", type=int, default=30, help="Optimiser steps on one batch. (Default: 30)")
    p.add_argument("--epochs", type=int, default=1, help="Lightning epochs with the new encoder. (Default: 1)")
    return p.parse_args(argv)


def train_with_lightning(config, corpus, tokenizer, run_dir: str, epochs: int) -> str:
    """Train ``config`` on the corpus's training list with the package's ``ModelModule`` and
    ``DataModule`` (CPU, no logger) and save the final checkpoint; returns its path."""
    from pytorch_lightning import Trainer, seed_everything

    from datamodule.data_module import DataModule
    from espnet.training.model_module import ModelModule

    seed_everything(0, workers=True)
    hparams = {"model_config": config.to_dict(), "sp_model_path": corpus["sp_model_path"],
               "dict_path": corpus["dict_path"], "lr": 2e-3, "weight_decay": 0.0, "warmup_epochs": 1,
               "max_epochs": epochs, "seed": 0}
    module = ModelModule(hparams, text_transform=tokenizer)
    data = DataModule(corpus["root"], "train.csv", None, config.modality, max_frames=400, num_workers=0,
                      audio_utterance_norm=module.model.audio_utterance_norm)
    trainer = Trainer(default_root_dir=run_dir, max_epochs=epochs, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0,
                      use_distributed_sampler=False, gradient_clip_val=10.0)
    trainer.fit(module, datamodule=data)
    path = os.path.join(run_dir, f"{NAME}_epoch{epochs}.ckpt")
    trainer.save_checkpoint(path, weights_only=True)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from datamodule.text_transform import TextTransform
    from espnet.asr.recognizer import DecodeOptions, encode_utterances, recognize
    from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
    from espnet.training.cli_args import resolve_model_config

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    report = {}

    # 1. the encoder file
    path = os.path.join(REPO, *TARGET.split(":")[0].split(".")) + ".py"
    print(f"== 1. the new encoder: {os.path.relpath(path, REPO)}\n")
    with open(path, encoding="utf8") as handle:
        print(handle.read())

    # 2. one registry entry: a new --encoder choice, and its option a flag
    register()
    flags = {a.option_strings[0]: a for a in model_flags_parser()._actions if a.option_strings}
    report["encoder_choices"] = list(flags["--encoder"].choices)
    print(f"== 2. registered --encoder {NAME} -> {TARGET}\n--encoder choices now: "
          f"{', '.join(report['encoder_choices'])}; --bigru-layers: {flags['--bigru-layers'].help}")

    # 3. a model from the flags; padding check; a few optimiser steps on one batch
    corpus = make_corpus(os.path.join(args.out, "data"))
    tokenizer = TextTransform(corpus["sp_model_path"], corpus["dict_path"])
    config = resolve_model_config(model_flags_parser().parse_args(MODEL_FLAGS), tokenizer.odim)
    model = E2E(config)
    print(f"\n== 3. {' '.join(MODEL_FLAGS)}\n-> {config.describe()}; encoder {type(model.encoder).__name__}, "
          f"{sum(p.numel() for p in model.encoder.parameters()):,} of {sum(p.numel() for p in model.parameters()):,} "
          "parameters")
    inputs, targets, items = batch_of(corpus, "video")
    model.eval()
    with torch.no_grad():
        batched, _ = encode_utterances(model, items)  # one padded batch
        n0 = int(inputs["video_lengths"][0])
        alone, _ = model.encode({"video": inputs["video"][:1, :n0], "video_lengths": inputs["video_lengths"][:1]})
    report["padding_max_abs_diff"] = float((batched[0, : alone.size(1)] - alone[0]).abs().max())
    print(f"padding check: max |encoder output in a padded batch - alone| = {report['padding_max_abs_diff']:.2e}")
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(args.steps):
        loss, loss_ctc, loss_att, acc = model(inputs, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d}: loss {float(loss):.3f} (ctc {float(loss_ctc):.3f}, attention {float(loss_att):.3f}, "
                  f"accuracy {float(acc):.2f})")
    report["losses"] = losses

    # 4. decode one utterance of the batch
    model.eval()
    best = recognize(model, {"video": inputs["video"][0, :n0]}, DecodeOptions(beam_size=5, ctc_weight=0.3))
    report["hypothesis"] = model.decoder.ids_to_text(best.token_ids, tokenizer)
    report["reference"] = tokenizer.post_process(targets[0])
    print(f"\n== 4. decoding utterance 0 of the batch\nreference:  {report['reference']}\nhypothesis: {report['hypothesis']}")

    # 5. an epoch with the package's Lightning module; the checkpoint loads back and decodes
    from espnet.asr.evaluate import evaluate
    from espnet.asr.pretrained import Recognizer, resolve_pretrained

    print(f"\n== 5. training {args.epochs} epoch(s) with espnet.training.model_module.ModelModule", flush=True)
    start = time.perf_counter()
    checkpoint = train_with_lightning(config, corpus, tokenizer, os.path.join(args.out, "exp"), args.epochs)
    resolved = resolve_pretrained(checkpoint)  # the model API reads what the checkpoint stores
    stored = resolved.config.to_dict()
    report["checkpoint_config"] = stored
    trained = Recognizer.from_resolved(resolved).model
    print(f"{time.perf_counter() - start:.1f} s; {os.path.relpath(checkpoint, args.out)} stores encoder "
          f"{stored['encoder']!r} with options {stored['encoder_conf']}")
    result = evaluate(trained, tokenizer, corpus["root"], "test.csv", DecodeOptions(beam_size=2, ctc_weight=0.3),
                      progress=False)
    report["test_wer"] = result.wer
    report["trained_encoder_layers"] = trained.encoder.gru.num_layers
    print(f"test list ({len(result.utterances)} utterances) decoded with the loaded checkpoint: WER {result.wer:.3f}")

    out = os.path.join(args.out, "new_encoder.json")
    with open(out, "w", encoding="utf8") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nloss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.steps} steps; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
