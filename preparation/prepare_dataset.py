"""Prepare a talking-face corpus for training: mouth crops, 16 kHz audio, label CSVs and a
tokenizer.

    python -m preparation.prepare_dataset --input-dir /data/LRS3 --out-dir data/lrs3 --dataset lrs3 \\
        --workers 4 --max-seconds 16

Input (``--layout``, detected by default):

* ``lrs`` (LRS2/LRS3): ``INPUT/<split>/<speaker>/<clip>.mp4`` + ``<clip>.txt`` whose first
  line is ``Text:  THE WORDS``; the first folder is the split (``pretrain``, ``trainval``,
  ``test``, ...).
* ``plain``: ``<clip>.mp4`` + ``<clip>.txt`` holding just the text, anywhere under INPUT;
  all clips form one split, ``--split-name`` (default ``train``).

``--split-file NAME=LIST`` (repeatable) regroups clips by list files whose lines start with
a clip id (``main/5535415699068794046/00001`` or, as in LRS2's lists,
``5535415699068794046/00001``); only listed clips are prepared. ``--splits A B`` keeps only
those splits. Audio comes from the video's audio stream, or from a ``<clip>.wav`` next to
the video when the video has none.

Output under ``--out-dir OUT``:

* ``OUT/<dataset>/<rel>.mp4``: 96×96 mouth crops at 25 fps (H.264); ``<rel>.wav``: 16 kHz
  mono 16-bit audio, cut or zero-padded to the video (640 samples per frame); ``<rel>.json``: the clip's record (status, frames, samples), written
  last — a clip is done when its record is there, was written in the same mode
  (``--already-cropped`` or not, same ``--crop-size``, same crop geometry) and its files have
  the recorded sizes.
* ``OUT/labels/<dataset>_<split>.csv``: one line per prepared clip,
  ``dataset,rel_path,input_length,token_ids,transcript`` (``input_length`` = video frames
  at 25 fps), sorted by path; ``OUT/labels/<dataset>_<split>_max<N>s.csv`` for each
  ``--max-seconds N``: the clips of at most ``N`` seconds (``25 N`` frames) — clips are
  filtered, not cut.
* ``OUT/spm/<dataset>_unigram<V>.model`` + ``_units.txt`` when no ``--sp-model-path`` /
  ``--dict-path`` is given: a SentencePiece unigram model (``--vocab-size V``, a soft
  limit) trained on the transcripts of ``--tokenizer-splits`` (default: the splits whose
  name contains ``train``, else all).

Use them with ``train.py --root-dir OUT --train-file <dataset>_<split>.csv --sp-model-path
... --dict-path ...``.

Behaviour: mouth crops come from ``preparation.mouth_crop.MouthCropper`` (Auto-AVSR's crop
geometry, grayscale, MediaPipe face detection; needs ``pip install -r
preparation/requirements.txt`` and ``pip install --no-deps -r
preparation/requirements-nodeps.txt``); ``--already-cropped`` instead takes
the videos as mouth crops and only re-times them to 25 fps, centre-crops them square,
resizes them to 96×96 and resamples the audio (no detector). Work is spread over
``--workers`` processes (one cropper each) with a progress bar. Re-running skips clips that
are done (files are written under ``*.partial.*`` names and renamed when complete, so a
killed run never leaves a file that looks finished); ``--overwrite`` redoes everything.
Clips without a detectable face are recorded (not retried), listed and left out of the
CSVs; clips whose video cannot be read are listed as failed (exit status 1); ``.wav`` files
without a video (audio-only clips) are not prepared and are listed. When no clip at all can be
prepared, nothing is written (no label CSV, no tokenizer) and the run is an error (exit status
2). A trained tokenizer learns only the transcripts of clips that were prepared. A clip whose
transcript is missing or empty is an error before any work starts, unless
``--skip-missing-transcripts`` (then it is listed and left out).
"""

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from preparation.corpus import Clip, find_clips, read_transcript

FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
CROP_SIZE = 96
AV_TOLERANCE_SECONDS = 0.1  # audio/video length difference reported in the summary
RECORD_VERSION = 1


# ---------------------------------------------------------------------------------------
# one clip


@dataclass
class Outcome:
    """What happened to one clip.

    Attributes:
        rel_path: Clip path relative to the corpus / dataset folder.
        status: ``processed`` (done now), ``skipped`` (done by an earlier run), ``no_face``,
            ``no_face_earlier`` (recorded by an earlier run) or ``failed``.
        num_frames: Video frames at 25 fps (0 unless done).
        num_samples: Audio samples written at 16 kHz: ``640 * num_frames``, or 0 when the
            clip has no audio.
        source_samples: Audio samples (16 kHz) before they were cut/padded to the video.
        message: Reason of a failure / no face.
    """

    rel_path: str
    status: str
    num_frames: int = 0
    num_samples: int = 0
    source_samples: int = 0
    message: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("processed", "skipped")


def output_paths(out_dir: str, dataset: str, rel_path: str) -> Dict[str, str]:
    """Final paths of a clip: ``mp4``, ``wav``, ``record`` (json)."""
    stem = os.path.join(out_dir, dataset, os.path.splitext(rel_path)[0])
    return {"mp4": stem + ".mp4", "wav": stem + ".wav", "record": stem + ".json"}


def partial_path(path: str) -> str:
    """``a/b.mp4`` -> ``a/b.partial.mp4`` (same extension: the muxer picks the format from it)."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.partial{ext}"


def read_done_record(paths: Dict[str, str], mode: str) -> Optional[Dict[str, Any]]:
    """The clip's record when the clip is complete for ``mode``, else ``None``.

    Complete = the record exists, is readable, was written by the same ``mode`` and, for an
    ``ok`` clip, the mp4 (and the wav when it has samples) exist with the recorded sizes.
    """
    if not os.path.isfile(paths["record"]):
        return None
    try:
        with open(paths["record"], encoding="utf8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None  # unreadable record: the clip is redone
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION or record.get("mode") != mode:
        return None
    if record.get("status") == "no_face":
        return record
    if record.get("status") != "ok":
        return None
    for key in ("mp4", "wav"):
        size = record.get(f"{key}_bytes")
        if size is None:
            continue
        if not os.path.isfile(paths[key]) or os.path.getsize(paths[key]) != size:
            return None
    return record


def _write_json_atomic(path: str, payload: Dict[str, Any]) -> None:
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf8") as handle:
        json.dump(payload, handle, indent=1)
    os.replace(tmp, path)


def _remove(path: str) -> None:
    if os.path.lexists(path):
        os.remove(path)


def process_one(cropper, clip: Clip, paths: Dict[str, str], mode: str) -> Outcome:
    """Crop one clip with ``cropper`` and write its files atomically.

    The old record is removed first, the media are written under ``*.partial.*`` names and
    renamed, and the record is written last: an interrupted clip has no record and is redone.
    The audio (from the video, else from a ``.wav`` next to it) is cut or zero-padded to the
    video's span, ``640`` samples per frame.
    Errors reading the video (PyAV / OS / value errors) give a ``failed`` outcome naming the
    file; other exceptions (bugs) propagate.
    """
    import av

    from datamodule.clip import cut_or_pad
    from datamodule.media import load_audio, wav_path, write_wav

    fail_errors = (av.error.FFmpegError, OSError, ValueError, RuntimeError)
    os.makedirs(os.path.dirname(paths["mp4"]), exist_ok=True)
    _remove(paths["record"])
    tmp_mp4, tmp_wav = partial_path(paths["mp4"]), partial_path(paths["wav"])
    for path in (tmp_mp4, tmp_wav):
        _remove(path)
    try:
        result = cropper.process_clip(clip.video_path, tmp_mp4, tmp_wav)
        num_samples = source_samples = 0
        if result.status == "ok":
            sibling = wav_path(clip.video_path)
            source = tmp_wav if int(result.num_samples) > 0 else sibling if os.path.isfile(sibling) else None
            if source is not None:
                waveform = load_audio(source, SAMPLE_RATE)
                source_samples = int(waveform.size(0))
                num_samples = int(result.num_frames) * SAMPLES_PER_FRAME
                if source is sibling or source_samples != num_samples:
                    write_wav(tmp_wav, cut_or_pad(waveform, num_samples), SAMPLE_RATE)
    except fail_errors as err:
        for path in (tmp_mp4, tmp_wav):
            _remove(path)
        return Outcome(clip.rel_path, "failed", message=f"{clip.video_path}: {type(err).__name__}: {err}")
    record: Dict[str, Any] = {"version": RECORD_VERSION, "mode": mode, "source": clip.video_path,
                              "status": result.status, "num_frames": 0, "num_samples": 0}
    if result.status == "no_face":
        for path in (tmp_mp4, tmp_wav):
            _remove(path)
        record["message"] = result.message
        _write_json_atomic(paths["record"], record)
        return Outcome(clip.rel_path, "no_face", message=result.message)
    if result.status != "ok":
        for path in (tmp_mp4, tmp_wav):
            _remove(path)
        why = result.message or f"cropper status {result.status!r}"
        named = why if why.startswith(clip.video_path) else f"{clip.video_path}: {why}"  # croppers name the file
        return Outcome(clip.rel_path, "failed", message=named)
    if int(result.num_frames) < 1 or not os.path.isfile(tmp_mp4):
        raise RuntimeError(f"{clip.video_path}: the cropper reported ok but wrote no frames to {tmp_mp4}")
    os.replace(tmp_mp4, paths["mp4"])
    record["mp4_bytes"] = os.path.getsize(paths["mp4"])
    if num_samples > 0:
        os.replace(tmp_wav, paths["wav"])
        record["wav_bytes"] = os.path.getsize(paths["wav"])
    else:
        _remove(tmp_wav)
        _remove(paths["wav"])
    record["num_frames"], record["num_samples"] = int(result.num_frames), num_samples
    record["source_samples"] = source_samples
    _write_json_atomic(paths["record"], record)
    return Outcome(clip.rel_path, "processed", int(result.num_frames), num_samples, source_samples)


# ---------------------------------------------------------------------------------------
# croppers and workers


def make_cropper(already_cropped: bool, crop_size: int = CROP_SIZE):
    """``ResampleClip`` for ``--already-cropped``, else ``MouthCropper`` (MediaPipe)."""
    if already_cropped:
        from preparation.resample_clip import ResampleClip

        return ResampleClip(crop_size=crop_size, fps=FPS, sample_rate=SAMPLE_RATE)
    return import_mouth_cropper()(crop_size=crop_size, fps=float(FPS), sample_rate=SAMPLE_RATE)


def import_mouth_cropper() -> type:
    """``preparation.mouth_crop.MouthCropper``, or an ImportError that says how to install it."""
    try:
        from preparation.mouth_crop import MouthCropper
    except ImportError as err:
        raise ImportError(
            f"the mouth cropper could not be imported ({err}); install its packages with "
            "'pip install -r preparation/requirements.txt' and 'pip install --no-deps -r "
            "preparation/requirements-nodeps.txt' (tutorials/env.sh does both), or pass --already-cropped for "
            "videos that are "
            "already mouth crops"
        ) from err
    return MouthCropper


_WORKER: Dict[str, Any] = {}


def _init_worker(factory: Callable[[], Any]) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; threads inside would only compete
    try:
        _WORKER["cropper"] = factory()
    except Exception as err:  # noqa: BLE001 - re-raised by every task, so the main process reports it
        _WORKER["error"] = err


def _run_task(task: Tuple[Clip, Dict[str, str], str]) -> Outcome:
    if "error" in _WORKER:
        raise RuntimeError(f"could not create the cropper in a worker: {_WORKER['error']}") from _WORKER["error"]
    clip, paths, mode = task
    return process_one(_WORKER["cropper"], clip, paths, mode)


@dataclass
class _Factory:
    """Picklable ``() -> cropper`` for worker processes."""

    already_cropped: bool
    crop_size: int

    def __call__(self):
        return make_cropper(self.already_cropped, self.crop_size)


# ---------------------------------------------------------------------------------------
# tokenizer and labels


def _same_file(a: str, b: str) -> bool:
    if not (os.path.isfile(a) and os.path.isfile(b)) or os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def replace_if_changed(tmp: str, final: str) -> bool:
    """Move ``tmp`` onto ``final`` unless their bytes are equal (then ``tmp`` is deleted and
    ``final`` keeps its mtime). Returns whether ``final`` was (re)written."""
    if _same_file(tmp, final):
        os.remove(tmp)
        return False
    os.replace(tmp, final)
    return True


def train_corpus_tokenizer(transcripts: Sequence[str], out_dir: str, dataset: str, vocab_size: int) -> Tuple[str, str]:
    """Train ``OUT/spm/<dataset>_unigram<V>.model`` + ``_units.txt`` on ``transcripts`` (a
    rerun with the same text leaves the files untouched)."""
    from preparation.train_tokenizer import train_tokenizer

    prefix = os.path.join(out_dir, "spm", f"{dataset}_unigram{vocab_size}")
    model_tmp, units_tmp = train_tokenizer(transcripts, prefix + ".partial", vocab_size)
    replace_if_changed(model_tmp, prefix + ".model")
    replace_if_changed(units_tmp, prefix + "_units.txt")
    _remove(prefix + ".partial.vocab")
    return prefix + ".model", prefix + "_units.txt"


def subset_name(dataset: str, split: str, max_seconds: Optional[float] = None) -> str:
    """``lrs3_trainval.csv`` / ``lrs3_trainval_max16s.csv``."""
    base = f"{dataset}_{split}"
    return f"{base}.csv" if max_seconds is None else f"{base}_max{max_seconds:g}s.csv"


def write_text_if_changed(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf8") as handle:
        handle.write(text)
    replace_if_changed(tmp, path)


# ---------------------------------------------------------------------------------------
# the whole corpus


@dataclass
class Summary:
    """Result of :func:`prepare`.

    Attributes:
        outcomes: One per clip, sorted by path.
        labels: CSV path -> number of lines.
        sp_model_path, dict_path: Tokenizer used.
        missing_transcripts: Clips left out for a missing/empty transcript.
        seconds: Wall time of the whole run.
        layout: Layout used.
        work_seconds: Wall time of the cropping alone (clips/s = processed / work_seconds).
        audio_only: ``.wav`` files without a video (not prepared; listed).
        empty_splits: Splits none of whose clips could be prepared (no label CSV).
    """

    outcomes: List[Outcome]
    labels: Dict[str, int]
    sp_model_path: str
    dict_path: str
    missing_transcripts: List[str] = field(default_factory=list)
    seconds: float = 0.0
    layout: str = ""
    work_seconds: float = 0.0
    audio_only: List[str] = field(default_factory=list)
    empty_splits: List[str] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(o.status in statuses for o in self.outcomes)


def _check_flag(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def prepare(input_dir: str, out_dir: str, dataset: Optional[str] = None, layout: str = "auto",
            split_name: str = "train", splits: Optional[Sequence[str]] = None,
            split_files: Optional[Dict[str, str]] = None, already_cropped: bool = False,
            sp_model_path: Optional[str] = None, dict_path: Optional[str] = None, vocab_size: int = 5000,
            tokenizer_splits: Optional[Sequence[str]] = None, max_seconds: Sequence[float] = (),
            workers: int = 1, overwrite: bool = False, skip_missing_transcripts: bool = False,
            crop_size: int = CROP_SIZE, progress: bool = True,
            cropper_factory: Optional[Callable[[], Any]] = None) -> Summary:
    """Prepare the corpus in ``input_dir`` into ``out_dir`` (see the module docstring).

    Args:
        input_dir: Corpus folder.
        out_dir: Output root (``train.py --root-dir``).
        dataset: Dataset name (folder under ``out_dir`` and first CSV column); default: the
            input folder's name, lower-cased.
        layout, split_name, splits, split_files: Clip discovery, see :func:`find_clips`.
        already_cropped: Videos are mouth crops already: resample only.
        sp_model_path, dict_path: Existing tokenizer (both or neither).
        vocab_size: Vocabulary of a trained tokenizer (soft limit).
        tokenizer_splits: Splits whose transcripts train the tokenizer.
        max_seconds: Extra CSVs with the clips of at most this many seconds.
        workers: Processes (one cropper each); 1 = this process.
        overwrite: Redo clips that are done.
        skip_missing_transcripts: Leave out (and list) clips with a missing/empty
            transcript instead of stopping.
        crop_size: Side of the written frames in pixels.
        progress: Show a progress bar.
        cropper_factory: ``() -> cropper`` (an object with ``process_clip``), picklable
            when ``workers > 1``; default: from ``already_cropped``.

    Returns:
        The :class:`Summary`.
    """
    from datamodule.label_list import format_label_line
    from datamodule.text_transform import TextTransform

    start = time.perf_counter()
    _check_flag(workers >= 1, f"--workers must be >= 1, got {workers}")
    _check_flag(all(s > 0 for s in max_seconds), f"--max-seconds must be positive, got {list(max_seconds)}")
    _check_flag((sp_model_path is None) == (dict_path is None),
                "--sp-model-path and --dict-path go together: give both (an existing tokenizer) or neither "
                "(train one on the transcripts)")
    _check_flag(vocab_size >= 4, f"--vocab-size must be at least 4, got {vocab_size}")
    dataset = dataset or os.path.basename(os.path.normpath(input_dir)).lower()
    _check_flag(bool(dataset) and not any(c in dataset for c in ",/\\") and dataset not in (".", "..", "labels", "spm"),
                f"--dataset must be a plain folder name without ',' or '/' (and not labels/spm), got {dataset!r}")
    # a change of either, or of the crop geometry, redoes clips (crops made before the cropper
    # took Auto-AVSR's geometry were recorded as "mouth_crop_<N>px")
    mode = f"{'resample' if already_cropped else 'mouth_crop_autoavsr'}_{crop_size}px"

    clips, layout = find_clips(input_dir, layout, split_name, splits, split_files, exclude=out_dir)
    with_comma = [c.rel_path for c in clips if "," in c.rel_path]
    _check_flag(not with_comma, f"{os.path.join(input_dir, with_comma[0]) if with_comma else ''}: a path with ',' "
                                f"cannot be written to the label CSV; rename it")

    for clip in clips:  # never write over the corpus (e.g. --out-dir data --dataset lrs3 for data/lrs3)
        outputs = output_paths(out_dir, dataset, clip.rel_path)
        sources = {os.path.realpath(clip.video_path), os.path.realpath(os.path.splitext(clip.video_path)[0] + ".wav")}
        if {os.path.realpath(outputs["mp4"]), os.path.realpath(outputs["wav"])} & sources:
            raise ValueError(f"--out-dir {out_dir} with --dataset {dataset} would write over the input {clip.video_path}; "
                             f"choose another --out-dir or --dataset")

    # transcripts first: a corpus problem is reported before hours of cropping
    transcripts: Dict[str, str] = {}
    missing: List[str] = []
    for clip in clips:
        text = read_transcript(clip.transcript_path, layout) if os.path.isfile(clip.transcript_path) else ""
        if text:
            transcripts[clip.rel_path] = text
        else:
            missing.append(clip.rel_path)
    if missing and not skip_missing_transcripts:
        shown = "\n  ".join(f"{os.path.join(input_dir, os.path.splitext(r)[0])}.txt" for r in missing[:10])
        raise ValueError(f"{len(missing)} clip(s) have a missing or empty transcript (.txt next to the video):\n  "
                         f"{shown}{chr(10) + '  ...' if len(missing) > 10 else ''}\n"
                         f"add the transcripts, or pass --skip-missing-transcripts to leave these clips out")
    clips = [c for c in clips if c.rel_path in transcripts]
    _check_flag(bool(clips), f"--input-dir {input_dir}: no clip has a transcript")
    split_names = sorted({c.split for c in clips})

    # tokenizer: given (checked now), or trained on the training transcripts of the clips kept
    if sp_model_path is None:
        if tokenizer_splits:
            unknown = [s for s in tokenizer_splits if s not in split_names]
            _check_flag(not unknown, f"--tokenizer-splits: no split {', '.join(unknown)} (found: {', '.join(split_names)})")
            chosen = list(tokenizer_splits)
        else:
            chosen = [s for s in split_names if "train" in s] or split_names
    else:
        TextTransform(sp_model_path, dict_path)
    audio_only = find_audio_only(input_dir, exclude=out_dir)

    # media
    outcomes: Dict[str, Outcome] = {}
    tasks = []
    for clip in clips:
        paths = output_paths(out_dir, dataset, clip.rel_path)
        record = None if overwrite else read_done_record(paths, mode)
        if record is None:
            tasks.append((clip, paths, mode))
        elif record["status"] == "no_face":
            outcomes[clip.rel_path] = Outcome(clip.rel_path, "no_face_earlier", message=record.get("message", ""))
        else:
            outcomes[clip.rel_path] = Outcome(clip.rel_path, "skipped", record["num_frames"], record["num_samples"],
                                              record.get("source_samples", 0))
    factory = cropper_factory or _Factory(already_cropped, crop_size)
    if tasks and cropper_factory is None and not already_cropped:
        import_mouth_cropper()  # a missing package is reported here, not from inside the workers
    counts = {"done": len(outcomes) - sum(o.status == "no_face_earlier" for o in outcomes.values()),
              "no_face": sum(o.status == "no_face_earlier" for o in outcomes.values()), "failed": 0}
    work_start = time.perf_counter()
    with tqdm(total=len(clips), initial=len(outcomes), desc=f"preparing {dataset}", unit="clip",
              disable=not progress, dynamic_ncols=True) as bar:
        def take(outcome: Outcome) -> None:
            outcomes[outcome.rel_path] = outcome
            counts["done" if outcome.usable else "failed" if outcome.status == "failed" else "no_face"] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update(1)

        if tasks and workers == 1:
            cropper = factory()
            try:
                for task in tasks:
                    take(process_one(cropper, *task))
            finally:
                if callable(getattr(cropper, "close", None)):
                    cropper.close()  # MouthCropper releases its detector
        elif tasks:
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch/MediaPipe state
            with context.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(factory,)) as pool:
                for outcome in pool.imap_unordered(_run_task, tasks, chunksize=1):
                    take(outcome)
    work_seconds = time.perf_counter() - work_start
    ordered = [outcomes[c.rel_path] for c in clips]
    if not any(o.usable for o in ordered):
        raise NothingPrepared(input_dir, ordered, missing, audio_only)

    # the tokenizer learns only the text of clips that are in the label CSVs
    if sp_model_path is None:
        texts = [transcripts[c.rel_path] for c, o in zip(clips, ordered) if c.split in chosen and o.usable]
        _check_flag(bool(texts), f"--tokenizer-splits {' '.join(chosen)}: none of their clips could be prepared, "
                                 f"so there is no text to train the tokenizer on (pass --tokenizer-splits, or "
                                 f"--sp-model-path and --dict-path)")
        sp_model_path, dict_path = train_corpus_tokenizer(texts, out_dir, dataset, vocab_size)
    tokenizer = TextTransform(sp_model_path, dict_path)
    token_ids = {o.rel_path: tokenizer.tokenize(transcripts[o.rel_path]).tolist() for o in ordered if o.usable}

    # label CSVs
    labels: Dict[str, int] = {}
    for split in split_names:
        rows = [(o, c) for o, c in zip(ordered, clips) if c.split == split and o.usable]
        if not rows:
            continue
        for limit in (None, *max_seconds):
            lines = [format_label_line(dataset, o.rel_path, o.num_frames, token_ids[o.rel_path], transcripts[o.rel_path])
                     for o, _ in rows if limit is None or o.num_frames <= limit * FPS]
            if not lines:
                continue
            path = os.path.join(out_dir, "labels", subset_name(dataset, split, limit))
            write_text_if_changed(path, "\n".join(lines) + "\n")
            labels[path] = len(lines)
    return Summary(ordered, labels, sp_model_path, dict_path, missing, time.perf_counter() - start, layout,
                   work_seconds, audio_only, [s for s in split_names if not any(
                       o.usable for o, c in zip(ordered, clips) if c.split == s)])


def find_audio_only(input_dir: str, exclude: Optional[str] = None) -> List[str]:
    """``.wav`` files under ``input_dir`` (not under ``exclude``) without a video beside them:
    audio-only clips, which this preparation (mouth crops) leaves out; sorted, relative."""
    from preparation.corpus import VIDEO_EXTENSIONS

    found = []
    exclude = os.path.abspath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(input_dir):
        dirnames[:] = [d for d in dirnames if not (exclude and os.path.abspath(os.path.join(dirpath, d)) == exclude)]
        stems = {os.path.splitext(n)[0] for n in filenames if n.lower().endswith(VIDEO_EXTENSIONS)}
        for name in filenames:
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".wav" and stem not in stems:
                found.append(os.path.relpath(os.path.join(dirpath, name), input_dir).replace(os.sep, "/"))
    return sorted(found)


class NothingPrepared(ValueError):
    """No clip of the corpus could be prepared: the error line names the input folder and
    the count per reason; ``details`` (printed above it) list the clips."""

    def __init__(self, input_dir: str, outcomes: Sequence[Outcome], missing: Sequence[str],
                 audio_only: Sequence[str]) -> None:
        reasons = {"no face": [o for o in outcomes if o.status in ("no_face", "no_face_earlier")],
                   "failed": [o for o in outcomes if o.status == "failed"]}
        counts = [f"{len(v)} {k}" for k, v in reasons.items() if v]
        counts += [f"{len(missing)} missing transcript"] if missing else []
        counts += [f"{len(audio_only)} audio only (no .mp4)"] if audio_only else []
        super().__init__(f"--input-dir {input_dir}: no clip could be prepared ({', '.join(counts) or 'no clips'}); "
                         f"no label CSV and no tokenizer written")
        self.details = ([f"  no face: {o.rel_path}" + (f": {o.message}" if o.message else "") for o in reasons["no face"]]
                        + [f"  failed: {o.rel_path}: {o.message}" for o in reasons["failed"]]
                        + [f"  missing or empty transcript (left out): {r}" for r in missing]
                        + [f"  audio only (no .mp4; not prepared): {r}" for r in audio_only])


def format_summary(summary: Summary, input_dir: str) -> str:
    """Human-readable report of a run (counts, problem clips, files written)."""
    processed = summary.count("processed")
    work = summary.work_seconds
    rate = f" ({processed / work:.2f} clips/s cropping)" if processed and work > 0 else ""
    lines = [
        f"prepared {input_dir} (layout {summary.layout}): {len(summary.outcomes)} clips in {summary.seconds:.1f} s{rate}",
        f"  processed: {processed}   skipped (already done): {summary.count('skipped')}   "
        f"no face: {summary.count('no_face', 'no_face_earlier')}   failed: {summary.count('failed')}"
        + (f"   missing transcript: {len(summary.missing_transcripts)}" if summary.missing_transcripts else "")
        + (f"   audio only (not prepared): {len(summary.audio_only)}" if summary.audio_only else ""),
    ]
    for o in summary.outcomes:
        if o.status in ("no_face", "no_face_earlier"):
            lines.append(f"  no face: {o.rel_path}" + (" (recorded by an earlier run)" if o.status == "no_face_earlier" else "")
                         + (f": {o.message}" if o.message else ""))
    for o in summary.outcomes:
        if o.status == "failed":
            lines.append(f"  failed: {o.rel_path}: {o.message}")
    for rel in summary.missing_transcripts:
        lines.append(f"  missing or empty transcript (left out): {rel}")
    for rel in summary.audio_only:
        lines.append(f"  audio only (no .mp4; not prepared): {rel}")
    for split in summary.empty_splits:
        lines.append(f"  note: split {split}: no clip could be prepared, so it has no label CSV")
    no_audio = [o.rel_path for o in summary.outcomes if o.usable and o.num_samples == 0]
    if no_audio:
        lines.append(f"  note: {len(no_audio)} clip(s) have no audio (video-only training only), e.g. {no_audio[0]}")
    off = [o.rel_path for o in summary.outcomes if o.usable and o.num_samples
           and abs(o.source_samples - o.num_samples) > AV_TOLERANCE_SECONDS * SAMPLE_RATE]
    if off:
        lines.append(f"  note: {len(off)} clip(s) had audio and video lengths more than {AV_TOLERANCE_SECONDS} s "
                     f"apart (the audio was cut/padded to the video), e.g. {off[0]}")
    for path, n in summary.labels.items():
        lines.append(f"  labels: {path} ({n} clips)")
    lines.append(f"  tokenizer: --sp-model-path {summary.sp_model_path} --dict-path {summary.dict_path}")
    return "\n".join(lines)


def _split_file_arg(text: str) -> Tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-dir", required=True, help="Corpus folder with <clip>.mp4 + <clip>.txt.")
    p.add_argument("--out-dir", required=True, help="Output root (train.py --root-dir).")
    p.add_argument("--dataset", default=None, help="Dataset name: output subfolder and first CSV column. "
                                                   "(Default: the input folder's name, lower-cased)")
    p.add_argument("--layout", default="auto", choices=["auto", "lrs", "plain"],
                   help="lrs: <split>/<speaker>/<clip>.mp4 with 'Text:' transcripts; plain: transcript files "
                        "with just the text. (Default: auto)")
    p.add_argument("--split-name", default="train", help="Split of every clip in the plain layout. (Default: train)")
    p.add_argument("--splits", nargs="+", default=None, help="Prepare only these splits (e.g. trainval test).")
    p.add_argument("--split-file", action="append", type=_split_file_arg, default=[], metavar="NAME=PATH",
                   help="Split NAME = the clips listed in PATH (one clip id per line); repeatable.")
    p.add_argument("--already-cropped", action="store_true",
                   help="Videos are mouth crops already: only re-time to 25 fps, square-crop, resize, resample audio.")
    p.add_argument("--crop-size", type=int, default=CROP_SIZE, help=f"Output frame side in pixels. (Default: {CROP_SIZE})")
    p.add_argument("--sp-model-path", default=None, help="Existing SentencePiece model (with --dict-path).")
    p.add_argument("--dict-path", default=None, help="Units list of --sp-model-path.")
    p.add_argument("--vocab-size", type=int, default=5000,
                   help="Vocabulary of the tokenizer trained when no --sp-model-path is given (soft limit). (Default: 5000)")
    p.add_argument("--tokenizer-splits", nargs="+", default=None,
                   help="Splits whose transcripts train the tokenizer. (Default: splits named *train*, else all)")
    p.add_argument("--max-seconds", type=float, nargs="+", default=[],
                   help="Also write <dataset>_<split>_max<N>s.csv with the clips of at most N seconds.")
    p.add_argument("--workers", type=int, default=1, help="Processes, one cropper each. (Default: 1)")
    p.add_argument("--overwrite", action="store_true", help="Redo clips that are already done.")
    p.add_argument("--skip-missing-transcripts", action="store_true",
                   help="Leave out clips with a missing/empty transcript (listed) instead of stopping.")
    p.add_argument("--no-progress", action="store_true", help="No progress bar.")
    p.add_argument("--debug", action="store_true", help="Tracebacks on errors.")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from espnet.training.cli_errors import run_cli

    args = parse_args(argv)
    return run_cli(lambda: _run(args), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    split_files = dict(args.split_file) if args.split_file else None
    if split_files is not None and len(split_files) != len(args.split_file):
        raise ValueError("--split-file: a split name is given twice")
    summary = prepare(args.input_dir, args.out_dir, args.dataset, args.layout, args.split_name, args.splits,
                      split_files, args.already_cropped, args.sp_model_path, args.dict_path, args.vocab_size,
                      args.tokenizer_splits, args.max_seconds, args.workers, args.overwrite,
                      args.skip_missing_transcripts, args.crop_size, progress=not args.no_progress)
    print(format_summary(summary, args.input_dir))
    return 1 if summary.count("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
