"""Decode a label list with a trained model and compute the corpus WER."""

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from datamodule.data_module import build_dataset
from datamodule.media import SAMPLE_RATE, VIDEO_FPS
from datamodule.noise import load_noise, resolve_noise_file
from datamodule.text_transform import TextTransform
from espnet.asr.fallback import FallbackOptions, recognize_guarded
from espnet.asr.recognizer import STREAMS, DecodeOptions
from espnet.asr.repetition import GuardOptions, HypothesisCheck
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
    left_out: List[Dict[str, str]] = field(default_factory=list)  # {"path", "reason"} (--skip-invalid)
    checks: List[HypothesisCheck] = field(default_factory=list)  # the guard's findings, per utterance
    fallback_used: int = 0  # hypotheses that were decoded again by sampling

    @property
    def repeating(self) -> int:
        """Hypotheses the guard finds repeating (see :mod:`espnet.asr.repetition`)."""
        return sum(c.repeating for c in self.checks)

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
            "left_out": self.left_out,
            "repeating_hypotheses": self.repeating,
            "resampled_hypotheses": self.fallback_used,
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
    """Build the model and load ``state`` strictly, with an error that says what differs
    (without drawing random weights first when the load overwrites them all)."""
    from espnet.utils.skip_weight_init import skip_weight_init

    with skip_weight_init() if not config.use_qlora else contextlib.nullcontext():
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
        return item["audio"].size(0) / SAMPLE_RATE
    return item["video"].size(0) / VIDEO_FPS


def evaluate(
    model: E2E,
    text_transform: Optional[TextTransform],
    root_dir: str,
    test_file: str,
    options: Optional[DecodeOptions] = None,
    snr_target: Optional[float] = None,
    noise_file: Optional[str] = None,
    seed: int = 0,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
    wer_normalizer: str = "lower",
    skip_lines: AbstractSet[int] = frozenset(),
    batch_size: int = DEFAULT_BATCH_SIZE,
    drop_stream: Optional[str] = None,
    skip_invalid: bool = False,
    guard: GuardOptions = GuardOptions(),
    fallback: Optional[FallbackOptions] = None,
) -> EvalResult:
    """Decode every utterance of ``test_file`` and score it.

    Utterances are decoded ``batch_size`` at a time, in batches of similar length, by the
    model's decoder as ``options`` say (:class:`DecodeOptions`, default: its defaults;
    :func:`espnet.asr.recognizer.recognize_batch`: the joint CTC/attention beam search, the
    decoder's own one-pass decoding (Paraformer), or with ``mode`` ``ctc-greedy`` the CTC
    head's best path; each utterance gets the hypothesis it gets alone); the results keep the order of
    ``test_file``. The reference is the transcript column, else the text of the
    SentencePiece ids (``text_transform``). A model whose pretrained weights are bfloat16
    (``pretrained_dtype``) decodes under bf16 autocast. ``skip_lines``: label-list lines
    left out (``--skip-invalid``). ``drop_stream`` (``video`` / ``audio``, audio-visual
    models): decode every utterance without that stream (the model's learned stand-in takes
    its place); lines marked ``|missing=...`` lack their stream in any case.

    An utterance whose media hold NaN/inf values (which headers cannot show, so the
    pre-flight check does not see them) is an error naming its file, or with
    ``skip_invalid`` left out of the decoding and the WER and listed in ``left_out``.

    Every hypothesis is checked by ``guard`` (:mod:`espnet.asr.repetition`; its findings go
    into its row and ``checks``); with ``fallback`` a failed one is decoded again by sampling
    at rising temperatures (:mod:`espnet.asr.fallback`)."""
    if snr_target is not None and (model.modality == "video" or drop_stream == "audio"):
        raise ValueError("--decode-snr-target adds noise to audio, but " +
                         ("this model is video-only" if model.modality == "video" else "--drop-stream audio removes it"))
    model.decoder.check_tokenizer(text_transform)
    options = DecodeOptions() if options is None else options
    model.decoder.check_options(options)
    normalize = text_normalizer(wer_normalizer, list(model.config.model_names().values()))
    noise = load_noise(resolve_noise_file(root_dir, noise_file)) if snr_target is not None else None
    dataset = build_dataset(root_dir, test_file, "test", model.modality, noise=noise,
                            snr_target=snr_target, seed=seed, audio_utterance_norm=model.audio_utterance_norm,
                            skip_lines=skip_lines, drop_streams=frozenset([drop_stream] if drop_stream else []))
    batches = length_sorted_batches(dataset.input_lengths, batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=list, num_workers=num_workers)
    model = model.to(device).eval()

    def reference(item: Dict[str, Any]) -> str:
        if item.get("text") is not None:
            return item["text"]
        if text_transform is None:
            raise ValueError(f"{dataset.media_path(int(item['idx']))}: the label list has no transcript for this "
                             "utterance and no --sp-model-path/--dict-path was given to recover it")
        return text_transform.post_process(item["target"])

    bf16 = model.config.pretrained_dtype == "bfloat16"
    rows: List[Optional[Dict[str, Any]]] = [None] * len(dataset)
    audio_seconds = 0.0
    start = time.perf_counter()
    left_out: List[Dict[str, str]] = []
    checks: List[Optional[HypothesisCheck]] = [None] * len(dataset)
    with tqdm(total=len(dataset), desc="decoding", disable=not progress, unit="utt") as bar:
        for items in loader:
            valid = []
            for item in items:
                problem = nonfinite_media(item, dataset.media_path(int(item["idx"])))
                if problem is None:
                    valid.append(item)
                elif skip_invalid:
                    left_out.append({"path": dataset.media_path(int(item["idx"])), "reason": problem})
                else:
                    raise ValueError(f"{problem}; fix or remove the file, or pass --skip-invalid to leave such "
                                     f"utterances out of the decoding and the WER")
            bar.update(len(items) - len(valid))
            items = valid
            if not items:
                continue
            inputs = [{k: item[k].to(device) for k in STREAMS if k in item} for item in items]
            with torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                hyps = recognize_guarded(model, inputs, options, text_transform, guard, fallback)
            for item, hyp in zip(items, hyps):
                row = {"path": dataset.media_path(int(item["idx"])), "reference": reference(item),
                       "hypothesis": hyp.text}
                if hyp.decoded.score is not None:
                    row["score"] = hyp.decoded.score
                row.update(hyp.check.to_json())
                if fallback is not None:
                    row["temperature"] = hyp.temperature
                rows[int(item["idx"])] = row
                checks[int(item["idx"])] = hyp.check
                audio_seconds += media_seconds(item)
            bar.update(len(items))
    seconds = time.perf_counter() - start
    kept = [i for i, r in enumerate(rows) if r is not None]
    rows = [rows[i] for i in kept]
    if not rows:
        raise ValueError(f"{test_file}: no utterance is left to decode after leaving out {len(left_out)} with "
                         f"NaN/inf media (--skip-invalid)")
    scores = corpus_wer([r["reference"] for r in rows], [r["hypothesis"] for r in rows], normalize)
    return EvalResult(scores["wer"], len(rows), scores["errors"], scores["ref_words"], seconds, rows, audio_seconds,
                      left_out, [checks[i] for i in kept], sum(r.get("temperature", 0.0) > 0 for r in rows))


def nonfinite_media(item: Dict[str, Any], media_path: str) -> Optional[str]:
    """``"<file>: the audio holds NaN/inf values"`` (or the video) for an item of the dataset
    whose input is not finite, else ``None`` (the item is normalised already, which may have
    spread one NaN sample over the whole utterance, so no count is given)."""
    from datamodule.media import wav_path

    for stream in STREAMS:
        data = item.get(stream)
        if isinstance(data, torch.Tensor) and data.is_floating_point() and not bool(torch.isfinite(data).all()):
            return f"{wav_path(media_path) if stream == 'audio' else media_path}: the {stream} holds NaN/inf values"
    return None


def check_output_file(path: str, flag: str) -> None:
    """Refuse, before any work, an output file that could not be written: ``path`` is a
    directory, or its nearest existing ancestor is not a directory (``FILE/x.json``) or not
    writable. The missing folders in between are created when the file is written."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise IsADirectoryError(f"{flag} {path}: is a directory; give a file name")
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise PermissionError(f"{flag} {path}: the file exists and is not writable")
    ancestor = os.path.dirname(full)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError(f"{flag} {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: cannot write into {ancestor} (permission denied)")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by ``None`` (JSON has no such numbers:
    ``json.dump`` would write a bare ``NaN``, which JSON readers refuse)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(result: EvalResult, path: str) -> None:
    """``result`` as JSON at ``path`` (written beside and renamed; a NaN/inf number, which JSON
    has not, is written as ``null``: :func:`json_safe`)."""
    from espnet.utils.atomic_write import atomic_json_dump

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_json_dump(json_safe(result.to_json()), path, ensure_ascii=False)
