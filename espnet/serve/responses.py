"""The body of a transcription in each ``response_format`` of OpenAI's transcription endpoint:
``json`` (``{"text": ...}``), ``text``, ``srt``, ``vtt`` (the same files as ``transcribe.py``
writes) and ``verbose_json`` (task, language when known, duration, text and segments with
start/end seconds, plus the streams each segment was decoded from and the stretches without a
face a video-only model could not read)."""

from typing import Any, Dict, Optional

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from espnet.asr.transcription.decode import Transcript
from espnet.asr.transcription.writers import format_srt, format_vtt, transcript_dict

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def verbose_json(transcript: Transcript, language: Optional[str] = None) -> Dict[str, Any]:
    """OpenAI's ``verbose_json``: ``task``, ``language`` (when the server was told it),
    ``duration``, ``text`` and ``segments``, each with ``id``, ``seek`` (its start in 10 ms
    units, as Whisper counts), ``start``, ``end``, ``text``, ``temperature`` (0: the search;
    above: the fallback sampled it), the repetition guard's ``compression_ratio``,
    ``avg_logprob`` (where the score is the decoder's log-probability), ``repeating`` and
    ``hit_length_limit``, and ``streams``; ``repeating_segments`` and ``gaps``. Segments and
    seconds are those of ``transcribe.py``'s ``.json``."""
    data = transcript_dict(transcript)
    body: Dict[str, Any] = {"task": "transcribe"}
    if language:
        body["language"] = language
    body.update(duration=data["duration"], text=data["text"])
    core = ("id", "start", "end", "text", "streams", "temperature")
    body["segments"] = [{"id": s["id"], "seek": int(round(s["start"] * 100)), "start": s["start"], "end": s["end"],
                         "text": s["text"], "temperature": s.get("temperature", 0.0),
                         **{k: v for k, v in s.items() if k not in core}, "streams": s["streams"]}
                        for s in data["segments"]]
    body["repeating_segments"] = data["repeating_segments"]
    body["gaps"] = data["gaps"]
    return body


def render(transcript: Transcript, response_format: str, language: Optional[str] = None) -> Response:
    """The HTTP response of ``transcript`` in ``response_format`` (one of :data:`RESPONSE_FORMATS`)."""
    if response_format == "json":
        return JSONResponse({"text": transcript.text})
    if response_format == "verbose_json":
        return JSONResponse(verbose_json(transcript, language))
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(format_srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(format_vtt(transcript), media_type="text/vtt")
    raise ValueError(f"unknown response_format {response_format!r}")
