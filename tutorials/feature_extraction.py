"""Tutorial: extract frontend and encoder features of clips with a trained checkpoint and
save them to disk.

    python tutorials/feature_extraction.py --out exp/tutorial_features
    python tutorials/feature_extraction.py --out exp/feats --checkpoint exp/avsr/model_avg_10.pth \\
        --root-dir data/lrs3 --label-csv lrs3_test.csv --format npy

Steps:

1. A checkpoint: ``--checkpoint``, or (default) a tiny audio-visual model (ResNet video +
   1D-ResNet audio, gated fusion) trained for 1 epoch with ``train.py`` on a generated corpus
   in ``OUT/data`` (the command line is printed).
2. Load it with ``Recognizer.from_pretrained`` (weights + stored config + tokenizer).
3. For each clip (``--clips`` mp4 files, the clips of ``--label-csv``, or by default the test
   split of the generated corpus), prepare the inputs as ``eval.py`` does
   (``Recognizer.load_clip``) and run the model's stages under ``torch.no_grad()``:

   ============== ================================ ========================================
   name           what                             shape, rate
   ============== ================================ ========================================
   vision_frontend ``model.vision_frontend`` (AV) / ``(T_v, D_v)`` at the frontend's rate
                  ``model.frontend`` (video model) (ResNet: ``D_v = 8 * resnet_width``, 25 Hz)
   audio_frontend ``model.audio_frontend`` (AV) /  ``(T_a, D_a)`` at its rate (1D ResNet:
                  ``model.frontend`` (audio model) ``8 * resnet_width``, 25 Hz; Whisper/WavLM 50 Hz)
   fused          fusion (AV) or projection output ``(T, adim)``, the slower stream's rate
   encoder        Conformer output (what CTC and    ``(T, adim)``, same rate as ``fused``
                  the decoder read)
   ============== ================================ ========================================

   ``T`` is the clip's real length in frames (no padding: clips are processed one at a time).
4. Save ``OUT/features/<clip>.pt`` — a dict ``{"features": {name: float32 (T, D)},
   "frame_rate": {name: Hz}, "clip": path, "checkpoint": path}`` (``torch.load`` it) — or with
   ``--format npy`` one ``OUT/features/<clip>.<name>.npy`` per stage; plus
   ``OUT/features/index.json`` listing every clip's shapes.
"""

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
from espnet.training.tiny_models import make_corpus, train_tiny  # noqa: E402
from espnet.asr.pretrained import Recognizer  # noqa: E402

import torch  # noqa: E402


@torch.no_grad()
def extract(model, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Per-stage features ``(T, D)`` of one clip (unbatched ``inputs`` from ``Recognizer.load_clip``)."""
    from espnet.asr.recognizer import batch_of_one

    batch = batch_of_one(inputs)
    out: Dict[str, torch.Tensor] = {}
    if model.modality == "audiovisual":
        for name, key, frontend in (("vision_frontend", "video", model.vision_frontend),
                                    ("audio_frontend", "audio", model.audio_frontend)):
            feats, lengths = frontend(batch[key], batch[f"{key}_lengths"])
            out[name] = feats[0, : int(lengths[0])]
    else:
        key = model.modality
        feats, lengths = model.frontend(batch[key], batch[f"{key}_lengths"])
        out["vision_frontend" if key == "video" else "audio_frontend"] = feats[0, : int(lengths[0])]
    fused, lengths = model.fuse_frontends(batch)
    out["fused"] = fused[0, : int(lengths[0])]
    enc, enc_lengths = model.encode(batch)
    out["encoder"] = enc[0, : int(enc_lengths[0])]
    return {k: v.float().contiguous() for k, v in out.items()}


def frame_rates(model) -> Dict[str, float]:
    """Frames per second of each stage of :func:`extract`."""
    if model.modality == "audiovisual":
        rates = {"vision_frontend": model.vision_frontend.frame_rate, "audio_frontend": model.audio_frontend.frame_rate}
        fused = min(rates.values())  # the fusion aligns both streams to the slower rate
    else:
        name = "vision_frontend" if model.modality == "video" else "audio_frontend"
        rates = {name: model.frontend.frame_rate}
        fused = model.frontend.frame_rate
    return {**{k: float(v) for k, v in rates.items()}, "fused": float(fused), "encoder": float(fused)}


def clip_list(args: argparse.Namespace, corpus: Optional[Dict[str, str]]) -> List[str]:
    """The mp4 files to process, from ``--clips``, ``--label-csv`` or the generated corpus
    (its test split; generated when ``corpus`` is ``None``)."""
    from datamodule.data_module import label_path
    from datamodule.label_list import read_label_list

    if args.clips:
        missing = [c for c in args.clips if not os.path.isfile(c)]
        if missing:
            raise SystemExit(f"--clips: file not found: {missing[0]}")
        return list(args.clips)
    if args.label_csv:
        if not args.root_dir:
            raise SystemExit("--label-csv needs --root-dir (the media are ROOT/<dataset>/<rel_path>)")
        items = read_label_list(label_path(args.root_dir, args.label_csv))
        return [os.path.join(args.root_dir, u.dataset, u.rel_path) for u in items]
    corpus = corpus or make_corpus(os.path.join(args.out, "data"))
    return [os.path.join(corpus["root"], u.dataset, u.rel_path) for u in read_label_list(corpus["test"])]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output folder (features under OUT/features).")
    p.add_argument("--checkpoint", default=None,
                   help="Checkpoint. Default: train a tiny audio-visual model on a generated corpus.")
    p.add_argument("--clips", nargs="+", default=None, help="mp4 clips (25 fps, 96x96 mouth crops; .wav next to them).")
    p.add_argument("--root-dir", default=None, help="Dataset root for --label-csv.")
    p.add_argument("--label-csv", default=None, help="Label list whose clips to process (in ROOT/labels or a path).")
    p.add_argument("--format", default="pt", choices=["pt", "npy"], help="File format. (Default: pt)")
    p.add_argument("--epochs", type=int, default=1, help="Epochs of the tiny model. (Default: 1)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import numpy as np

    torch.manual_seed(0)
    checkpoint, corpus = args.checkpoint, None
    if checkpoint is None:
        corpus = make_corpus(os.path.join(args.out, "data"))
        checkpoint = train_tiny(corpus, os.path.join(args.out, "exp"), "audiovisual", args.epochs)
    clips = clip_list(args, corpus)
    recognizer = Recognizer.from_pretrained(checkpoint)
    model = recognizer.model
    rates = frame_rates(model)
    feature_dir = os.path.join(args.out, "features")
    common = os.path.commonpath([os.path.dirname(os.path.abspath(c)) for c in clips])
    index = {"checkpoint": checkpoint, "modality": model.modality, "frame_rate": rates, "format": args.format,
             "clips": []}
    for clip in clips:
        feats = extract(model, recognizer.load_clip(clip))
        stem = os.path.join(feature_dir, os.path.splitext(os.path.relpath(os.path.abspath(clip), common))[0])
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        if args.format == "pt":
            files = [stem + ".pt"]
            torch.save({"features": feats, "frame_rate": rates, "clip": clip, "checkpoint": checkpoint}, files[0])
        else:
            files = []
            for name, value in feats.items():
                files.append(f"{stem}.{name}.npy")
                np.save(files[-1], value.numpy())
        shapes = {k: list(v.shape) for k, v in feats.items()}
        index["clips"].append({"clip": clip, "files": files, "shapes": shapes})
        print(f"{os.path.relpath(files[0], args.out)}: " + ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items()))
    with open(os.path.join(feature_dir, "index.json"), "w", encoding="utf8") as handle:
        json.dump(index, handle, indent=2)
    print(f"frame rates (Hz): {rates}")
    print(f"wrote features of {len(clips)} clips to {feature_dir} (index: {os.path.join(feature_dir, 'index.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
