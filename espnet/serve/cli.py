"""``python -m espnet.serve``'s command line: load the model once (any model ``transcribe.py``
takes: ``--model`` or the model flags) and serve it over HTTP with uvicorn.

FastAPI on uvicorn: the standard Python stack for such a service, ASGI (uploads stream in
without a thread per request), with request parsing and OpenAPI docs (``/docs``,
``/openapi.json``) for free."""

import argparse
import logging
import math
import time
from typing import List, Optional

DESCRIPTION = ("Serve a model over HTTP: OpenAI-style POST /v1/audio/transcriptions, GET /health, the OpenAPI docs "
               "(/docs) and a page at / to transcribe a file in the browser.")


class OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line on stderr (not argparse's usage block first), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of megabytes, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 1..65535, got {value}")
    return value


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from espnet.asr.transcribe_cli import add_transcription_args, check_transcription_args

    p = OneLineParser(prog="python -m espnet.serve", description=DESCRIPTION)
    p.add_argument("--host", default="127.0.0.1",
                   help="Address to listen on; 0.0.0.0 serves every network the machine is on. (Default: 127.0.0.1, "
                        "this machine only)")
    p.add_argument("--port", type=port_number, default=8000, help="Port. (Default: 8000)")
    p.add_argument("--max-upload-mb", type=positive_megabytes, default=200.0,
                   help="Largest upload in MB (2^20 bytes); a larger one is refused with 413 as it streams in. "
                        "(Default: 200)")
    p.add_argument("--max-queue", type=positive_int, default=8,
                   help="Requests that may wait while one is decoded; more are refused with 503 and Retry-After. "
                        "(Default: 8)")
    p.add_argument("--language", default=None,
                   help="The language verbose_json reports (e.g. english). (Default: not reported)")
    p.add_argument("--temp-dir", default=None,
                   help="Where each request's upload folder goes (removed after the request). (Default: the system's "
                        "temporary folder)")
    add_transcription_args(p)
    args = p.parse_args(argv)
    check_transcription_args(p, args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    from espnet.training.cli_errors import run_cli

    return run_cli(lambda: serve(args), debug=args.debug)


def serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from espnet.asr.transcribe_cli import build_transcriber
    from espnet.serve.app import create_app

    if args.temp_dir is not None and not os.path.isdir(args.temp_dir):
        raise NotADirectoryError(f"--temp-dir {args.temp_dir}: not a directory")
    start = time.perf_counter()
    transcriber = build_transcriber(args)
    recognizer = transcriber.recognizer
    model = recognizer.model.config.describe()
    print(f"loaded {recognizer.source} ({model}) in {time.perf_counter() - start:.1f} s", flush=True)
    info = {"model": recognizer.source, "description": model, "streams": list(recognizer.streams),
            "device": str(recognizer.device)}
    app = create_app(transcriber, max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_queue=args.max_queue,
                     info=info, language=args.language, temp_root=args.temp_dir)
    print(f"serving on http://{args.host}:{args.port}/ (API docs: /docs; Ctrl+C stops)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info")
    except KeyboardInterrupt:  # Ctrl+C, re-raised by uvicorn after its shutdown: the normal way to stop
        pass
    print("stopped", flush=True)
    return 0
