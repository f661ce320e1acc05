"""eSpeak NG speech with a phoneme timeline, through ctypes and the ``espeakng-loader`` wheel.

The wheel ships ``libespeak-ng.so`` and its ``espeak-ng-data``; ``espeakng_loader`` gives
their paths. Layouts and constants follow eSpeak NG's ``speak_lib.h`` (API revision 12).

eSpeak keeps state between utterances inside the library (the pitch flutter index and
other statics), so the same text gives slightly different samples depending on what was
spoken before. To make a corpus reproducible, :meth:`ESpeak.synthesize` runs each
utterance in a forked child of a process whose engine has only been initialised: every
utterance starts from the same library state. (Without ``os.fork``, e.g. on Windows, it
synthesises in-process and the output is not bit-exact across runs.) Forking a process
that has torch loaded is slow, so :class:`ESpeakServer` keeps the engine in a small helper
process (numpy and ctypes only) that forks for each request.
"""

import ctypes
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

# espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options
espeakINITIALIZE_PHONEME_EVENTS = 0x0001
# espeak_Synth flags
espeakCHARS_UTF8 = 1
espeakPHONEMES = 0x100
# espeak_POSITION_TYPE
POS_CHARACTER = 1
# espeak_EVENT_TYPE
espeakEVENT_LIST_TERMINATED = 0
espeakEVENT_PHONEME = 7
# espeak_PARAMETER
espeakRATE = 1
espeakVOLUME = 2
espeakPITCH = 3
espeakRANGE = 4
espeakWORDGAP = 7
# espeak_ERROR
EE_OK = 0

NATIVE_RATE = 22050


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class EspeakEvent(ctypes.Structure):
    """``espeak_EVENT``: for a phoneme event ``id.string`` is the mnemonic (8 bytes, zero
    terminated unless all 8 are used) and ``sample`` its start in output samples."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(EspeakEvent))


@dataclass(frozen=True)
class VoiceSettings:
    """One eSpeak voice: ``name`` as ``espeak_SetVoiceByName`` takes it (language, optionally
    ``+variant``), rate in words per minute (80..450), pitch and pitch range (0..100, 50 is
    the voice's own), word gap in units of 10 ms."""

    name: str
    rate: int = 160
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0


@dataclass
class Speech:
    """Synthesised speech: ``samples`` int16 ``(S,)`` at ``sample_rate`` Hz and the phoneme
    timeline, a list of ``(mnemonic, start_sample)`` in output order."""

    samples: np.ndarray
    sample_rate: int
    phonemes: List[Tuple[str, int]]


def library_paths() -> Tuple[str, str]:
    """``(path of libespeak-ng, path of espeak-ng-data)`` from the ``espeakng-loader`` wheel."""
    try:
        import espeakng_loader
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the synthetic corpus needs eSpeak NG: pip install espeakng-loader "
                          "(see requirements.txt)") from err
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class ESpeak:
    """The eSpeak NG engine of this process (the library has global state: one per process).

    Args:
        isolate: Synthesise each utterance in a forked child (bit-exact output, see the
            module docstring); ``False`` synthesises in-process.
    """

    def __init__(self, isolate: bool = True) -> None:
        lib_path, data_path = library_paths()
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_SetSynthCallback.argtypes = [SYNTH_CALLBACK]
        self.lib.espeak_SetSynthCallback.restype = None
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetParameter.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint),
                                          ctypes.c_void_p]
        self.lib.espeak_Synth.restype = ctypes.c_int
        self.lib.espeak_Synchronize.argtypes = []
        self.lib.espeak_Synchronize.restype = ctypes.c_int
        # The data path may be given as the espeak-ng-data folder itself (eSpeak NG checks it first).
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                          espeakINITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data_path})")
        self.sample_rate = int(rate)
        self._chunks: List[bytes] = []
        self._events: List[Tuple[str, int]] = []
        self._callback = SYNTH_CALLBACK(self._on_synth)  # keep a reference: eSpeak holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        self.isolate = isolate and hasattr(os, "fork")
        # Load the English dictionary and phoneme tables once here, so that forked children
        # (which all start from this state) do not each read them again.
        self._synthesize_here("a", VoiceSettings("en"))

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        i = 0
        while events[i].type != espeakEVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == espeakEVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf8", "replace")
                self._events.append((name, int(event.sample)))
            i += 1
        return 0  # continue

    def _synthesize_here(self, text: str, voice: VoiceSettings) -> Speech:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != EE_OK:
            raise ValueError(f"eSpeak NG has no voice {voice.name!r}")
        for param, value in ((espeakRATE, voice.rate), (espeakPITCH, voice.pitch),
                             (espeakRANGE, voice.pitch_range), (espeakWORDGAP, voice.word_gap),
                             (espeakVOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8 | espeakPHONEMES,
                                    None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} for {text!r}")
        self.lib.espeak_Synchronize()
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
        return Speech(samples, self.sample_rate, list(self._events))

    def synthesize(self, text: str, voice: VoiceSettings) -> Speech:
        """Speak ``text`` (UTF-8; ``[[...]]`` spans are eSpeak phoneme codes) with ``voice``.

        Returns:
            :class:`Speech` with int16 samples ``(S,)`` at 22050 Hz and phoneme start samples.
        """
        if not self.isolate:
            return self._synthesize_here(text, voice)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise from the pristine engine state, send, exit at once
            code = 1
            try:
                os.close(read_fd)
                try:
                    payload = pickle.dumps(("ok", self._synthesize_here(text, voice)))
                except Exception as err:  # report the error to the parent
                    payload = pickle.dumps(("error", f"{type(err).__name__}: {err}"))
                with os.fdopen(write_fd, "wb") as handle:
                    handle.write(struct.pack("<Q", len(payload)) + payload)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as handle:
            blob = handle.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or len(blob) < 8 or struct.unpack("<Q", blob[:8])[0] != len(blob) - 8:
            raise RuntimeError(f"eSpeak NG child process failed (status {status}) for {text!r}")
        kind, value = pickle.loads(blob[8:])
        if kind != "ok":
            raise RuntimeError(f"eSpeak NG failed for {text!r}: {value}")
        return value


def _read_message(stream) -> Optional[bytes]:
    """One length-prefixed message from a binary stream; ``None`` at end of stream."""
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = struct.unpack("<Q", header)[0]
    body = stream.read(size)
    if len(body) != size:
        raise EOFError("truncated message")
    return body


def _write_message(stream, body: bytes) -> None:
    stream.write(struct.pack("<Q", len(body)) + body)
    stream.flush()


def serve() -> None:
    """Helper process loop: read pickled ``(text, VoiceSettings)`` requests on stdin, answer
    ``("ok", Speech)`` or ``("error", message)`` on stdout, until stdin closes."""
    engine = ESpeak(isolate=True)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answer stream
    while True:
        request = _read_message(stdin)
        if request is None:
            return
        try:
            text, voice = pickle.loads(request)
            answer = ("ok", engine.synthesize(text, voice))
        except Exception as err:  # keep serving; the client raises
            answer = ("error", f"{type(err).__name__}: {err}")
        _write_message(stdout, pickle.dumps(answer))


class ESpeakServer:
    """Client of an eSpeak helper process (see :func:`serve`); same ``synthesize`` as
    :class:`ESpeak`. The helper exits when this object is closed or garbage collected."""

    def __init__(self) -> None:
        library_paths()  # fail here, with the install hint, if the wheel is missing
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([repo] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from preparation.synthetic.espeak import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def synthesize(self, text: str, voice: VoiceSettings) -> Speech:
        """Speak ``text`` with ``voice`` in the helper; see :meth:`ESpeak.synthesize`."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"the eSpeak helper process exited with status {self.proc.returncode}")
        _write_message(self.proc.stdin, pickle.dumps((text, voice)))
        answer = _read_message(self.proc.stdout)
        if answer is None:
            raise RuntimeError(f"the eSpeak helper process died while speaking {text!r}")
        kind, value = pickle.loads(answer)
        if kind != "ok":
            raise RuntimeError(f"eSpeak NG failed for {text!r}: {value}")
        return value

    def close(self) -> None:
        """Stop the helper process."""
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            proc.stdout.close()

    def __enter__(self) -> "ESpeakServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:  # pipes already torn down at interpreter exit
            return
