"""One media file in, its :class:`~espnet.asr.transcription.decode.Transcript` out: the steps
``transcribe.py`` and the web service (``python -m espnet.serve``) share. Streams probed ->
the streams the model reads chosen -> decoded to the model's rates (face videos mouth-cropped)
-> segments planned -> decoded in batches.

Errors say which kind of problem a file has, for the service's status codes:
:class:`MediaError` (not media, unreadable, truncated, no audio or video stream, an empty
stream) and plain ``ValueError`` (the file is media, but this model cannot read it: a stream
it needs is missing, no face for a video-only model)."""

from typing import Any, Callable, Dict, List, Optional

from espnet.asr.fallback import FallbackOptions
from espnet.asr.repetition import GuardOptions
from espnet.asr.transcription.decode import SegmentOptions, Transcript, plan_segments, streams_to_read, transcribe_media


class MediaError(ValueError):
    """The file is not usable media: no media file at all, unreadable or truncated, neither an
    audio nor a video stream, or a stream that holds nothing decodable."""


class Transcriber:
    """A recogniser with its decoding and segmentation settings: call it with a media file.

    Args:
        recognizer: A :class:`~espnet.asr.pretrained.Recognizer`.
        options: Decoding options for :meth:`Recognizer.decode_options` (``beam_size``,
            ``ctc_weight``, ``max_new_tokens``).
        segments: Where recordings are cut.
        batch_size: Segments decoded together.
        drop_stream: ``video`` / ``audio``: an audio-visual model decodes without that stream
            (``--drop-stream``); a model without stand-ins for a missing stream is refused here.
        cropper_factory: Makes the face -> mouth cropper for face videos (default: the data
            preparation's MediaPipe cropper); called once, on the first face video.
        guard: The repetition guard's thresholds (:class:`espnet.asr.repetition.GuardOptions`).
        fallback: With :class:`espnet.asr.fallback.FallbackOptions`, a segment failing the guard
            is decoded again by sampling; ``None``: no fallback.
        previous_text: Whisper decoders: decode each segment after the text of the ones before it.
    """

    def __init__(self, recognizer: Any, options: Optional[Dict[str, Any]] = None,
                 segments: SegmentOptions = SegmentOptions(), batch_size: int = 8,
                 drop_stream: Optional[str] = None, cropper_factory: Optional[Callable[[], Any]] = None,
                 guard: GuardOptions = GuardOptions(), fallback: Optional[FallbackOptions] = None,
                 previous_text: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        if drop_stream is not None:
            streams_to_read(recognizer, "", True, True, drop_stream)  # a model without stand-ins: error here
        self.recognizer = recognizer
        self.options = dict(options or {})
        self.segments = segments
        self.batch_size = batch_size
        self.drop_stream = drop_stream
        self._cropper_factory = cropper_factory or default_cropper
        self._croppers: List[Any] = []
        self.guard = guard
        self.fallback = fallback
        self.previous_text = previous_text

    def cropper(self) -> Any:
        """The face -> mouth cropper, made on the first face video (MediaPipe starts slowly) and
        kept for the others."""
        if not self._croppers:
            self._croppers.append(self._cropper_factory())
        return self._croppers[0]

    def __call__(self, path: str, progress: bool = False) -> Transcript:
        """The transcript of ``path``.

        Raises:
            FileNotFoundError; :class:`MediaError` naming the file (not usable media); ValueError
            naming the file (the model cannot read it); ImportError (face video without the
            cropper's packages).
        """
        from espnet.asr.transcription.media import decode_media, probe_streams

        try:
            has_audio, has_video = probe_streams(path)
        except FileNotFoundError:
            raise
        except ValueError as err:
            raise MediaError(str(err)) from err
        if not has_audio and not has_video:
            raise MediaError(f"{path}: the file holds neither an audio nor a video stream")
        streams = streams_to_read(self.recognizer, path, has_audio, has_video, self.drop_stream)
        try:
            media = decode_media(path, streams, self.cropper)
        except ValueError as err:
            raise MediaError(str(err)) from err
        if media.seconds <= 0:
            raise MediaError(f"{path}: the {' and '.join(streams)} stream is empty")
        planned, gaps = plan_segments(self.recognizer, media, self.segments)
        return transcribe_media(self.recognizer, media, planned, batch_size=self.batch_size, progress=progress,
                                gaps=gaps, guard=self.guard, fallback=self.fallback,
                                previous_text=self.previous_text, **self.options)

    def repetition_warning(self, transcript: Transcript) -> Optional[str]:
        """A warning naming the segments of ``transcript`` the guard finds repeating, else ``None``."""
        from espnet.asr.fallback import length_limit_name
        from espnet.asr.repetition import repetition_warning

        limit = length_limit_name(self.recognizer.model, self.options.get("max_new_tokens", 0))
        return repetition_warning([s.check for s in transcript.segments if s.check is not None],
                                  f"segments of {transcript.path}", self.guard, limit)


def default_cropper() -> Any:
    """The data preparation's face -> mouth cropper (MediaPipe), at the model's rates."""
    from espnet.asr.transcription.media import MOUTH_CROP_SIZE
    from preparation.prepare_dataset import import_mouth_cropper

    return import_mouth_cropper()(crop_size=MOUTH_CROP_SIZE, fps=25.0, sample_rate=16000, min_face_fraction=1e-6)
