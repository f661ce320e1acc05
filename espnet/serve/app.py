"""The FastAPI application: ``POST /v1/audio/transcriptions`` (OpenAI's transcription endpoint),
``GET /health``, ``GET /`` (the page) and FastAPI's OpenAPI docs (``/docs``, ``/openapi.json``).

Status codes: 200; 400 (not a multipart body); 413 (upload beyond ``--max-upload-mb``); 415
(not a media file, unreadable or truncated, no audio or video stream); 422 (no ``file``, an
unknown ``response_format``, or media this model cannot read: a stream it needs is missing, no
face for a video-only model); 503 with ``Retry-After`` (queue full); 500 (a fault of the
server). Every error body is ``{"error": {"message", "type", "param", "code"}}``."""

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from espnet.asr.transcription.decode import Transcript
from espnet.asr.transcription.pipeline import MediaError
from espnet.serve.errors import ApiError, error_response
from espnet.serve.responses import RESPONSE_FORMATS, render
from espnet.serve.upload import FILE_PART, Upload, receive_upload
from espnet.serve.worker import DecodeQueue, Job, remove_folder

log = logging.getLogger(__name__)

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "media-src blob:")  # the page loads nothing from anywhere else
TEMP_PREFIX = "avsr-serve-"

UPLOAD_SCHEMA = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": [FILE_PART],
        "properties": {
            FILE_PART: {"type": "string", "format": "binary",
                        "description": "The recording: any file FFmpeg reads (mp4, mkv, mov, webm, wav, flac, mp3, "
                                       "m4a, ogg, ...), any length."},
            "model": {"type": "string", "description": "Accepted for OpenAI clients and ignored: the server "
                                                       "decodes with the model it was started with."},
            "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
            "language": {"type": "string", "description": "Accepted and ignored."},
            "prompt": {"type": "string", "description": "Accepted and ignored."},
            "temperature": {"type": "number", "description": "Accepted and ignored (decoding is deterministic)."},
        }}}},
}


def create_app(transcribe: Callable[[str], Transcript], *, max_upload_bytes: int, max_queue: int,
               info: Optional[Dict[str, Any]] = None, language: Optional[str] = None,
               temp_root: Optional[str] = None) -> FastAPI:
    """The service around ``transcribe`` (a media file's path -> its transcript; run on the
    single worker thread, one request at a time).

    Args:
        transcribe: E.g. a :class:`~espnet.asr.transcription.pipeline.Transcriber`.
        max_upload_bytes: Largest upload; a larger one is refused (413) while it streams in.
        max_queue: Requests that may wait while one is decoded; more are refused (503).
        info: Shown by ``GET /health`` (the model, its streams).
        language: Reported as ``language`` in ``verbose_json`` (omitted when ``None``).
        temp_root: Where the per-request folders go (default: the system's temporary folder).
    """
    if max_upload_bytes < 1:
        raise ValueError(f"--max-upload-mb must be > 0, got {max_upload_bytes} bytes")
    queue = DecodeQueue(max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            await queue.stop()

    app = FastAPI(title="AVSR transcription", lifespan=lifespan,
                  description="Transcribe recordings (video or audio) with the model this server was started "
                              "with. The transcription endpoint follows OpenAI's.")
    app.state.queue = queue
    with open(PAGE, encoding="utf-8") as handle:
        page = handle.read()

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        kind = "server_error" if err.status_code >= 500 else "invalid_request_error"
        return error_response(err.status_code, str(err.detail), kind, headers=getattr(err, "headers", None))

    @app.get("/", response_class=HTMLResponse, summary="A page: pick a recording, see and hear its transcript")
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/health", summary="Whether the server is up, its model and its queue")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", **(info or {}),
                "queue": {"waiting": queue.waiting, "max_waiting": queue.max_waiting,
                          "decoding": queue.running is not None}}

    @app.post("/v1/audio/transcriptions", openapi_extra={"requestBody": UPLOAD_SCHEMA},
              summary="Transcribe a recording (OpenAI's transcription endpoint)",
              responses={200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {}},
                               "description": "The transcript in the requested response_format"},
                         413: {"description": "Upload larger than --max-upload-mb"},
                         415: {"description": "Not usable media"},
                         422: {"description": "Bad request fields, or media this model cannot read"},
                         503: {"description": "Queue full (see Retry-After)"}})
    async def transcriptions(request: Request) -> Response:
        if queue.full():
            raise queue.busy_error()  # before the upload is read
        directory = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_root)
        job, upload = None, None
        try:
            upload = await receive_upload(request, directory, max_upload_bytes)
            response_format = check_fields(upload.fields)
            job = queue.submit(Job(lambda: transcribe(upload.path), directory))  # the job owns the folder now
            start = time.perf_counter()
            transcript = await answer_or_disconnect(request, job)
            if transcript is None:
                log.info("%s: the client went away before its answer", upload.filename)
                return Response(status_code=499)  # nobody reads this
            log.info("%s: %d segments, %.1f s of media, answered in %.1f s (%s)", upload.filename,
                     len(transcript.segments), transcript.seconds, time.perf_counter() - start, response_format)
            return render(transcript, response_format, language)
        except ClientDisconnect:
            return Response(status_code=499)
        except (ApiError, asyncio.CancelledError):
            raise
        except MediaError as err:
            raise ApiError(415, client_message(err, upload), param=FILE_PART, code="unsupported_media") from err
        except (ValueError, FileNotFoundError) as err:
            raise ApiError(422, client_message(err, upload), param=FILE_PART, code="unreadable_for_model") from err
        except Exception as err:  # noqa: BLE001 - answered as a server error, logged with its traceback
            log.exception("transcription failed")
            raise ApiError(500, f"the server failed on this file: {type(err).__name__}: "
                                f"{client_message(err, upload)}", code="server_error") from err
        finally:
            if job is None:  # never queued: the folder is still ours
                remove_folder(directory)

    return app


def check_fields(fields: Dict[str, List[str]]) -> str:
    """The ``response_format`` asked for (``json`` by default); 422 for one not in
    :data:`RESPONSE_FORMATS`, and for word timestamps (``timestamp_granularities[]=word``),
    which the models do not give. ``model``, ``language``, ``prompt`` and ``temperature`` are
    accepted and not used."""
    response_format = (fields.get("response_format") or ["json"])[-1] or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(422, f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                       param="response_format", code="invalid_response_format")
    granularities = fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", [])
    unknown = [g for g in granularities if g != "segment"]
    if unknown:
        raise ApiError(422, f"timestamp_granularities {', '.join(unknown)}: only segment timestamps are available "
                            "(no word timestamps)", param="timestamp_granularities", code="invalid_granularity")
    return response_format


def client_message(err: BaseException, upload: Optional[Upload]) -> str:
    """``err``'s message with the server's copy of the file named as the client named it."""
    return str(err) if upload is None else str(err).replace(upload.path, upload.filename)


async def answer_or_disconnect(request: Request, job: Job) -> Optional[Transcript]:
    """The job's transcript, or ``None`` when the client disconnects first (the job is then
    dropped: skipped if it has not started; its folder is removed either way)."""
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        job.drop()
        raise
    finally:
        gone.cancel()
    if job.future in done:
        return job.future.result()
    job.drop()
    return None


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next ASGI message is
    ``http.disconnect``)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
