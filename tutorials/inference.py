"""Tutorial: recognise one clip with a trained checkpoint — audio-only, video-only and
audio-visual.

    python tutorials/inference.py --out exp/tutorial_inference
    python tutorials/inference.py --out exp/x --checkpoint exp/avsr/model_avg_10.pth --clip data/lrs3/lrs3/test/spk/00001.mp4

Steps:

1. A checkpoint. With ``--checkpoint`` (repeatable) those are used. Otherwise the script
   generates a small GRID-style corpus (``preparation.synthetic_av``, 40 utterances) in
   ``OUT/data`` and trains three tiny models with ``train.py`` (audio ``--audio-encoder
   resnet1d``, video ``--vision-encoder resnet``, audio-visual both + ``--fusion-type gated``),
   2 epochs each; the exact ``train.py`` command lines are printed. Such tiny, briefly
   trained models give poor (possibly empty) hypotheses: the point is the mechanics.
2. Load it with the project's model API, ``Recognizer.from_pretrained(checkpoint)``
   (:mod:`espnet.asr.pretrained`): it reads the weights and the model config stored with them
   (``model_avg_N.pth`` + its ``model_avg_N.json`` sidecar, a Lightning ``epoch=N.ckpt``, an
   exported folder), finds the tokenizer the model was trained with and builds the model in
   eval mode.
3. Prepare the clip exactly as ``eval.py`` does (``Recognizer.load_clip``, the dataset's own
   clip loader): the video is a 25 fps mp4 of 96×96 mouth crops (what
   ``preparation.prepare_dataset`` writes) → centre 88×88, grayscale, normalised,
   ``(T, 1, 88, 88)``; the audio is the 16 kHz ``.wav`` next to it (or the mp4's own audio
   stream), utterance-normalised, ``(S, 1)``; for audio-visual models it is cut/padded to 640
   samples per video frame.
4. Decode (``Recognizer.transcribe``): the joint CTC/attention beam search (``--beam-size``,
   ``--ctc-weight``), the same for the Transformer, LLM and Whisper decoders.

Prints ``hypothesis [<modality>]: <text>`` per checkpoint (and the reference when the clip
has a transcript) and writes ``OUT/inference.json``. To decode a whole label list and get a
WER, use ``eval.py``.
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
from espnet.asr.pretrained import Recognizer  # noqa: E402
from espnet.training.tiny_models import make_corpus, train_tiny  # noqa: E402

import torch  # noqa: E402

MODALITIES = ("audio", "video", "audiovisual")


def default_clip(corpus: Dict[str, str]) -> Tuple[str, str]:
    """The first test utterance of the generated corpus: ``(mp4 path, reference text)``."""
    from datamodule.label_list import read_label_list

    first = read_label_list(corpus["test"])[0]
    return os.path.join(corpus["root"], first.dataset, first.rel_path), first.transcript or ""


def reference_of(video_path: str) -> str:
    """The transcript in the ``.txt`` next to the clip (LRS ``Text:`` or plain), or ``""``."""
    from preparation.corpus import read_transcript

    txt = os.path.splitext(video_path)[0] + ".txt"
    if not os.path.isfile(txt):
        return ""
    with open(txt, encoding="utf8") as handle:
        layout = "lrs" if handle.readline().startswith("Text:") else "plain"
    return read_transcript(txt, layout)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="Output folder (corpus, models, inference.json).")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="Checkpoint(s) to decode with (repeatable). Default: train tiny audio, video and "
                        "audio-visual models on a generated corpus.")
    p.add_argument("--clip", default=None, help="25 fps mp4 of 96x96 mouth crops (audio: the .wav next to it or the "
                                                "mp4's audio). Default: the first test clip of the generated corpus.")
    p.add_argument("--epochs", type=int, default=2, help="Epochs of each tiny model. (Default: 2)")
    p.add_argument("--beam-size", type=int, default=5, help="Beam size. (Default: 5)")
    p.add_argument("--ctc-weight", type=float, default=0.3, help="CTC weight in decoding. (Default: 0.3)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    checkpoints: List[str] = list(args.checkpoint)
    clip, reference = args.clip, ""
    if not checkpoints or clip is None:
        corpus = make_corpus(os.path.join(args.out, "data"))
        if clip is None:
            clip, reference = default_clip(corpus)
        if not checkpoints:
            checkpoints = [train_tiny(corpus, os.path.join(args.out, "exp"), m, args.epochs) for m in MODALITIES]
    if not os.path.isfile(clip):
        raise SystemExit(f"--clip: file not found: {clip}")
    reference = reference or reference_of(clip)

    results = []
    print(f"\nclip: {clip}")
    if reference:
        print(f"reference: {reference}")
    for checkpoint in checkpoints:
        recognizer = Recognizer.from_pretrained(checkpoint)
        model = recognizer.model
        inputs = recognizer.load_clip(clip)
        start = time.perf_counter()
        text = recognizer.transcribe(inputs, beam_size=args.beam_size, ctc_weight=args.ctc_weight)
        seconds = time.perf_counter() - start
        shapes = {k: list(v.shape) for k, v in inputs.items()}
        print(f"hypothesis [{model.modality}]: {text}")
        print(f"    checkpoint {checkpoint}; inputs {shapes}; decoded in {seconds:.2f} s")
        results.append({"modality": model.modality, "checkpoint": checkpoint, "clip": clip, "inputs": shapes,
                        "reference": reference, "hypothesis": text, "decode_seconds": seconds})
    out = os.path.join(args.out, "inference.json")
    with open(out, "w", encoding="utf8") as handle:
        json.dump(results, handle, indent=2)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
