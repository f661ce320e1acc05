"""Writing small audio-visual test clips with PyAV."""

import numpy as np


def write_av(path, frames, fps, audio=None, sample_rate=44100, audio_codec="pcm_s16le", crf="12"):
    """Write RGB frames ``(T, H, W, 3)`` (H.264) and optionally float audio ``(C, S)`` in
    [-1, 1) as 16-bit samples: ``pcm_s16le`` (mkv/wav-friendly) or ``alac`` (mp4), both lossless."""
    import av

    planar = audio_codec == "alac"  # FFmpeg's ALAC encoder takes planar samples
    with av.open(path, mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": crf}
        sound = None
        if audio is not None:
            layout = {1: "mono", 2: "stereo"}[len(audio)]
            sound = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            pcm = (np.clip(audio, -1, 1 - 1 / 32768) * 32768).round().astype(np.int16)
            for start in range(0, pcm.shape[1], 1024):
                part = pcm[:, start:start + 1024]
                chunk = np.ascontiguousarray(part if planar else part.T.reshape(1, -1))
                frame = av.AudioFrame.from_ndarray(chunk, format="s16p" if planar else "s16", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode(None):
                container.mux(packet)
