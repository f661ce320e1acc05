"""Mouth cropping for audio-visual speech data with the geometry of Auto-AVSR's preparation:
face keypoints (MediaPipe face detection) per frame, filled and smoothed over time, similarity
alignment to Auto-AVSR's mean face, a 96x96 grayscale mouth crop at 25 fps (mp4) and the audio
as 16 kHz mono (wav).

    from preparation.mouth_crop import MouthCropper

    cropper = MouthCropper()                      # once per worker process
    result = cropper.process_clip("in.mp4", "out/clip.mp4", "out/clip.wav")
    result.status, result.num_frames, result.num_samples   # "ok" | "no_face" | "no_video"

Needs the data-preparation requirements (``preparation/requirements.txt`` and, with
``--no-deps``, ``preparation/requirements-nodeps.txt``). Importing this package needs neither:
``check_face_detection_models()`` (also run by ``MouthCropper()``) raises an ImportError with the
install command when they are missing, and mediapipe itself is imported on the first frame.
"""

from preparation.mouth_crop.cropper import ClipCrops, CropResult, MouthCropper, MouthTrack
from preparation.mouth_crop.landmarks import check_face_detection_models

__all__ = ["ClipCrops", "CropResult", "MouthCropper", "MouthTrack", "check_face_detection_models"]
