"""Decode a label list with a trained model and compute the corpus WER."""

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from datamodule.data_module import build_dataset
from datamodule.noise import load_noise, resolve_noise_file
from datamodule.text_transform import TextTransform
from espnet.asr.recognizer import STREAMS, build_beam_search, recognize, recognize_text
from espnet.nets.pytorch_backend.e2e_asr_conformer import E2E
from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.training.checkpoints import load_state_checked


@dataclass
class EvalResult:
    wer: float
    num_utterances: int
    errors: int
    ref_words: int
    seconds: float
    utterances: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {
            "wer": self.wer,
            "num_utterances": self.num_utterances,
            "word_errors": self.errors,
            "reference_words": self.ref_words,
            "decode_seconds": self.seconds,
            "utterances": self.utterances,
        }


WER_NORMALIZERS = ("lower", "whisper")


def text_normalizer(kind: str, model_dirs: Sequence[Optional[str]] = ()) -> Callable[[str], str]:
    """How texts are normalised before scoring: ``lower`` (case-insensitive words, the
    Auto-AVSR scoring) or ``whisper`` (Whisper's English text normaliser: lower case, no
    punctuation, numbers and spellings standardised; the British-to-American spelling
    map is read from a ``normalizer.json`` in the first of ``model_dirs`` that has one)."""
    if kind == "lower":
        return str.lower
    if kind != "whisper":
        raise ValueError(f"--wer-normalizer must be one of {', '.join(WER_NORMALIZERS)}, got {kind!r}")
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    spelling: Dict[str, str] = {}
    for directory in model_dirs:
        path = os.path.join(os.path.expanduser(directory), "normalizer.json") if directory else ""
        if path and os.path.isfile(path):
            with open(path, encoding="utf8") as handle:
                spelling = json.load(handle)
            break
    else:
        print("note: --wer-normalizer whisper: no normalizer.json in the model directories, so British "
              "spellings are not mapped to American ones", file=sys.stderr)
    return EnglishTextNormalizer(spelling)


def corpus_wer(refs: List[str], hyps: List[str], normalize: Callable[[str], str] = str.lower) -> Dict[str, float]:
    """Corpus WER: total word edits / total reference words (jiwer), after ``normalize``
    (default: case-insensitive). An utterance whose normalised reference is empty counts
    its hypothesis words as insertions."""
    import jiwer

    refs, hyps = [normalize(r) for r in refs], [normalize(h) for h in hyps]
    out = jiwer.process_words(refs, hyps)
    errors = out.substitutions + out.deletions + out.insertions
    n_ref = out.substitutions + out.deletions + out.hits
    return {"wer": out.wer, "errors": errors, "ref_words": n_ref}


def load_model(config: ModelConfig, state: Dict[str, torch.Tensor], source: str) -> E2E:
    """Build the model and load ``state`` strictly, with an error that says what differs."""
    model = E2E(config)
    load_state_checked(model, state, source)
    return model.eval()


def evaluate(
    model: E2E,
    text_transform: Optional[TextTransform],
    root_dir: str,
    test_file: str,
    beam_size: int = 40,
    ctc_weight: float = 0.1,
    snr_target: Optional[float] = None,
    noise_file: Optional[str] = None,
    seed: int = 0,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    max_new_tokens: int = 64,
    wer_normalizer: str = "lower",
    skip_lines: AbstractSet[int] = frozenset(),
) -> EvalResult:
    """Decode every utterance of ``test_file`` one at a time and score it.

    A decoder with its own tokenizer (``uses_text``: ``--decoder llama`` /
    ``whisper-decoder``) decodes with its HF ``generate`` (beam ``beam_size``, at most
    ``max_new_tokens``); the reference is the transcript column, else the text recovered
    from the SentencePiece ids (``text_transform``; ``None`` needs transcripts).
    ``ctc_weight`` is then unused. A model whose pretrained weights are bfloat16
    (``pretrained_dtype``) decodes under bf16 autocast. ``skip_lines``: label-list lines
    left out (``--skip-invalid``)."""
    if snr_target is not None and model.modality == "video":
        raise ValueError("--decode-snr-target adds noise to audio, but this model is video-only")
    uses_text = getattr(model, "uses_text", False)
    if text_transform is None and not uses_text:
        raise ValueError("decoding SentencePiece tokens needs the tokenizer: give --sp-model-path and --dict-path")
    normalize = text_normalizer(wer_normalizer, list(model.config.model_names().values()))
    noise = load_noise(resolve_noise_file(root_dir, noise_file)) if snr_target is not None else None
    dataset = build_dataset(root_dir, test_file, "test", model.modality, noise=noise,
                            snr_target=snr_target, seed=seed, audio_utterance_norm=model.audio_utterance_norm,
                            skip_lines=skip_lines)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    model = model.to(device).eval()
    if uses_text:
        if beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {beam_size}")

        def reference(item) -> str:
            if item.get("text") is not None:
                return item["text"]
            if text_transform is None:
                raise ValueError(f"{dataset.media_path(int(item['idx']))}: the label list has no transcript for "
                                 "this utterance and no --sp-model-path/--dict-path was given to recover it")
            return text_transform.post_process(item["target"])

        def decode(inputs, item):
            hyp_text = recognize_text(model, inputs, beam_size=beam_size, max_new_tokens=max_new_tokens)[0]
            return reference(item), hyp_text, {}
    else:
        search = build_beam_search(model, beam_size=beam_size, ctc_weight=ctc_weight)

        def decode(inputs, item):
            hyp = recognize(model, search, inputs)
            return (text_transform.post_process(item["target"]), text_transform.post_process(hyp.yseq[1:]),
                    {"score": hyp.score})

    bf16 = model.config.pretrained_dtype == "bfloat16"
    refs, hyps, rows = [], [], []
    start = time.perf_counter()
    for item in tqdm(loader, total=len(dataset), desc="decoding", disable=not progress, unit="utt"):
        inputs = {k: item[k].to(device) for k in STREAMS if k in item}
        with torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            ref_text, hyp_text, extra = decode(inputs, item)
        refs.append(ref_text)
        hyps.append(hyp_text)
        rows.append({"path": dataset.media_path(int(item["idx"])), "reference": ref_text,
                     "hypothesis": hyp_text, **extra})
    seconds = time.perf_counter() - start
    scores = corpus_wer(refs, hyps, normalize)
    return EvalResult(scores["wer"], len(rows), scores["errors"], scores["ref_words"], seconds, rows)


def write_json(result: EvalResult, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf8") as handle:
        json.dump(result.to_json(), handle, indent=2, ensure_ascii=False)
