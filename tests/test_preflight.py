"""The pre-flight check of label lists: header probes, the cache beside the CSV, what each
modality reads, notes, and averaging that refuses non-finite checkpoints."""

import json
import os

import pytest
import torch

from bad_corpus import BadCorpus
from datamodule.media import load_audio, load_video, probe_audio, probe_video, write_wav
from datamodule.preflight import CACHE_SUFFIX, check_label_list


@pytest.fixture
def corpus(toy_corpus, tmp_path):
    return BadCorpus(toy_corpus, str(tmp_path / "root"))


def test_header_probes_agree_with_decoding(toy_corpus):
    utt = open(toy_corpus["train"]).readline().split(",")
    mp4 = os.path.join(toy_corpus["root"], utt[0], utt[1])
    video, audio = probe_video(mp4), probe_audio(mp4[:-4] + ".wav")
    frames = load_video(mp4)
    assert (video.frames, video.fps, video.width, video.height) == (frames.size(0), 25.0, 96, 96)
    assert audio.sample_rate == 16000 and audio.channels == 1
    assert audio.seconds == pytest.approx(load_audio(mp4[:-4] + ".wav").size(0) / 16000)


def test_truncated_wav_and_non_pcm_wav(corpus, tmp_path):
    line = corpus.copy_clip(corpus.lines["train"][0], "w")
    wav = corpus.media("w", ".wav")
    full = probe_audio(wav).seconds
    with open(wav, "r+b") as handle:
        handle.truncate(os.path.getsize(wav) // 2)
    with pytest.raises(ValueError, match=rf"w.wav: the wav header announces {full:.3f} s but the file holds"):
        probe_audio(wav)
    check = check_label_list(corpus.root, corpus.label_path(corpus.write("t.csv", [line])), "audio")
    assert [(p.line, "truncated file" in p.message) for p in check.problems] == [(1, True)]
    # float samples (format tag 3) are read from the header too; anything else goes through PyAV
    import av

    flac = str(tmp_path / "a.flac")
    with av.open(flac, "w") as container:
        stream = container.add_stream("flac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(torch.zeros(1, 8000, dtype=torch.int16).numpy(), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    info = probe_audio(flac)
    assert info.sample_rate == 8000 and info.seconds == pytest.approx(1.0, abs=0.01)


def test_cache_is_reused_and_invalidated_by_size_or_mtime(corpus):
    lines = [corpus.copy_clip(line, f"c{i}") for i, line in enumerate(corpus.lines["train"][:3])]
    path = corpus.label_path(corpus.write("c.csv", lines))
    first = check_label_list(corpus.root, path, "audiovisual")
    assert (first.probed, first.cached, first.problems) == (6, 0, [])
    with open(path + CACHE_SUFFIX) as handle:
        cached = json.load(handle)["media"]
    assert len(cached) == 6 and all({"size", "mtime_ns", "info"} <= set(v) for v in cached.values())
    second = check_label_list(corpus.root, path, "audiovisual")
    assert (second.probed, second.cached, second.problems) == (0, 6, [])
    # a changed file is probed again, and its new facts are what is checked
    wav = corpus.media("c1", ".wav")
    audio = load_audio(wav)[:, 0]
    write_wav(wav, torch.cat([audio, audio]))
    third = check_label_list(corpus.root, path, "audiovisual")
    assert (third.probed, third.cached) == (1, 5)
    assert [p.line for p in third.problems] == [2] and "audio lasts" in third.problems[0].message
    # a cache entry claiming facts for a stale size is ignored
    os.utime(corpus.media("c0", ".mp4"), ns=(1, 1))
    assert check_label_list(corpus.root, path, "audiovisual").probed == 1
    assert check_label_list(corpus.root, path, "audiovisual", use_cache=False).probed == 6


def test_modality_decides_which_media_are_read(corpus):
    line = corpus.copy_clip(corpus.lines["train"][0], "m")
    path = corpus.label_path(corpus.write("m.csv", [line]))
    os.remove(corpus.media("m", ".wav"))
    assert check_label_list(corpus.root, path, "video").problems == []
    audio = check_label_list(corpus.root, path, "audiovisual").problems
    assert len(audio) == 1 and "audio file not found" in audio[0].message
    os.remove(corpus.media("m", ".mp4"))
    write_wav(corpus.media("m", ".wav"), torch.zeros(int(line.split(",")[2]) * 640))
    assert check_label_list(corpus.root, path, "audio").problems == []
    # audio-only: the audio duration is checked against input_length
    write_wav(corpus.media("m", ".wav"), torch.zeros(int(line.split(",")[2]) * 640 + 8000))
    (problem,) = check_label_list(corpus.root, path, "audio").problems
    assert problem.message.startswith(f"input_length is {line.split(',')[2]} (") and "more than 0.1 s apart" in problem.message


def test_other_sample_rates_are_noted(corpus):
    line = corpus.copy_clip(corpus.lines["train"][0], "r")
    wav = corpus.media("r", ".wav")
    audio = load_audio(wav, sample_rate=8000)
    write_wav(wav, audio[:, 0], sample_rate=8000)
    check = check_label_list(corpus.root, corpus.label_path(corpus.write("r.csv", [line])), "audiovisual")
    assert check.problems == []
    assert check.notes() == [f"note: {corpus.label_path('r.csv')}: 1 clip(s) have audio at 8000 Hz (resampled to "
                             f"16000 Hz when loaded)"]


def test_averaging_refuses_non_finite_checkpoints(tmp_path):
    from espnet.training.checkpoints import average_last_checkpoints

    for epoch, value in enumerate([1.0, float("nan")]):
        state = {"model.w": torch.tensor([value, 2.0]), "model.b": torch.ones(2)}
        torch.save({"state_dict": state}, tmp_path / f"epoch={epoch}.ckpt")
    with pytest.raises(ValueError, match=r"epoch=1.ckpt: 1 of 2 tensors hold NaN or inf values \(e.g. w\); "
                                         r"refusing to average it \(no model_avg written\)"):
        average_last_checkpoints(str(tmp_path), 2)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("model_avg")]


def test_transcripts_needed_without_a_tokenizer(corpus):
    lines = [line.rsplit(",", 1)[0] for line in corpus.lines["train"][:2]]  # legacy 4 columns
    path = corpus.label_path(corpus.write("l.csv", lines))
    assert check_label_list(corpus.root, path, "audio", odim=corpus.odim()).problems == []
    problems = check_label_list(corpus.root, path, "audio", need_transcript=True).problems
    assert [p.line for p in problems] == [1, 2]
    assert problems[0].message.startswith("no transcript column, and without --sp-model-path/--dict-path")
