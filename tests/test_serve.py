"""The transcription web service (python -m espnet.serve): every endpoint and error status
through FastAPI's test client, each response_format equal to what transcribe.py writes for the
same file, 8 concurrent uploads to the real command (uvicorn in a subprocess), a full queue
(503 + Retry-After), clients that go away, nothing left in the temporary folder, and the page
in a real headless chromium. A tiny untrained audio model and a generated recording (two eSpeak
utterances, 29.97 fps H.264 + 48 kHz stereo AAC), as in tests/test_transcribe.py."""

import contextlib
import faulthandler
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO

pytest.importorskip("av")
pytest.importorskip("silero_vad")
pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from espnet.asr import transcribe_cli  # noqa: E402
from espnet.serve import cli as serve_cli  # noqa: E402
from espnet.serve.app import create_app  # noqa: E402

DECODING = ["--beam-size", "2", "--num-threads", "1"]
TIMEOUT = 60.0  # seconds: any single request or wait in these tests
HANG_SECONDS = 300  # a whole test


@pytest.fixture(autouse=True)
def hang_is_failure():
    """The in-process test client has no timeout of its own: a test still running after
    HANG_SECONDS ends the test process with every thread's traceback."""
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A recording of two corpus utterances (mp4 with sound), the same without sound, and an
    untrained tiny audio model with the corpus's tokenizer."""
    from bad_corpus import write_untrained_model
    from datamodule.media import load_audio, load_video
    from datamodule.text_transform import TextTransform
    from preparation.long_recording import write_recording
    from preparation.synthetic_av import generate

    root = str(tmp_path_factory.mktemp("serve_media"))
    paths = generate(os.path.join(root, "corpus"), num_utts=3, num_speakers=3, seed=3, progress=False,
                     babble_seconds=20.0)
    clips = []
    for dirpath, _, names in sorted(os.walk(os.path.join(root, "corpus", "synth"))):
        for name in sorted(n for n in names if n.endswith(".mp4")):
            mp4 = os.path.join(dirpath, name)
            clips.append((load_video(mp4), load_audio(mp4[:-4] + ".wav")[:, 0]))
    talk, silent, short = (os.path.join(root, name) for name in ("talk.mp4", "silent.mp4", "short.m4a"))
    write_recording(talk, clips[:2], gap=1.0)
    write_recording(silent, clips[:1], gap=1.0, audio=False)
    write_recording(short, clips[2:], gap=0.5, video=False)
    odim = TextTransform(paths["sp_model_path"], paths["dict_path"]).odim
    corpus = types.SimpleNamespace(odim=lambda: odim, toy=paths)
    model = write_untrained_model(corpus, os.path.join(root, "model_avg_audio.pth"), modality="audio")
    return {"talk": talk, "silent": silent, "short": short, "model": model, "root": root}


@pytest.fixture(scope="module")
def transcriber(media):
    """The model loaded once, as the service loads it."""
    args = serve_cli.parse_args(["--model", media["model"], *DECODING])
    return transcribe_cli.build_transcriber(args)


@pytest.fixture(scope="module")
def expected(media, tmp_path_factory):
    """What transcribe.py writes for the recordings with the same model and flags."""
    out = str(tmp_path_factory.mktemp("expected"))
    code = transcribe_cli.main([media["talk"], media["short"], "--model", media["model"], "--output-dir", out,
                                "--no-progress", *DECODING])
    assert code == 0
    expected = {}
    for name, segments in (("talk", 2), ("short", 1)):
        text = {fmt: open(os.path.join(out, f"{name}.{fmt}"), encoding="utf8").read()
                for fmt in ("txt", "json", "srt", "vtt")}
        result = json.loads(text["json"])
        assert len(result["segments"]) == segments and all(s["text"] for s in result["segments"])  # text to compare
        expected[name] = {**text, "result": result}
    return expected


@pytest.fixture
def temp_root(tmp_path):
    """The folder the service makes its per-request folders in: empty after every test."""
    root = tmp_path / "requests"
    root.mkdir()
    yield str(root)
    assert os.listdir(root) == [], "request folders left behind"


@contextlib.contextmanager
def service_client(transcribe, temp_root, **kwargs):
    settings = {"max_upload_bytes": 50 * 2 ** 20, "max_queue": 4, **kwargs}
    with TestClient(create_app(transcribe, temp_root=temp_root, **settings)) as client:
        yield client


def post(client, path, response_format=None, name=None, **data):
    """What OpenAI's Python client sends: multipart with ``file`` and form fields."""
    fields = {"model": "whisper-1", **data}
    if response_format is not None:
        fields["response_format"] = response_format
    with open(path, "rb") as handle:
        files = {"file": (name or os.path.basename(path), handle, "video/mp4")}
        return client.post("/v1/audio/transcriptions", files=files, data=fields)


def assert_error(response, status, param, code, message_start):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["param"] == param and error["code"] == code
    assert error["message"].startswith(message_start), error["message"]
    return error


# ---- 200 in every response_format, /health, docs, page ------------------------------------
def test_every_response_format_equals_transcribe_py(transcriber, expected, media, temp_root):
    expected = expected["talk"]
    result = expected["result"]
    with service_client(transcriber, temp_root) as client:
        for fmt in (None, "json"):
            response = post(client, media["talk"], fmt)
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            assert response.json() == {"text": result["text"]}
        response = post(client, media["talk"], "text")
        assert response.headers["content-type"].startswith("text/plain") and response.text == result["text"] + "\n"
        response = post(client, media["talk"], "srt")
        assert response.status_code == 200 and response.text == expected["srt"]
        response = post(client, media["talk"], "vtt")
        assert response.headers["content-type"].startswith("text/vtt") and response.text == expected["vtt"]
        verbose = post(client, media["talk"], "verbose_json").json()
        assert os.listdir(temp_root) == []
    # no language unless --language
    assert list(verbose) == ["task", "duration", "text", "segments", "repeating_segments", "gaps"]
    assert verbose["task"] == "transcribe" and verbose["duration"] == result["duration"]
    assert verbose["text"] == result["text"] and verbose["gaps"] == []
    assert verbose["repeating_segments"] == result["repeating_segments"]
    # every field of transcribe.py's segments (the guard's included), plus Whisper's seek
    assert [{k: v for k, v in s.items() if k != "seek"} for s in verbose["segments"]] == result["segments"]
    assert [s["seek"] for s in verbose["segments"]] == [int(round(s["start"] * 100)) for s in result["segments"]]


def test_language_is_reported_when_given(transcriber, media, temp_root):
    with service_client(transcriber, temp_root, language="english") as client:
        verbose = post(client, media["talk"], "verbose_json").json()
    assert verbose["language"] == "english" and list(verbose)[:3] == ["task", "language", "duration"]


def test_health_docs_and_page(transcriber, temp_root):
    with service_client(transcriber, temp_root, info={"model": "m.pth", "streams": ["audio"]}, max_queue=3) as client:
        assert client.get("/health").json() == {"status": "ok", "model": "m.pth", "streams": ["audio"],
                                                "queue": {"waiting": 0, "max_waiting": 3, "decoding": False}}
        spec = client.get("/openapi.json").json()
        body = spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert body["schema"]["required"] == ["file"]
        assert body["schema"]["properties"]["response_format"]["enum"] == ["json", "text", "srt", "vtt",
                                                                           "verbose_json"]
        assert client.get("/docs").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert '<input type="file"' in page.text and "<track" not in page.text  # the track is built from the VTT
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
        assert_error(client.get("/nowhere"), 404, None, None, "Not Found")


# ---- errors ---------------------------------------------------------------------------------
def test_upload_beyond_the_limit_is_refused_while_it_streams(transcriber, media, temp_root):
    """413 for a file beyond --max-upload-mb: from the test client; on a real server, as soon
    as the declared Content-Length says so (no body sent), and, with a Content-Length that
    does not tell, once the part read so far passes the limit (the rest never sent)."""
    limit = 40_000
    assert os.path.getsize(media["talk"]) > 2 * limit
    with service_client(transcriber, temp_root, max_upload_bytes=limit) as client:
        assert_error(post(client, media["talk"]), 413, "file", "file_too_large",
                     "the upload is larger than the server's limit of 0.038147 MB (--max-upload-mb)")
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
    with running_server(create_app(transcriber, max_upload_bytes=limit, max_queue=1, temp_root=temp_root)) as url:
        port = int(url.rsplit(":", 1)[1])
        with raw_request(port, "XyZ", 50 * 2 ** 20) as sock:  # declared 50 MB: refused before any byte of it
            status_line, body = read_response(sock)
        assert status_line == "HTTP/1.1 413 Request Entity Too Large" and json.loads(body)["error"]["code"] == \
            "file_too_large"
        with raw_request(port, "XyZ", 800_000) as sock:  # 800 kB declared (under the body limit), 100 kB sent
            sock.sendall(head + b"\0" * 100_000)
            status_line, body = read_response(sock)
        assert status_line == "HTTP/1.1 413 Request Entity Too Large" and json.loads(body)["error"]["code"] == \
            "file_too_large"
        wait_until(lambda: os.listdir(temp_root) == [])


def test_files_that_are_not_usable_media_get_415(transcriber, media, temp_root, tmp_path):
    with open(media["talk"], "rb") as handle:
        (tmp_path / "truncated.mp4").write_bytes(handle.read()[:20000])
    (tmp_path / "noise.wav").write_bytes(os.urandom(5000))
    (tmp_path / "captions.mkv").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    (tmp_path / "empty.mp3").write_bytes(b"")
    cases = {"truncated.mp4": "cannot read the media file", "noise.wav": "cannot read the media file",
             "captions.mkv": "the file holds neither an audio nor a video stream",
             "empty.mp3": "cannot read the media file"}
    with service_client(transcriber, temp_root) as client:
        for name, what in cases.items():
            error = assert_error(post(client, str(tmp_path / name)), 415, "file", "unsupported_media", f"{name}: ")
            assert what in error["message"] and temp_root not in error["message"]


def test_bad_requests_and_media_this_model_cannot_read_get_422_or_400(transcriber, media, temp_root):
    with service_client(transcriber, temp_root) as client:
        assert_error(post(client, media["silent"], name="clip.mp4"), 422, "file", "unreadable_for_model",
                     "clip.mp4: the model reads audio but the file holds only video")
        assert_error(post(client, media["talk"], "docx"), 422, "response_format", "invalid_response_format",
                     "response_format 'docx' is not one of json, text, srt, vtt, verbose_json")
        response = post(client, media["talk"], "verbose_json", **{"timestamp_granularities[]": ["word", "segment"]})
        assert_error(response, 422, "timestamp_granularities", "invalid_granularity",
                     "timestamp_granularities word: only segment timestamps are available (no word timestamps)")
        response = post(client, media["talk"], "verbose_json", **{"timestamp_granularities[]": "segment"})
        assert response.status_code == 200 and response.json()["segments"]
        response = client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"x": ("a", b"1")})
        assert_error(response, 422, "file", "missing_file", "the request has no 'file' part")
        response = client.post("/v1/audio/transcriptions", json={"file": "talk.mp4"})
        assert_error(response, 400, None, "malformed_request", "send the request as multipart/form-data")
        cut_short = b'--b\r\nContent-Disposition: form-data; name="file"'
        response = client.post("/v1/audio/transcriptions", content=cut_short,
                               headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(response, 400, None, "malformed_request", "the multipart body ends before its closing boundary")


def test_a_fault_of_the_server_is_500_and_leaves_nothing(media, temp_root):
    def broken(path):
        assert os.path.isfile(path) and os.path.dirname(os.path.dirname(path)) == temp_root
        raise RuntimeError("the decoder fell over")

    with service_client(broken, temp_root) as client:
        error = assert_error(post(client, media["talk"]), 500, None, "server_error",
                             "the server failed on this file: RuntimeError: the decoder fell over")
    assert error["type"] == "server_error"


def test_a_full_queue_answers_503_with_retry_after(transcriber, media, temp_root):
    """One request decoding (held), one waiting (--max-queue 1): the third is refused at once."""
    held, release, started, calls = held_transcriber(transcriber)

    with running_server(create_app(held, max_upload_bytes=2 ** 26, max_queue=1, temp_root=temp_root)) as url, \
            ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_url, url, media["talk"])
        assert started.wait(TIMEOUT)
        second = pool.submit(post_url, url, media["talk"])
        wait_until(lambda: httpx.get(f"{url}/health").json()["queue"]["waiting"] == 1)
        refused = post_url(url, media["talk"])
        assert_error(refused, 503, None, "queue_full", "the server is busy: 1 requests are waiting (--max-queue 1)")
        assert int(refused.headers["retry-after"]) >= 1
        release.set()
        assert first.result(TIMEOUT).status_code == 200 and second.result(TIMEOUT).status_code == 200
    assert len(calls) == 2


def test_clients_that_go_away_leave_nothing_behind(transcriber, media, temp_root):
    """A client that drops the connection mid-upload, and one that drops it while its request
    waits in the queue (that request is then never decoded)."""
    held, release, started, calls = held_transcriber(transcriber)

    with open(media["talk"], "rb") as handle:
        data = handle.read()
    boundary = "B0und"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="talk.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n").encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    with running_server(create_app(held, max_upload_bytes=2 ** 26, max_queue=2, temp_root=temp_root)) as url:
        port = int(url.rsplit(":", 1)[1])
        # 1. half an upload, then gone
        with raw_request(port, boundary, len(body)) as sock:
            sock.sendall(body[: len(body) // 2])
            wait_until(lambda: any(os.listdir(os.path.join(temp_root, d)) for d in os.listdir(temp_root)))
        wait_until(lambda: os.listdir(temp_root) == [])
        # 2. gone while waiting behind a request that is decoding
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_url, url, media["talk"])
            assert started.wait(TIMEOUT)
            with raw_request(port, boundary, len(body)) as sock:
                sock.sendall(body)
                wait_until(lambda: httpx.get(f"{url}/health").json()["queue"]["waiting"] == 1)
            release.set()
            assert first.result(TIMEOUT).status_code == 200
        wait_until(lambda: os.listdir(temp_root) == [] and httpx.get(f"{url}/health").json()["queue"] == {
            "waiting": 0, "max_waiting": 2, "decoding": False})
    assert len(calls) == 1  # the dropped request was not decoded


# ---- the command: flags, a real server, 8 concurrent uploads --------------------------------
@pytest.mark.parametrize("flag,value,message", [
    ("--max-upload-mb", "0", "argument --max-upload-mb: must be > 0 and finite, got 0"),
    ("--max-upload-mb", "-5", "argument --max-upload-mb: must be > 0 and finite, got -5"),
    ("--max-upload-mb", "nan", "argument --max-upload-mb: must be > 0 and finite, got nan"),
    ("--max-upload-mb", "lots", "argument --max-upload-mb: must be a number of megabytes, got 'lots'"),
    ("--max-queue", "0", "argument --max-queue: must be >= 1, got 0"),
    ("--max-queue", "2.5", "argument --max-queue: must be a whole number, got '2.5'"),
    ("--port", "70000", "argument --port: must be in 1..65535, got 70000"),
    ("--beam-size", "0", "--beam-size must be >= 1, got 0"),
])
def test_bad_flags_are_one_line_and_exit_2(flag, value, message, capsys):
    with pytest.raises(SystemExit) as info:
        serve_cli.main(["--model", "m.pth", flag, value])
    assert info.value.code == 2 and capsys.readouterr().err == f"python -m espnet.serve: error: {message}\n"


def test_defaults_listen_on_this_machine_only():
    args = serve_cli.parse_args(["--model", "m.pth"])
    assert (args.host, args.port, args.max_upload_mb, args.max_queue, args.language, args.temp_dir) == (
        "127.0.0.1", 8000, 200.0, 8, None, None)


def test_eight_concurrent_uploads_to_the_command(media, expected, tmp_path):
    """``python -m espnet.serve`` in a subprocess: 8 uploads at once, in every format, all
    answered as transcribe.py writes them; no request folder left; Ctrl+C stops it."""
    expected = expected["short"]
    temp_dir = tmp_path / "requests"
    temp_dir.mkdir()
    port = free_port()
    command = [sys.executable, "-m", "espnet.serve", "--model", media["model"], "--port", str(port),
               "--temp-dir", str(temp_dir), "--max-queue", "8", *DECODING]
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server.poll() is not None or reachable(url), timeout=120)
        assert server.poll() is None, read_log(log)
        formats = ["json", "text", "srt", "vtt", "verbose_json", "json", "srt", "vtt"]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda fmt: post_url(url, media["short"], fmt), formats))
        want = {"json": {"text": expected["result"]["text"]}, "text": expected["result"]["text"] + "\n",
                "srt": expected["srt"], "vtt": expected["vtt"]}
        for fmt, response in zip(formats, answers):
            assert response.status_code == 200, response.text
            got = response.json() if fmt.endswith("json") else response.text
            assert (got["segments"] == [dict(s, seek=int(round(s["start"] * 100)), temperature=0.0)
                                        for s in expected["result"]["segments"]]
                    if fmt == "verbose_json" else got == want[fmt]), fmt
        assert os.listdir(temp_dir) == []
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    output = read_log(log)
    assert server.returncode == 0, output
    assert output.count("loaded ") == 1 and f"serving on http://127.0.0.1:{port}/" in output
    assert output.rstrip().endswith("stopped")
    assert output.count('"POST /v1/audio/transcriptions HTTP/1.1" 200') == 8


# ---- the page in a real browser ----------------------------------------------------------------
def test_the_page_in_headless_chromium(transcriber, expected, media, temp_root, tmp_path):
    """Debian's chromium driven by Selenium: pick the recording, press Transcribe, see each
    segment with its timestamps and the subtitles track loaded on the video."""
    expected = expected["talk"]
    if not (os.path.isfile("/usr/bin/chromium") and os.path.isfile("/usr/bin/chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("CI: /usr/bin/chromium and /usr/bin/chromedriver are needed (.ci/run installs them)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    with running_server(create_app(transcriber, max_upload_bytes=2 ** 26, max_queue=2, temp_root=temp_root)) as url:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.set_page_load_timeout(TIMEOUT)
            driver.set_script_timeout(TIMEOUT)
            driver.get(url + "/")
            driver.find_element(By.ID, "file").send_keys(media["talk"])
            driver.find_element(By.ID, "go").click()
            wait = WebDriverWait(driver, TIMEOUT)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#segments li") or "Error" in status(d))
            rows = [(item.find_element(By.CLASS_NAME, "time").text, item.find_element(By.CLASS_NAME, "text").text)
                    for item in driver.find_elements(By.CSS_SELECTOR, "#segments li")]
            cues = [block.splitlines() for block in expected["vtt"].split("\n\n")[1:] if block]
            assert rows == [(cue[0].replace(" --> ", " \u2192 "), cue[1]) for cue in cues], status(driver)
            assert status(driver).startswith(f"talk.mp4: {len(cues)} segments in ")
            # the subtitles: a <track> from a blob: URL, loaded, with the cues of the VTT
            wait.until(lambda d: d.execute_script("const t = document.querySelector('#player track');"
                                                  "return t !== null && t.readyState === 2;"))
            track = driver.execute_script(
                "const t = document.querySelector('#player track');"
                "return {src: t.src, mode: t.track.mode,"
                "        cues: Array.from(t.track.cues).map(c => [c.startTime, c.text]),"
                "        media: document.querySelector('#player').src};")
            assert track["src"].startswith("blob:") and track["media"].startswith("blob:")
            assert track["mode"] == "showing"
            assert [text for _, text in track["cues"]] == [cue[1] for cue in cues]
            starts = [s["start"] for s in expected["result"]["segments"] if s["text"]]
            assert all(abs(a - b) < 1e-3 for (a, _), b in zip(track["cues"], starts))
        finally:
            driver.quit()


def status(driver):
    return driver.execute_script("return document.getElementById('status').textContent;")


def read_response(sock):
    """``(status line, body)`` of the HTTP/1.1 response on ``sock`` (with a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = int(next(line.split(":", 1)[1] for line in lines if line.lower().startswith("content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return lines[0], body.decode("utf-8")


# ---- helpers ----------------------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def held_transcriber(transcriber):
    """``(held, release, started, calls)``: ``held(path)`` records the path, sets ``started``,
    waits until ``release`` is set (at most TIMEOUT), then transcribes with ``transcriber``."""
    release, started, calls = threading.Event(), threading.Event(), []

    def held(path):
        calls.append(path)
        started.set()
        assert release.wait(TIMEOUT)
        return transcriber(path)

    return held, release, started, calls


def wait_until(condition, timeout=TIMEOUT, step=0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(step)


def reachable(url):
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def read_log(handle):
    handle.flush()
    handle.seek(0)
    return handle.read()


def post_url(url, path, response_format="json"):
    with open(path, "rb") as handle:
        return httpx.post(f"{url}/v1/audio/transcriptions", timeout=TIMEOUT,
                          files={"file": (os.path.basename(path), handle, "video/mp4")},
                          data={"model": "whisper-1", "response_format": response_format})


@contextlib.contextmanager
def running_server(app):
    """``app`` on uvicorn in a thread, on a free port of 127.0.0.1; shut down after."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive())
        assert thread.is_alive(), "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


@contextlib.contextmanager
def raw_request(port, boundary, length):
    """A socket that has sent the head of a multipart POST of ``length`` bytes; closed after."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        sock.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n")
                     .encode())
        yield sock
    finally:
        sock.close()
