"""train.py / eval.py / prepare_dataset through bad inputs and faults: each one ends with an
exit status, one ``error:`` line naming the culprit, and no traceback (unless --debug)."""

import os
import pickle

import pytest
import torch

from espnet.asr import eval_cli
from espnet.training import train_cli
from bad_corpus import AUDIO_MODEL, BadCorpus, train_args, write_untrained_model

VIDEO_MODEL = ["--vision-encoder", "resnet", "--resnet-width", "8"]
AV_MODEL = ["--vision-encoder", "resnet", "--audio-encoder", "resnet1d", "--resnet-width", "8"]


@pytest.fixture
def corpus(toy_corpus, tmp_path):
    return BadCorpus(toy_corpus, str(tmp_path / "root"))


@pytest.fixture
def model(corpus, tmp_path):
    return write_untrained_model(corpus, str(tmp_path / "model_avg_1.pth"))


def run_train(capsys, corpus, tmp_path, train_file, *extra, model=AUDIO_MODEL, workers=0):
    code = train_cli.main(train_args(corpus, str(tmp_path / "exp"), train_file, *extra, model=model, workers=workers))
    out, err = capsys.readouterr()
    return code, out, err


def run_eval(capsys, corpus, model, test_file, *extra):
    code = eval_cli.main(["--root-dir", corpus.root, "--test-file", test_file, "--pretrained-model-path", model,
                          "--beam-size", "1", "--num-workers", "0", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err):
    """The last stderr line, which must be the one ``error:`` line; no traceback anywhere."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def assert_nothing_written(tmp_path):
    assert not os.path.exists(tmp_path / "exp" / "run" / "model_avg_1.pth")


# --- pre-flight: data problems stop train.py before any work, all at once -----------------

def test_missing_wav(capsys, corpus, tmp_path):
    line = corpus.copy_clip(corpus.lines["train"][0], "nowav")
    os.remove(corpus.media("nowav", ".wav"))
    train = corpus.write("t.csv", corpus.lines["train"][1:4] + [line])
    code, _, err = run_train(capsys, corpus, tmp_path, train)
    assert code == 2
    assert f"{corpus.label_path('t.csv')}:4: audio file not found: {corpus.media('nowav', '.wav')}" in err
    assert "1 problem(s) found before starting" in error_line(err) and "--skip-invalid" in err
    assert_nothing_written(tmp_path)


def test_audio_twice_as_long_as_the_video(capsys, corpus, tmp_path):
    from datamodule.media import load_audio, write_wav

    line = corpus.copy_clip(corpus.lines["train"][0], "long")
    wav = corpus.media("long", ".wav")
    audio = load_audio(wav)[:, 0]
    write_wav(wav, torch.cat([audio, audio]))
    train = corpus.write("t.csv", [line] + corpus.lines["train"][1:3])
    code, _, err = run_train(capsys, corpus, tmp_path, train, model=AV_MODEL)
    assert code == 2
    seconds = audio.numel() / 16000
    assert (f"t.csv:1: {wav}: audio lasts {2 * seconds:.3f} s but the video {seconds:.3f} s" in err
            and "they differ by more than 0.1 s" in err)
    error_line(err)


def test_utterance_longer_than_max_frames(capsys, corpus, tmp_path):
    first = corpus.lines["train"][0]
    length = int(first.split(",")[2])
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--max-frames", str(length - 1))
    assert code == 2
    assert f"train.csv:1: input_length {length} frames is more than --max-frames {length - 1}" in err
    error_line(err)


def test_empty_and_header_only_csv(capsys, corpus, tmp_path):
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("empty.csv", []))
    assert code == 2
    assert error_line(err) == f"error: {corpus.label_path('empty.csv')}: the label list is empty"
    header = corpus.write("header.csv", ["dataset,rel_path,input_length,token_ids"])
    code, _, err = run_train(capsys, corpus, tmp_path, header)
    assert code == 2
    assert f"header.csv:1: input_length must be an integer, got 'input_length'" in err
    error_line(err)


def test_every_problem_is_listed_at_once(capsys, corpus, tmp_path):
    lines = corpus.lines["train"]
    many = [lines[0], lines[1].replace(",", ";"), "toy,spk00/none.mp4,40,3 4,X", lines[2]]
    many += [f"toy,spk00/missing{i}.mp4,40,3 4,X" for i in range(25)]
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("m.csv", many))
    assert code == 2
    path = corpus.label_path("m.csv")
    assert f"{path}:2: expected 'dataset,rel_path,input_length,token_ids[,transcript]', got 1 field(s)" in err
    assert f"{path}:3: audio file not found: {os.path.join(corpus.root, 'toy', 'spk00', 'none.wav')}" in err
    assert f"{path}:1:" not in err and f"{path}:4:" not in err
    listed = [line for line in err.splitlines() if line.startswith(f"{path}:")]
    assert len(listed) == 20 and f"... and 7 more problem(s) in {path}" in err
    assert error_line(err) == (f"error: {path}: 27 problem(s) found before starting (listed above); fix them, "
                               f"or pass --skip-invalid to leave the invalid lines out")


def test_transcript_column_must_be_consistent(capsys, corpus, tmp_path):
    lines = corpus.lines["train"]
    without = lines[1].rsplit(",", 1)[0]
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("c.csv", [lines[0], without, lines[2]]))
    assert code == 2
    assert "c.csv:2: no transcript column, but line 1 has one" in err
    error_line(err)


def test_token_id_beyond_the_vocabulary_in_training(capsys, corpus, tmp_path):
    odim = corpus.odim()
    lines = corpus.lines["train"][:3]
    lines[1] = corpus.with_token(lines[1], odim)
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("tok.csv", lines))
    assert code == 2
    assert f"tok.csv:2: token id {odim} is outside the tokenizer's units 1..{odim - 2}" in err
    error_line(err)


def test_truncated_mp4(capsys, corpus, tmp_path):
    line = corpus.copy_clip(corpus.lines["train"][0], "cut")
    mp4 = corpus.media("cut", ".mp4")
    with open(mp4, "r+b") as handle:
        handle.truncate(os.path.getsize(mp4) // 2)
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("v.csv", [line] + corpus.lines["train"][1:3]),
                             model=VIDEO_MODEL)
    assert code == 2
    assert f"v.csv:1: {mp4}: cannot read the video (Invalid data found when processing input" in err
    assert "InvalidDataError" not in err
    error_line(err)


def test_wrong_frame_rate_size_and_length(capsys, corpus, tmp_path):
    from datamodule.media import write_video

    lines = corpus.lines["train"]
    fast = corpus.copy_clip(lines[0], "fps30")
    write_video(corpus.media("fps30", ".mp4"), torch.zeros(int(lines[0].split(",")[2]), 96, 96, dtype=torch.uint8), fps=30)
    small = corpus.copy_clip(lines[1], "small")
    write_video(corpus.media("small", ".mp4"), torch.zeros(int(lines[1].split(",")[2]), 64, 64, dtype=torch.uint8))
    dataset, rel, length, rest = lines[2].split(",", 3)
    wrong_length = ",".join([dataset, rel, str(int(length) + 10), rest])
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("f.csv", [fast, small, wrong_length]),
                             model=VIDEO_MODEL)
    assert code == 2
    assert f"f.csv:1: {corpus.media('fps30', '.mp4')}: 30 fps, but the models read 25 fps video" in err
    assert f"f.csv:2: {corpus.media('small', '.mp4')}: 64x64 pixels, smaller than the 88x88 crop" in err
    assert f"f.csv:3: input_length is {int(length) + 10} but the video has {length} frames" in err
    assert "3 problem(s)" in error_line(err)


def test_validation_list_is_checked_too(capsys, corpus, tmp_path):
    val = corpus.write("v.csv", corpus.lines["val"] + ["toy,spk04/none.mp4,30,3 4,X"])
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--val-file", val)
    assert code == 2
    assert f"{corpus.label_path('v.csv')}:{len(corpus.lines['val']) + 1}: audio file not found" in err
    error_line(err)


def test_skip_invalid_leaves_out_the_listed_lines(capsys, corpus, tmp_path):
    lines = corpus.lines["train"][:5] + ["toy,spk00/none.mp4,40,3 4,X", "only,three,fields"]
    code, out, err = run_train(capsys, corpus, tmp_path, corpus.write("s.csv", lines), "--skip-invalid")
    assert code == 0, err
    assert "left out 2 of 7 line(s) (--skip-invalid)" in out
    assert "s.csv:6: audio file not found" in out and "s.csv:7: expected 'dataset,rel_path" in out
    assert os.path.isfile(tmp_path / "exp" / "run" / "model_avg_1.pth")
    everything_bad = corpus.write("b.csv", ["toy,spk00/none.mp4,40,3 4,X"])
    code, _, err = run_train(capsys, corpus, tmp_path, everything_bad, "--skip-invalid")
    assert code == 2
    assert error_line(err) == f"error: {corpus.label_path('b.csv')}: no valid line is left after leaving out " \
                              f"the invalid ones"


# --- faults during training ------------------------------------------------------------------

def test_nan_loss_stops_training_and_writes_no_average(capsys, corpus, tmp_path):
    train = corpus.write("n.csv", corpus.lines["train"][:6])
    code, _, err = run_train(capsys, corpus, tmp_path, train, "--lr", "1e6")
    assert code == 1
    line = error_line(err)
    assert "epoch 0, step " in line and "non-finite loss" in line and "--skip-nonfinite" in line
    assert any(os.path.join("toy", rel) in line for rel in (row.split(",")[1] for row in corpus.lines["train"][:6]))
    assert not [f for f in os.listdir(tmp_path / "exp" / "run") if f.startswith("model_avg")]


def test_skip_nonfinite_counts_the_skipped_batches(capsys, corpus, tmp_path):
    from espnet.training.checkpoints import load_checkpoint

    train = corpus.write("n.csv", corpus.lines["train"][:6])
    code, out, err = run_train(capsys, corpus, tmp_path, train, "--lr", "1e6", "--skip-nonfinite")
    assert code == 0, err
    skipped = [line for line in out.splitlines() if line.startswith("note: skipped ")]
    assert len(skipped) == 1 and "batch(es) with a non-finite loss or gradient norm" in skipped[0]
    state, _, _ = load_checkpoint(str(tmp_path / "exp" / "run" / "model_avg_1.pth"))
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_error_in_a_dataloader_worker_reads_as_the_original(capsys, corpus, tmp_path, monkeypatch):
    import datamodule.av_dataset

    def broken(path):
        raise ValueError(f"{path}: simulated decoder failure")

    monkeypatch.setattr(datamodule.av_dataset, "load_audio", broken)  # the forked worker inherits it
    train = corpus.write("w.csv", corpus.lines["train"][:4])
    # no media cache: the clips are then decoded in the worker, not before it starts
    code, _, err = run_train(capsys, corpus, tmp_path, train, "--media-cache-gb", "0", workers=1)
    assert code == 2
    line = error_line(err)
    assert line.startswith("error: ") and ": simulated decoder failure (raised in a DataLoader worker)" in line
    assert "Original Traceback" not in err and "Caught ValueError" not in err


def test_debug_shows_the_traceback(capsys, corpus, tmp_path):
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("e.csv", []), "--debug")
    assert code == 2
    assert "Traceback (most recent call last)" in err and err.strip().endswith("the label list is empty")


def test_gpu_flags_without_a_gpu(capsys, corpus, tmp_path):
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--precision", "16-mixed", "--accelerator", "cpu")
    assert code == 2
    assert error_line(err) == "error: --precision 16-mixed needs a GPU (none found); use bf16-mixed on CPU"
    if not torch.cuda.is_available():
        code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--accelerator", "gpu")
        assert code == 2
        assert error_line(err) == "error: --accelerator gpu requested but no CUDA device is available"


# --- checkpoints -----------------------------------------------------------------------------

class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unsafe_checkpoint_is_refused_without_pytorch_advice(capsys, corpus, tmp_path):
    evil = str(tmp_path / "evil.ckpt")
    torch.save({"state_dict": {}, "payload": Evil()}, evil)
    code, _, err = run_eval(capsys, corpus, evil, "test.csv")
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"error: {evil}: not a safe checkpoint: it holds Python objects")
    assert "weights_only=False" not in err and "posix.system" in line
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", evil)
    assert code == 2
    assert error_line(err).startswith(f"error: --ckpt-path {evil}: not a safe checkpoint")
    assert "weights_only" not in err


def test_missing_and_unreadable_checkpoints(capsys, corpus, tmp_path):
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", str(tmp_path / "none.ckpt"))
    assert code == 2 and error_line(err) == f"error: --ckpt-path: checkpoint not found: {tmp_path / 'none.ckpt'}"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    code, _, err = run_eval(capsys, corpus, str(junk), "test.csv")
    assert code == 2 and error_line(err).startswith(f"error: {junk}: not a readable PyTorch checkpoint")


# --- eval.py ---------------------------------------------------------------------------------

def test_bad_omp_num_threads(capsys, corpus, model, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "all")
    code, _, err = run_eval(capsys, corpus, model, "test.csv")
    assert code == 2
    assert error_line(err) == "error: environment variable OMP_NUM_THREADS='all' is not a positive number of threads"


def test_eval_token_id_beyond_the_vocabulary(capsys, corpus, model):
    odim = corpus.odim()
    lines = list(corpus.lines["test"])
    lines[0] = corpus.with_token(lines[0], odim + 5)
    code, _, err = run_eval(capsys, corpus, model, corpus.write("t.csv", lines))
    assert code == 2
    assert f"t.csv:1: token id {odim + 5} is outside the tokenizer's units" in err
    error_line(err)


def test_eval_missing_media_and_skip_invalid(capsys, corpus, model, tmp_path):
    lines = corpus.lines["test"] + ["toy,spk05/none.mp4,40,3 4,X"]
    test_file = corpus.write("t.csv", lines)
    code, _, err = run_eval(capsys, corpus, model, test_file)
    assert code == 2
    assert f"t.csv:{len(lines)}: audio file not found: {os.path.join(corpus.root, 'toy', 'spk05', 'none.wav')}" in err
    error_line(err)
    out_json = str(tmp_path / "r.json")
    code, out, err = run_eval(capsys, corpus, model, test_file, "--skip-invalid", "--output-json", out_json)
    assert code == 0, err
    assert f"left out 1 of {len(lines)} line(s)" in out
    assert f"decoded {len(lines) - 1} utterances" in out


def test_eval_unknown_files(capsys, corpus, model, tmp_path):
    code, _, err = run_eval(capsys, corpus, model, str(tmp_path / "none.csv"))
    assert code == 2 and error_line(err) == f"error: label list not found: {tmp_path / 'none.csv'}"
    code, _, err = run_eval(capsys, corpus, model, "test.csv", "--sp-model-path", str(tmp_path / "x.model"))
    assert code == 2 and error_line(err) == f"error: --sp-model-path: file not found: {tmp_path / 'x.model'}"


# --- prepare_dataset -------------------------------------------------------------------------

def test_prepare_dataset_one_line_and_debug(capsys, tmp_path):
    from preparation.prepare_dataset import main

    args = ["--input-dir", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")
    assert str(tmp_path / "nope") in err
    assert main(args + ["--debug"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


# --- the error helper itself -----------------------------------------------------------------

class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, idx):
        raise ValueError(f"item {idx}: broken\nsecond line")


def test_worker_traceback_is_unwrapped_from_a_real_dataloader():
    from espnet.training.cli_errors import describe, unwrap_worker_message

    loader = torch.utils.data.DataLoader(_Failing(), batch_size=None, num_workers=1)
    with pytest.raises(ValueError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)
    assert unwrap_worker_message(str(info.value)) == ("ValueError", "item 0: broken\nsecond line")
    lines, code = describe(info.value)
    assert code == 2 and lines == ["error: item 0: broken\nsecond line (raised in a DataLoader worker)"]
    assert unwrap_worker_message("plain message") is None


def test_unexpected_errors_are_one_line_with_status_1():
    from espnet.training.cli_errors import describe, run_cli

    lines, code = describe(RuntimeError("CUDA out of memory.\nTried to allocate ..."))
    assert code == 1 and lines == ["error: RuntimeError: CUDA out of memory. (run with --debug for the traceback)"]
    lines, code = describe(FileNotFoundError(2, "No such file or directory", "/x/y.txt"))
    assert code == 2 and lines == ["error: /x/y.txt: No such file or directory"]
    assert describe(pickle.UnpicklingError("x"))[1] == 1

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
