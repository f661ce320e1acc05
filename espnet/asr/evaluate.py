"""Decode a label list with a trained model and compute the corpus WER."""

import json
import os
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Dict, List, Optional

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
    skip_lines: AbstractSet[int] = frozenset(),
) -> EvalResult:
    """Decode every utterance of ``test_file`` one at a time and score it.

    A decoder with its own tokenizer (``uses_text``: ``--decoder llama`` /
    ``whisper-decoder``) decodes with its HF ``generate`` (beam ``beam_size``, at most
    ``max_new_tokens``); the reference is the transcript column, else the text recovered
    from the SentencePiece ids. ``ctc_weight`` is then unused. ``skip_lines``: label-list
    lines left out (``--skip-invalid``)."""
    if snr_target is not None and model.modality == "video":
        raise ValueError("--decode-snr-target adds noise to audio, but this model is video-only")
    noise = load_noise(resolve_noise_file(root_dir, noise_file)) if snr_target is not None else None
    dataset = build_dataset(root_dir, test_file, "test", model.modality, noise=noise,
                            snr_target=snr_target, seed=seed, skip_lines=skip_lines)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers)
    model = model.to(device).eval()
    if getattr(model, "uses_text", False):
        if beam_size < 1:
            raise ValueError(f"--beam-size must be >= 1, got {beam_size}")

        def decode(inputs, item):
            hyp_text = recognize_text(model, inputs, beam_size=beam_size, max_new_tokens=max_new_tokens)[0]
            ref_text = item.get("text") or text_transform.post_process(item["target"])
            return ref_text, hyp_text, {}
    else:
        search = build_beam_search(model, beam_size=beam_size, ctc_weight=ctc_weight)

        def decode(inputs, item):
            hyp = recognize(model, search, inputs)
            return (text_transform.post_process(item["target"]), text_transform.post_process(hyp.yseq[1:]),
                    {"score": hyp.score})

    refs, hyps, rows = [], [], []
    start = time.perf_counter()
    for item in tqdm(loader, total=len(dataset), desc="decoding", disable=not progress, unit="utt"):
        ref_text, hyp_text, extra = decode({k: item[k].to(device) for k in STREAMS if k in item}, item)
        refs.append(ref_text)
        hyps.append(hyp_text)
        rows.append({"path": dataset.media_path(int(item["idx"])), "reference": ref_text,
                     "hypothesis": hyp_text, **extra})
    seconds = time.perf_counter() - start
    scores = corpus_wer(refs, hyps)
    return EvalResult(scores["wer"], len(rows), scores["errors"], scores["ref_words"], seconds, rows)


def write_json(result: EvalResult, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf8") as handle:
        json.dump(result.to_json(), handle, indent=2, ensure_ascii=False)
