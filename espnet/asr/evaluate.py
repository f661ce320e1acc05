"""Decode a label list with a trained model and compute the corpus WER."""

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from tqdm import tqdm

from datamodule.data_module import build_dataset
from datamodule.noise import load_noise, resolve_noise_file
from datamodule.text_transform import TextTransform
from espnet.asr.recognizer import STREAMS, build_beam_search, recognize_batch, recognize_text
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
    audio_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Decode seconds per second of input media."""
        return self.seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")

    def to_json(self) -> Dict[str, Any]:
        return {
            "wer": self.wer,
            "num_utterances": self.num_utterances,
            "word_errors": self.errors,
            "reference_words": self.ref_words,
            "decode_seconds": self.seconds,
            "audio_seconds": self.audio_seconds,
            "real_time_factor": self.real_time_factor,
            "utterances": self.utterances,
        }


def corpus_wer(refs: List[str], hyps: List[str]) -> Dict[str, float]:
    """Case-insensitive corpus WER: total word edits / total reference words (jiwer)."""
    import jiwer

    out = jiwer.process_words([r.lower() for r in refs], [h.lower() for h in hyps])
    errors = out.substitutions + out.deletions + out.insertions
    n_ref = out.substitutions + out.deletions + out.hits
    return {"wer": out.wer, "errors": errors, "ref_words": n_ref}


def load_model(config: ModelConfig, state: Dict[str, torch.Tensor], source: str) -> E2E:
    """Build the model and load ``state`` strictly, with an error that says what differs."""
    model = E2E(config)
    load_state_checked(model, state, source)
    return model.eval()


DEFAULT_BATCH_SIZE = 8


def length_sorted_batches(lengths: List[int], batch_size: int) -> List[List[int]]:
    """Indices in batches of ``batch_size`` utterances of similar length (longest first)."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def media_seconds(item: Dict[str, Any]) -> float:
    """Duration of one utterance: audio samples at 16 kHz, else video frames at 25 fps."""
    if "audio" in item:
        return item["audio"].size(0) / 16000
    return item["video"].size(0) / 25


def evaluate(
    model: E2E,
    text_transform: TextTransform,
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
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> EvalResult:
    """Decode every utterance of ``test_file`` and score it.

    Utterances are decoded ``batch_size`` at a time, in batches of similar length (see
    :func:`espnet.asr.recognizer.recognize_batch`: the hypotheses equal one-at-a-time
    decoding); the results keep the order of ``test_file``.

    A decoder with its own tokenizer (``uses_text``: ``--decoder llama`` /
    ``whisper-decoder``) decodes with its HF ``generate`` (beam ``beam_size``, at most
    ``max_new_tokens``); the reference is the transcript column, else the text recovered
    from the SentencePiece ids. ``ctc_weight`` is then unused."""
    if snr_target is not None and model.modality == "video":
        raise ValueError("--decode-snr-target adds noise to audio, but this model is video-only")
    noise = load_noise(resolve_noise_file(root_dir, noise_file)) if snr_target is not None else None
    dataset = build_dataset(root_dir, test_file, "test", model.modality, noise=noise,
                            snr_target=snr_target, seed=seed)
    batches = length_sorted_batches(dataset.input_lengths, batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=list, num_workers=num_workers)
    model = model.to(device).eval()
    if getattr(model, "uses_text", False):
        if beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {beam_size}")

        def decode(inputs, items):
            texts = recognize_text(model, inputs, beam_size=beam_size, max_new_tokens=max_new_tokens)
            return [(item.get("text") or text_transform.post_process(item["target"]), text, {})
                    for item, text in zip(items, texts)]
    else:
        search = build_beam_search(model, beam_size=beam_size, ctc_weight=ctc_weight)

        def decode(inputs, items):
            return [(text_transform.post_process(item["target"]), text_transform.post_process(hyp.yseq[1:]),
                     {"score": hyp.score}) for item, hyp in zip(items, recognize_batch(model, search, inputs))]

    rows: List[Optional[Dict[str, Any]]] = [None] * len(dataset)
    audio_seconds = 0.0
    start = time.perf_counter()
    with tqdm(total=len(dataset), desc="decoding", disable=not progress, unit="utt") as bar:
        for items in loader:
            inputs = [{k: item[k].to(device) for k in STREAMS if k in item} for item in items]
            for item, (ref_text, hyp_text, extra) in zip(items, decode(inputs, items)):
                rows[int(item["idx"])] = {"path": dataset.media_path(int(item["idx"])), "reference": ref_text,
                                          "hypothesis": hyp_text, **extra}
                audio_seconds += media_seconds(item)
            bar.update(len(items))
    seconds = time.perf_counter() - start
    scores = corpus_wer([r["reference"] for r in rows], [r["hypothesis"] for r in rows])
    return EvalResult(scores["wer"], len(rows), scores["errors"], scores["ref_words"], seconds, rows, audio_seconds)


def write_json(result: EvalResult, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf8") as handle:
        json.dump(result.to_json(), handle, indent=2, ensure_ascii=False)
