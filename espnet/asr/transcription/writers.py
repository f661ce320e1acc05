"""Writing a :class:`~espnet.asr.transcription.decode.Transcript` as ``.txt`` (one segment a
line), ``.json`` (segments with start/end seconds, text, streams and what the repetition guard found;
the whole text and the count of repeating segments; the stretches
without a face a video-only model could not read), ``.srt``
and ``.vtt`` subtitles. Each file is written beside its destination and renamed into place."""

import json
import os
from typing import Any, Callable, Dict, List, Sequence

from espnet.asr.transcription.decode import SegmentText, Transcript
from espnet.utils.atomic_write import atomic_open

FORMATS = ("txt", "json", "srt", "vtt")


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS<decimal>mmm`` (milliseconds rounded)."""
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def format_txt(transcript: Transcript) -> str:
    return "".join(f"{s.text}\n" for s in transcript.segments if s.text)


def segment_check(segment: SegmentText) -> Dict[str, Any]:
    """The repetition guard's fields of a segment (``repeating``, ``compression_ratio``,
    ``hit_length_limit``, ``avg_logprob`` where known, ``temperature``); none if unchecked."""
    if segment.check is None:
        return {}
    return {**segment.check.to_json(), "temperature": segment.temperature}


def transcript_dict(transcript: Transcript) -> Dict[str, Any]:
    """The ``.json`` output as a dict: source, duration, segments (id, start, end, text,
    streams and the repetition guard's fields), the whole text, the number of repeating
    segments and the gaps; seconds rounded to milliseconds."""
    return {
        "source": transcript.path,
        "duration": round(transcript.seconds, 3),
        "segments": [{"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text,
                      "streams": list(s.streams), **segment_check(s)} for i, s in enumerate(transcript.segments)],
        "text": transcript.text,
        "repeating_segments": transcript.repeating,
        "gaps": [{"start": round(g.start, 3), "end": round(g.end, 3), "reason": "no face"} for g in transcript.gaps],
    }


def format_json(transcript: Transcript) -> str:
    return json.dumps(transcript_dict(transcript), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def format_srt(transcript: Transcript) -> str:
    cues = [s for s in transcript.segments if s.text]
    return "".join(f"{n}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text}\n\n"
                   for n, s in enumerate(cues, start=1))


def format_vtt(transcript: Transcript) -> str:
    return "WEBVTT\n\n" + "".join(f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text}\n\n"
                                  for s in transcript.segments if s.text)


FORMATTERS: Dict[str, Callable[[Transcript], str]] = {
    "txt": format_txt, "json": format_json, "srt": format_srt, "vtt": format_vtt}


def parse_formats(text: str) -> List[str]:
    """``"txt,json"`` -> ``["txt", "json"]`` (``all`` = every format); an unknown one is an error."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"--format: unknown format(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(names))


def output_paths(out_dir: str, stem: str, formats: Sequence[str]) -> Dict[str, str]:
    return {fmt: os.path.join(out_dir, f"{stem}.{fmt}") for fmt in formats}


def write_outputs(transcript: Transcript, paths: Dict[str, str]) -> None:
    """Write ``transcript`` in each format of ``paths`` (format -> file)."""
    for fmt, path in paths.items():
        text = FORMATTERS[fmt](transcript)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_open(path, "w") as handle:
            handle.write(text)
