"""Pre-flight check of label lists: every problem of every line, before training or decoding.

For each line of a label CSV (``dataset,rel_path,input_length,token_ids[,transcript]``):

* the line parses, and its transcript column is there exactly when the first line has one
  (and is not empty);
* token ids are units of the tokenizer, ``1 .. odim - 2`` (skipped when ``odim`` is ``None``:
  a decoder with its own tokenizer);
* the token ids spell the transcript, when both are there and the SentencePiece tokenizer is
  known: the text of the ids equals the transcript as the tokenizer sees it (its text round
  trip, which upper-cases, maps unknown characters to ``<unk>`` and normalises spaces);
* ``input_length`` fits ``--max-frames`` (training and validation lists);
* the media exist and open: the ``.mp4`` for video models, the ``.wav`` next to it for audio
  models; video is 25 fps and at least 88x88 pixels;
* lengths agree within ``av_tolerance`` (0.1 s, the rule of :class:`~datamodule.av_dataset.AVDataset`):
  video frames with ``input_length``, the audio duration with ``input_length`` (audio-only)
  or with the video (audio-visual);
* a line that marks a stream as missing (``rel_path|missing=video`` / ``|missing=audio``, see
  :mod:`datamodule.label_list`) is checked as a line of the other stream alone (its file may
  be absent); for a model of the missing stream alone it is a problem.

Only container headers are read (frame counts from the mp4 index, durations from the wav
header; see :func:`~datamodule.media.probe_video`), and the facts of every media file are
cached beside the CSV (``<csv>.preflight.json``), keyed by the file's size and modification
time, so a second run only looks at files that changed. Audio sample rates other than
16 kHz are noted (they are resampled when loaded).
"""

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from datamodule.av_dataset import MODALITY_STREAMS
from datamodule.clip import AV_TOLERANCE_SECONDS
from datamodule.label_list import iter_label_lines, parse_label_line
from datamodule.media import SAMPLE_RATE, VIDEO_FPS as FPS, AudioInfo, VideoInfo, probe_audio, probe_video, wav_path
from datamodule.transforms import CROP_SIZE

MAX_LISTED = 20
CACHE_SUFFIX = ".preflight.json"
CACHE_VERSION = 1


@dataclass
class Problem:
    """A problem of line ``line`` (1-based), or of the whole list when ``line`` is ``None``."""

    line: Optional[int]
    message: str  # a problem of the whole list names the list itself


@dataclass
class ListCheck:
    """Result of checking one label list."""

    label_path: str
    num_lines: int = 0
    problems: List[Problem] = field(default_factory=list)
    sample_rates: Counter = field(default_factory=Counter)
    probed: int = 0
    cached: int = 0
    seconds: float = 0.0

    @property
    def invalid_lines(self) -> FrozenSet[int]:
        return frozenset(p.line for p in self.problems if p.line is not None)

    @property
    def list_problems(self) -> List[Problem]:
        """Problems of the list as a whole (missing, empty): no line can be left out for them."""
        return [p for p in self.problems if p.line is None]

    def listing(self, limit: int = MAX_LISTED) -> List[str]:
        """``FILE:LINE: what`` for the first ``limit`` problems, then how many more."""
        lines = [p.message if p.line is None else f"{self.label_path}:{p.line}: {p.message}"
                 for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more problem(s) in {self.label_path}")
        return lines

    def notes(self) -> List[str]:
        return [f"note: {self.label_path}: {n} clip(s) have audio at {rate} Hz (resampled to {SAMPLE_RATE} Hz "
                f"when loaded)" for rate, n in sorted(self.sample_rates.items()) if rate != SAMPLE_RATE]


class PreflightError(ValueError):
    """Invalid label lists; ``details`` lists the problems (``FILE:LINE: what``)."""

    def __init__(self, message: str, details: List[str]) -> None:
        super().__init__(message)
        self.details = details


class MediaFacts:
    """Header facts of media files, cached in a JSON file keyed by path, size and mtime."""

    def __init__(self, cache_path: Optional[str]) -> None:
        self.cache_path = cache_path
        self.old: Dict[str, dict] = {}
        self.new: Dict[str, dict] = {}
        self.probed = 0
        self.cached = 0
        if cache_path and os.path.isfile(cache_path):
            try:
                with open(cache_path, encoding="utf8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                data = {}  # unreadable cache: everything is probed again and the cache rewritten
            if isinstance(data, dict) and data.get("version") == CACHE_VERSION:
                self.old = data.get("media", {})

    def get(self, path: str, probe: Callable[[str], object]) -> dict:
        """The facts of ``path`` (``{"info": {...}}`` or ``{"error": "..."}``), probed when
        the file is new or changed. A missing file raises ``FileNotFoundError``."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{'video' if probe is probe_video else 'audio'} file not found: {path}")
        stat = os.stat(path)
        key = os.path.abspath(path)
        entry = self.old.get(key)
        if entry is None or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            try:
                entry["info"] = vars(probe(path))
            except ValueError as err:  # unreadable media: a problem of this line, cached like a fact
                entry["error"] = str(err)
            self.probed += 1
        else:
            self.cached += 1
        self.new[key] = entry
        return entry

    def save(self) -> None:
        """Write the facts seen in this run (atomically; a write failure is reported, not fatal)."""
        if not self.cache_path or not self.probed and set(self.new) == set(self.old):
            return
        tmp = f"{self.cache_path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf8") as handle:
                json.dump({"version": CACHE_VERSION, "media": self.new}, handle)
            os.replace(tmp, self.cache_path)
        except OSError as err:
            print(f"note: could not write the pre-flight cache {self.cache_path}: {err}", file=sys.stderr)


def _media_facts(facts: MediaFacts, path: str, probe: Callable[[str], object], kind: type):
    entry = facts.get(path, probe)
    if "error" in entry:
        raise ValueError(entry["error"])
    return kind(**entry["info"])


def check_line_media(facts: MediaFacts, video_path: str, input_length: int, modality: str,
                     av_tolerance: float, sample_rates: Counter, missing: Optional[str] = None) -> List[str]:
    """Problems of one utterance's media (messages name the file). ``missing``: the stream the
    line marks as missing (its file is not read; ``input_length`` is then the other's)."""
    problems: List[str] = []
    tolerance_frames = av_tolerance * FPS
    video: Optional[VideoInfo] = None
    streams = MODALITY_STREAMS[modality]
    if missing in streams and len(streams) == 1:
        return [f"the line marks the {missing} as missing, and this {modality} model reads nothing else"]
    if modality == "audiovisual" and missing is not None:
        modality = "audio" if missing == "video" else "video"  # the one stream there is
    if modality in ("video", "audiovisual"):
        try:
            video = _media_facts(facts, video_path, probe_video, VideoInfo)
        except (FileNotFoundError, ValueError) as err:
            return [str(err)]
        if video.fps and abs(video.fps - FPS) > 0.01 * FPS:
            problems.append(f"{video_path}: {video.fps:g} fps, but the models read {FPS} fps video "
                            f"(re-time it, e.g. with prepare_dataset --already-cropped)")
        if video.width < CROP_SIZE or video.height < CROP_SIZE:
            problems.append(f"{video_path}: {video.width}x{video.height} pixels, smaller than the "
                            f"{CROP_SIZE}x{CROP_SIZE} crop")
        if video.frames <= 0:
            problems.append(f"{video_path}: the video has no frames")
        elif abs(video.frames - input_length) > tolerance_frames:
            problems.append(f"input_length is {input_length} but the video has {video.frames} frames "
                            f"(more than {av_tolerance} s apart)")
    if modality in ("audio", "audiovisual"):
        wav = wav_path(video_path)
        try:
            audio = _media_facts(facts, wav, probe_audio, AudioInfo)
        except (FileNotFoundError, ValueError) as err:
            return problems + [str(err)]
        sample_rates[audio.sample_rate] += 1
        if audio.seconds <= 0:
            problems.append(f"{wav}: the audio has no samples")
        elif video is not None and video.frames > 0:
            if abs(audio.seconds - video.frames / FPS) > av_tolerance:
                problems.append(f"{wav}: audio lasts {audio.seconds:.3f} s but the video {video.frames / FPS:.3f} s "
                                f"({video.frames} frames); they differ by more than {av_tolerance} s")
        elif video is None and abs(audio.seconds * FPS - input_length) > tolerance_frames:
            problems.append(f"input_length is {input_length} ({input_length / FPS:.3f} s) but {wav} lasts "
                            f"{audio.seconds:.3f} s (more than {av_tolerance} s apart)")
    return problems


MAX_QUOTED = 60


def _quoted(text: str) -> str:
    return repr(text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "...")


def transcript_mismatch(tokenizer: Any, token_ids: Sequence[int], transcript: str) -> Optional[str]:
    """Why ``token_ids`` do not spell ``transcript`` under ``tokenizer`` (a ``TextTransform``),
    or ``None`` when they do. Both sides go through the tokenizer's text: the ids decoded,
    the transcript tokenised and decoded (so case, unknown characters and spacing count as
    the tokenizer sees them)."""
    from_ids = " ".join(tokenizer.post_process(token_ids).split())
    expected = " ".join(tokenizer.post_process(tokenizer.tokenize(transcript)).split())
    if from_ids == expected:
        return None
    return (f"the token ids do not spell the transcript: they read {_quoted(from_ids)}, the transcript is "
            f"{_quoted(transcript.strip())} (labels written with another tokenizer, or edited on one side?)")


def check_label_list(root_dir: str, label_path: str, modality: str, odim: Optional[int] = None,
                     max_frames: Optional[int] = None, av_tolerance: float = AV_TOLERANCE_SECONDS,
                     use_cache: bool = True, need_transcript: bool = False, tokenizer: Any = None) -> ListCheck:
    """Check every line of ``label_path`` (see the module docstring); nothing is raised for
    bad data, every problem is collected in the returned :class:`ListCheck`.

    Args:
        root_dir: Dataset root (media at ``root_dir/dataset/rel_path``).
        label_path: Label CSV.
        modality: ``video``, ``audio`` or ``audiovisual`` (which media are read).
        odim: Tokenizer size (``<blank>`` + units + ``<eos>``); ``None`` skips the token check.
        max_frames: ``--max-frames`` of the batches the list goes into, if any.
        av_tolerance: Allowed length mismatch in seconds.
        use_cache: Read and write ``<label_path>.preflight.json``.
        need_transcript: Every line needs the transcript column (no SentencePiece tokenizer
            to recover the text from the token ids).
        tokenizer: The SentencePiece ``TextTransform``; when given, the token ids of a
            line with a transcript must spell it (:func:`transcript_mismatch`).
    """
    start = time.perf_counter()
    result = ListCheck(label_path)
    facts = MediaFacts(label_path + CACHE_SUFFIX if use_cache else None)
    first_transcript: Optional[Tuple[int, bool]] = None
    try:
        for line_no, line in iter_label_lines(label_path):
            result.num_lines += 1
            where = f"{label_path}:{line_no}"

            def problem(message: str) -> None:
                result.problems.append(Problem(line_no, message))

            try:
                utt = parse_label_line(line, where, line_no)
            except ValueError as err:
                problem(str(err)[len(where) + 2:])
                continue
            has_text = utt.transcript is not None
            if first_transcript is None:
                first_transcript = (line_no, has_text)
            elif has_text != first_transcript[1]:
                problem(f"{'a' if has_text else 'no'} transcript column, but line {first_transcript[0]} has "
                        f"{'none' if has_text else 'one'} (the column must be in every line or in none)")
            if has_text and not utt.transcript.strip():
                problem("empty transcript column")
            if need_transcript and not has_text and not first_transcript[1]:  # else: reported as inconsistent
                problem("no transcript column, and without --sp-model-path/--dict-path the text cannot be "
                        "recovered from the token ids")
            if odim is not None:
                bad = [int(t) for t in utt.token_ids if not 0 < int(t) < odim - 1]
                if bad:
                    problem(f"token id {bad[0]} is outside the tokenizer's units 1..{odim - 2}"
                            + (f" ({len(bad)} such ids)" if len(bad) > 1 else ""))
            else:
                bad = []
            if tokenizer is not None and not bad and has_text and utt.transcript.strip():
                mismatch = transcript_mismatch(tokenizer, utt.token_ids, utt.transcript)
                if mismatch:
                    problem(mismatch)
            if max_frames is not None and utt.input_length > max_frames:
                problem(f"input_length {utt.input_length} frames is more than --max-frames {max_frames} "
                        f"(raise --max-frames or leave the line out)")
            video_path = os.path.join(root_dir, utt.dataset, utt.rel_path)
            for message in check_line_media(facts, video_path, utt.input_length, modality, av_tolerance,
                                            result.sample_rates, utt.missing):
                problem(message)
    except FileNotFoundError as err:
        result.problems.append(Problem(None, str(err)))
    if result.num_lines == 0 and not result.problems:
        result.problems.append(Problem(None, f"{label_path}: the label list is empty"))
    facts.save()
    result.probed, result.cached = facts.probed, facts.cached
    result.seconds = time.perf_counter() - start
    return result


def run_preflight(root_dir: str, lists: Sequence[Tuple[str, str, Optional[int]]], modality: str,
                  odim: Optional[int], skip_invalid: bool = False, use_cache: bool = True,
                  need_transcript: bool = False, log: Callable[[str], None] = print,
                  tokenizer: Any = None) -> Dict[str, AbstractSet[int]]:
    """Check label lists before any work starts.

    Args:
        root_dir: Dataset root.
        lists: ``(name as given, path, max_frames or None)`` per list.
        modality, odim, need_transcript, tokenizer: As :func:`check_label_list`.
        skip_invalid: Leave invalid lines out (reported) instead of stopping.
        log: Where the summary and notes go.

    Returns:
        ``{name as given: line numbers to leave out}``.

    Raises:
        PreflightError: listing every problem (the first 20 per list and a count), when a
            list has invalid lines and ``skip_invalid`` is off, or a list as a whole is bad
            (missing, empty, or nothing valid left).
    """
    checks = [(name, check_label_list(root_dir, path, modality, odim, max_frames, use_cache=use_cache,
                                      need_transcript=need_transcript, tokenizer=tokenizer))
              for name, path, max_frames in lists]
    details = [line for _, c in checks if c.invalid_lines for line in c.listing()]
    list_errors = [p.message for _, c in checks for p in c.list_problems]
    if skip_invalid:
        list_errors += [f"{c.label_path}: no valid line is left after leaving out the invalid ones"
                        for _, c in checks if c.num_lines and len(c.invalid_lines) == c.num_lines]
    if list_errors:
        raise PreflightError("; ".join(list_errors), details)
    bad = [c for _, c in checks if c.problems]
    if bad and not skip_invalid:
        n = sum(len(c.problems) for c in bad)
        culprit = bad[0].label_path if len(bad) == 1 else f"{len(bad)} label lists"
        raise PreflightError(f"{culprit}: {n} problem(s) found before starting (listed above); fix them, or pass "
                             f"--skip-invalid to leave the invalid lines out", details)
    skip: Dict[str, AbstractSet[int]] = {}
    for name, check in checks:
        for note in check.notes():
            log(note)
        cache = f", {check.cached} from the cache" if check.cached else ""
        if check.problems:
            invalid = check.invalid_lines
            log(f"pre-flight: {check.label_path}: left out {len(invalid)} of {check.num_lines} line(s) "
                f"(--skip-invalid):")
            for line in check.listing():
                log(f"  {line}")
            skip[name] = invalid
        else:
            log(f"pre-flight: {check.label_path}: {check.num_lines} line(s) OK ({check.probed} media file(s) read"
                f"{cache}, {check.seconds:.1f} s)")
    return skip
