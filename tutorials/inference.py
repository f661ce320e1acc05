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
2. Load it: :func:`load_recognizer` reads the weights and the model config stored with them
   (``model_avg_N.pth`` + its ``model_avg_N.json`` sidecar, or a Lightning ``epoch=N.ckpt``),
   finds the tokenizer the model was trained with and builds the model (``E2E``) in eval mode.
3. Prepare the clip exactly as ``eval.py`` does (:func:`load_clip`): the video is a 25 fps
   mp4 of 96×96 mouth crops (what ``preparation.prepare_dataset`` writes) → centre 88×88,
   grayscale, normalised, ``(T, 1, 88, 88)``; the audio is the 16 kHz ``.wav`` next to it (or
   the mp4's own audio stream), utterance-normalised, ``(S, 1)``; for audio-visual models it is
   cut/padded to 640 samples per video frame.
4. Decode (:func:`transcribe`): the joint CTC/attention beam search (``--beam-size``,
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_corpus, train_tiny  # noqa: E402  (also puts the repository on sys.path)

import torch  # noqa: E402

MODALITIES = ("audio", "video", "audiovisual")


def load_recognizer(checkpoint: str, sp_model_path: Optional[str] = None, dict_path: Optional[str] = None):
    """A trained model (eval mode) and its tokenizer from a checkpoint of this project.

    Args:
        checkpoint: ``model_avg_N.pth`` (with its ``.json`` sidecar) or a Lightning ``.ckpt``.
        sp_model_path, dict_path: Tokenizer files; default: the ones recorded at training time.

    Returns:
        ``(model, tokenizer)``: an ``E2E`` and a ``TextTransform``.
    """
    from datamodule.text_transform import TextTransform
    from espnet.asr.evaluate import load_model
    from espnet.nets.pytorch_backend.model_config import ModelConfig
    from espnet.training.checkpoints import load_checkpoint

    state, config, meta = load_checkpoint(checkpoint)
    if config is None:
        raise SystemExit(f"{checkpoint} records no model config (an original Auto-AVSR checkpoint?); decode it with "
                         f"eval.py, giving --modality, the model sizes and the tokenizer")
    sp_model_path = sp_model_path or meta.get("sp_model_path")
    dict_path = dict_path or meta.get("dict_path")
    if not sp_model_path or not dict_path:
        raise SystemExit(f"{checkpoint} records no tokenizer; give --sp-model-path and --dict-path")
    tokenizer = TextTransform(sp_model_path, dict_path)
    model = load_model(ModelConfig.from_dict(config), state, checkpoint)
    return model, tokenizer


def load_clip(video_path: str, model, audio_path: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Unbatched model inputs of one clip, prepared as ``eval.py`` prepares a test utterance.

    Args:
        video_path: 25 fps mp4 of 96×96 mouth crops.
        model: The recogniser: its modality says which streams to load, and its audio
            frontend whether the waveform is layer-normed (the 1D-ResNet) or kept at its
            recorded level (Whisper, WavLM).
        audio_path: 16 kHz audio; default: the ``.wav`` next to the video, else the video's
            own audio stream.

    Returns:
        ``{"video": (T, 1, 88, 88) float}`` and/or ``{"audio": (S, 1) float}`` (16 kHz).
    """
    from datamodule.av_dataset import SAMPLES_PER_FRAME, cut_or_pad
    from datamodule.media import load_audio, load_video
    from datamodule.transforms import AudioTransform, VideoTransform

    inputs: Dict[str, torch.Tensor] = {}
    modality = model.modality
    if modality in ("video", "audiovisual"):
        inputs["video"] = VideoTransform("test")(load_video(video_path))
    if modality in ("audio", "audiovisual"):
        if audio_path is None:
            wav = os.path.splitext(video_path)[0] + ".wav"
            audio_path = wav if os.path.isfile(wav) else video_path
        audio = load_audio(audio_path)
        if "video" in inputs:
            audio = cut_or_pad(audio, inputs["video"].size(0) * SAMPLES_PER_FRAME)
        inputs["audio"] = AudioTransform("test", utterance_norm=model.audio_utterance_norm)(audio)
    return inputs


def transcribe(model, tokenizer, inputs: Dict[str, torch.Tensor], beam_size: int = 5, ctc_weight: float = 0.3) -> str:
    """The best hypothesis for one clip's ``inputs`` (from :func:`load_clip`)."""
    from espnet.asr.recognizer import DecodeOptions, transcribe as decode

    # every decoder decodes the same way: joint CTC/attention beam search (the CTC head is
    # used when the model was trained with it)
    return decode(model, [inputs], DecodeOptions(beam_size=beam_size, ctc_weight=ctc_weight), tokenizer)[0]


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
        model, tokenizer = load_recognizer(checkpoint)
        inputs = load_clip(clip, model)
        start = time.perf_counter()
        text = transcribe(model, tokenizer, inputs, beam_size=args.beam_size, ctc_weight=args.ctc_weight)
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
