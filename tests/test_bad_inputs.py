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
    text = corpus.text_of([3, 4])  # the transcript of these ids: only the missing media are wrong
    many = [lines[0], lines[1].replace(",", ";"), f"toy,spk00/none.mp4,40,3 4,{text}", lines[2]]
    many += [f"toy,spk00/missing{i}.mp4,40,3 4,{text}" for i in range(25)]
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
    # which of the two turns non-finite first depends on the random draws (e.g. dropout masks)
    assert "epoch 0, step " in line and "--skip-nonfinite" in line
    assert "non-finite loss" in line or "non-finite gradient norm" in line
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
    import datamodule.clip

    def broken(path):
        raise ValueError(f"{path}: simulated decoder failure")

    monkeypatch.setattr(datamodule.clip, "load_audio", broken)  # the forked worker inherits it
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
    assert code == 2 and error_line(err) == f"error: {junk}: not a PyTorch checkpoint (a text file?)"
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", str(junk))
    assert code == 2 and error_line(err) == f"error: --ckpt-path {junk}: not a PyTorch checkpoint (a text file?)"
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 4)
    code, _, err = run_eval(capsys, corpus, str(noise), "test.csv")
    assert code == 2 and error_line(err) == f"error: {noise}: not a PyTorch checkpoint (neither a zip archive nor a pickle)"
    torch.save({"w": torch.ones(3)}, str(tmp_path / "whole.pth"))
    cut = tmp_path / "cut.pth"
    cut.write_bytes((tmp_path / "whole.pth").read_bytes()[:200])
    code, _, err = run_eval(capsys, corpus, str(cut), "test.csv")
    assert code == 2 and error_line(err).startswith(f"error: {cut}: not a readable PyTorch checkpoint (damaged or "
                                                    f"truncated? torch.load failed with RuntimeError: ")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    code, _, err = run_eval(capsys, corpus, str(empty), "test.csv")
    assert code == 2 and error_line(err) == f"error: {empty}: not a PyTorch checkpoint (an empty file)"


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


# --- issue 26: inputs that were silent or unclear ----------------------------------------------

LOCK_HOLDER = ("import sys, time\n"
               "from espnet.training.run_lock import RunLock\n"
               "RunLock(sys.argv[1]).acquire()\n"
               "print('locked', flush=True)\n"
               "time.sleep(120)\n")


def test_run_directory_in_use_is_refused_and_freed_when_its_run_dies(capsys, corpus, tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    from datamodule.text_transform import TextTransform
    from espnet.training.checkpoints import load_checkpoint

    run_dir = str(tmp_path / "exp" / "run")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")}
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, run_dir],
                              stdout=subprocess.PIPE, text=True, env=dict(env, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = run_train(capsys, corpus, tmp_path, "train.csv")
        assert code == 2
        assert error_line(err) == (f"error: --exp-dir/--exp-name {run_dir}: the run directory is in use by another "
                                   f"training run (process {holder.pid} holds {run_dir}/.lock); wait for it to end, "
                                   f"or choose another --exp-name")
        assert "pre-flight" not in out  # refused before any work
    finally:
        holder.kill()  # a crashed run: the kernel drops its lock
        holder.wait()
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv")
    assert code == 0, err
    code, out, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", "last", "--max-epochs", "2")
    assert code == 0, err  # resuming the same run later
    # new checkpoints record which tokenizer they were trained with
    meta = load_checkpoint(os.path.join(run_dir, "model_avg_2.pth"))[2]
    tokenizer = TextTransform(corpus.toy["sp_model_path"], corpus.toy["dict_path"])
    assert meta["tokenizer_fingerprint"] == tokenizer.fingerprint and tokenizer.fingerprint.startswith("sha256:")


def test_run_lock_is_taken_by_rank_zero_only(tmp_path, monkeypatch):
    from espnet.training.run_lock import RunLock

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    run_dir = str(tmp_path / "run")
    with RunLock(run_dir) as first:
        assert first.held
        with open(os.path.join(run_dir, ".lock")) as handle:
            assert handle.read() == f"{os.getpid()}\n"
        with pytest.raises(ValueError, match=f"{run_dir}: the run directory is in use by another training run"):
            RunLock(run_dir).acquire()
        monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's DDP re-launch of rank 1
        assert not RunLock(run_dir).acquire().held
        monkeypatch.setenv("LOCAL_RANK", "0")
        monkeypatch.setenv("RANK", "2")  # torchrun, second machine
        assert not RunLock(run_dir).acquire().held
        monkeypatch.delenv("RANK")
    assert not first.held
    with RunLock(run_dir) as again:  # released at the end of the run
        assert again.held


def _lightning_checkpoint(corpus, path, modality):
    """A resumable-looking Lightning checkpoint of an untrained tiny ``modality`` model."""
    from espnet.training.checkpoints import load_checkpoint

    state = load_checkpoint(write_untrained_model(corpus, path + ".pth", modality))[0]
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "pytorch-lightning_version": "2.4.0",
                "optimizer_states": [], "epoch": 0, "global_step": 1}, path)
    return path


def test_ckpt_path_of_another_model_or_a_weights_only_model(capsys, corpus, tmp_path):
    video = _lightning_checkpoint(corpus, str(tmp_path / "video.ckpt"), "video")
    code, out, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", video)
    assert code == 2
    line = error_line(err)
    assert line.startswith(f"error: --ckpt-path {video} does not match ") and "missing key(s)" in line
    assert "unexpected key(s) ['vision_frontend." in line or "unexpected key(s) ['frontend" in line
    assert "RuntimeError" not in err and not os.path.exists(tmp_path / "exp" / "run" / "last.ckpt")
    averaged = write_untrained_model(corpus, str(tmp_path / "model_avg_3.pth"))
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", averaged)
    assert code == 2
    assert error_line(err) == (f"error: --ckpt-path {averaged}: a weights-only model, not a resumable Lightning "
                               f"checkpoint (it has no optimiser, schedule or epoch to resume); to start a new run "
                               f"from its weights use --pretrained-model-path {averaged}")
    assert "KeyError" not in err and "pytorch-lightning_version" not in err
    code, _, err = run_train(capsys, corpus, tmp_path, "train.csv", "--ckpt-path", averaged, "--debug")
    assert code == 2 and "Traceback" in err  # --debug still shows where


def test_max_epochs_zero_is_refused_by_the_parser(capsys, corpus, tmp_path):
    with pytest.raises(SystemExit) as info:
        train_cli.parse_args(train_args(corpus, str(tmp_path / "exp"), "train.csv", "--max-epochs", "0"))
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("error: --max-epochs must be >= 1, got 0")


def test_label_list_with_a_byte_order_mark(capsys, corpus, model, tmp_path):
    from datamodule.label_list import read_label_list

    path = corpus.label_path(corpus.write("bom.csv", corpus.lines["test"]))
    with open(path, "rb") as handle:
        body = handle.read()
    with open(path, "wb") as handle:
        handle.write(b"\xef\xbb\xbf" + body)
    assert read_label_list(path)[0].dataset == "toy"
    code, out, err = run_eval(capsys, corpus, model, "bom.csv")
    assert code == 0, err
    assert f"decoded {len(corpus.lines['test'])} utterances" in out


def test_transcript_that_disagrees_with_its_token_ids(capsys, corpus, tmp_path):
    lines = corpus.lines["train"][:4]
    first_text, second_text = lines[0].split(",", 4)[4], lines[1].split(",", 4)[4]
    assert first_text != second_text
    lines[1] = ",".join(lines[1].split(",", 4)[:4] + [first_text])
    lowered = lines[2].split(",", 4)
    lines[2] = ",".join(lowered[:4] + [" " + lowered[4].lower() + "  "])  # case and spaces are not a mismatch
    code, _, err = run_train(capsys, corpus, tmp_path, corpus.write("x.csv", lines))
    assert code == 2
    assert (f"{corpus.label_path('x.csv')}:2: the token ids do not spell the transcript: they read "
            f"{second_text!r}, the transcript is {first_text!r}") in err
    assert "x.csv:3" not in err and "1 problem(s) found before starting" in error_line(err)


def test_eval_refuses_another_tokenizer_of_the_same_size(capsys, corpus, model, tmp_path):
    import json
    import shutil

    from datamodule.text_transform import TextTransform

    sp, units = corpus.toy["sp_model_path"], corpus.toy["dict_path"]
    with open(units, encoding="utf8") as handle:
        pieces = [line.split()[0] for line in handle if line.strip()]
    swapped = pieces[-1:] + pieces[:-1]  # the same pieces, other ids
    other = tmp_path / "other_units.txt"
    other.write_text("".join(f"{p} {i}\n" for i, p in enumerate(swapped, 1)), encoding="utf8")
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--dict-path", str(other))
    assert code == 2
    assert error_line(err) == (f"error: --dict-path {other}: not the tokenizer {model} was trained with ({sp}, {units}; "
                               f"the pieces differ), so its token ids would decode to other words; leave the flag(s) "
                               f"out to use the checkpoint's tokenizer, or pass its files")
    assert "decoded" not in out
    same = tmp_path / "copy_units.txt"
    shutil.copy(units, same)
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--dict-path", str(same))
    assert code == 0, err
    # a checkpoint whose tokenizer files are gone is still known by its fingerprint
    sidecar = model[:-4] + ".json"
    with open(sidecar, encoding="utf8") as handle:
        meta = json.load(handle)
    meta.update(sp_model_path=str(tmp_path / "gone.model"), dict_path=str(tmp_path / "gone_units.txt"),
                tokenizer_fingerprint=TextTransform(sp, units).fingerprint)
    with open(sidecar, "w", encoding="utf8") as handle:
        json.dump(meta, handle)
    code, _, err = run_eval(capsys, corpus, model, "test.csv", "--sp-model-path", sp, "--dict-path", str(other))
    assert code == 2 and "not the tokenizer" in error_line(err)
    code, _, err = run_eval(capsys, corpus, model, "test.csv", "--sp-model-path", sp, "--dict-path", units)
    assert code == 0, err


def test_decode_snr_and_drop_stream_flags(capsys, corpus, model, tmp_path):
    from datamodule.media import write_wav

    silent = str(tmp_path / "silence.wav")
    write_wav(silent, torch.zeros(16000))
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--decode-snr-target", "-5", "--noise-file", silent)
    assert code == 2
    assert error_line(err).startswith(f"error: {silent}: the noise file has no energy (all 16000 samples are zero)")
    assert "decoded" not in out
    for extra, message in ((["--decode-snr-target", "nan"], "--decode-snr-target must be a finite number of dB, got nan"),
                           (["--decode-snr-target", "inf"], "--decode-snr-target must be a finite number of dB, got inf"),
                           (["--drop-stream", "audio", "--drop-stream", "video"],
                            "--drop-stream video and --drop-stream audio: dropping both streams leaves nothing to decode"),
                           (["--drop-stream", "audio", "--drop-stream", "audio"],
                            "--drop-stream audio is given 2 times; give it once")):
        with pytest.raises(SystemExit) as info:
            eval_cli.parse_args(["--root-dir", corpus.root, "--test-file", "test.csv", *extra])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")


def _strict_json(path):
    import json

    def refuse(constant):
        raise AssertionError(f"{path}: {constant} is not JSON")

    with open(path, encoding="utf8") as handle:
        return json.load(handle, parse_constant=refuse)


def test_eval_nan_samples_are_refused_or_left_out(capsys, corpus, model, tmp_path):
    from datamodule.media import load_audio

    from bad_corpus import write_float_wav

    line = corpus.copy_clip(corpus.lines["test"][0], "nan")
    wav = corpus.media("nan", ".wav")
    audio = load_audio(wav)[:, 0]
    audio[10:20] = float("nan")
    write_float_wav(wav, audio)
    test_file = corpus.write("n.csv", [line] + corpus.lines["test"][1:])
    out_json = str(tmp_path / "r.json")
    code, out, err = run_eval(capsys, corpus, model, test_file, "--output-json", out_json)
    assert code == 2
    assert error_line(err) == (f"error: {wav}: the audio holds NaN/inf values; fix or remove the file, or pass "
                               f"--skip-invalid to leave such utterances out of the decoding and the WER")
    assert not os.path.exists(out_json)
    code, out, err = run_eval(capsys, corpus, model, test_file, "--output-json", out_json, "--skip-invalid")
    assert code == 0, err
    n = len(corpus.lines["test"])
    assert f"decoded {n - 1} utterances" in out
    assert f"left out (--skip-invalid): {wav}: the audio holds NaN/inf values" in out
    result = _strict_json(out_json)
    assert result["num_utterances"] == n - 1 and len(result["utterances"]) == n - 1
    assert result["left_out"] == [{"path": corpus.media("nan", ".mp4"),
                                   "reason": f"{wav}: the audio holds NaN/inf values"}]
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def test_results_json_is_strict_json():
    import tempfile

    from espnet.asr.evaluate import EvalResult, write_json

    result = EvalResult(float("nan"), 1, 0, 0, 0.5, [{"path": "a", "score": float("-inf")}], audio_seconds=0.0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "sub", "r.json")
        write_json(result, path)
        data = _strict_json(path)
        assert os.listdir(os.path.dirname(path)) == ["r.json"]
    assert data["wer"] is None and data["real_time_factor"] is None and data["utterances"][0]["score"] is None
    assert data["decode_seconds"] == pytest.approx(0.5)


def test_output_json_that_cannot_be_written_is_refused_before_decoding(capsys, corpus, model, tmp_path, monkeypatch):
    regular = tmp_path / "file"
    regular.write_text("x")
    target = str(regular / "x.json")
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--output-json", target)
    assert code == 2
    assert error_line(err) == f"error: --output-json {target}: {regular} is a file, not a directory"
    assert "decoded" not in out
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--output-json", str(tmp_path))
    assert code == 2 and error_line(err) == f"error: --output-json {tmp_path}: is a directory; give a file name"
    import espnet.asr.evaluate

    def disk_full(result, path):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(espnet.asr.evaluate, "write_json", disk_full)
    code, out, err = run_eval(capsys, corpus, model, "test.csv", "--output-json", str(tmp_path / "r.json"))
    assert code == 1 and "No space left on device" in error_line(err)
    assert any(line.startswith("WER: ") for line in out.splitlines())  # the result is not lost


# --- prepare_dataset: nothing usable, tokenizer text, audio-only clips -----------------------

class _NoFaceIn:
    """A cropper that finds no face in clips whose path contains one of ``markers`` and
    resamples the others (in place of the MediaPipe cropper)."""

    def __init__(self, markers):
        from preparation.resample_clip import ResampleClip

        self.markers = markers
        self.inner = ResampleClip()

    def process_clip(self, video_path, video_out, audio_out=None):
        from preparation.mouth_crop import CropResult

        if any(m in video_path for m in self.markers):
            return CropResult("no_face", 0, 0, "no face in any frame")
        return self.inner.process_clip(video_path, video_out, audio_out)


def _raw_corpus(corpus, folder, texts):
    """A plain-layout corpus: ``c<i>.mp4`` + ``.wav`` (toy clips) and ``c<i>.txt`` = ``texts[i]``,
    plus an audio-only clip ``solo.wav`` + ``solo.txt``."""
    import shutil

    os.makedirs(folder)
    for i, (line, text) in enumerate(zip(corpus.lines["train"], texts)):
        src = os.path.join(corpus.toy["root"], "toy", line.split(",")[1])
        for ext in (".mp4", ".wav"):
            shutil.copy(src[:-4] + ext, os.path.join(folder, f"c{i}{ext}"))
        with open(os.path.join(folder, f"c{i}.txt"), "w", encoding="utf8") as handle:
            handle.write(text + "\n")
    shutil.copy(os.path.join(folder, "c0.wav"), os.path.join(folder, "solo.wav"))
    with open(os.path.join(folder, "solo.txt"), "w", encoding="utf8") as handle:
        handle.write("AUDIO ONLY\n")


def test_prepare_dataset_with_nothing_usable_is_an_error(capsys, corpus, tmp_path, monkeypatch):
    import preparation.prepare_dataset as prep

    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    _raw_corpus(corpus, src, ["SET SOON", "RED NOW"])
    monkeypatch.setattr(prep, "make_cropper", lambda already_cropped, crop_size: _NoFaceIn(["c0", "c1"]))
    code = prep.main(["--input-dir", src, "--out-dir", out, "--already-cropped", "--no-progress", "--vocab-size", "20"])
    err = capsys.readouterr().err
    assert code == 2
    assert error_line(err) == (f"error: --input-dir {src}: no clip could be prepared (2 no face, 1 audio only "
                               f"(no .mp4)); no label CSV and no tokenizer written")
    assert "  no face: c0.mp4: no face in any frame" in err and "  audio only (no .mp4; not prepared): solo.wav" in err
    assert not os.path.exists(os.path.join(out, "labels")) and not os.path.exists(os.path.join(out, "spm"))


def test_prepare_dataset_tokenizer_learns_only_the_kept_clips(capsys, corpus, tmp_path, monkeypatch):
    import preparation.prepare_dataset as prep

    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    _raw_corpus(corpus, src, ["SET SOON NOW", "RED NOW SET", "JAZZ QUIZ VEX"])
    monkeypatch.setattr(prep, "make_cropper", lambda already_cropped, crop_size: _NoFaceIn(["c2"]))
    code = prep.main(["--input-dir", src, "--out-dir", out, "--already-cropped", "--no-progress", "--vocab-size", "20",
                      "--dataset", "d"])
    report = capsys.readouterr().out
    assert code == 0
    assert "processed: 2   skipped (already done): 0   no face: 1   failed: 0   audio only (not prepared): 1" in report
    assert "  audio only (no .mp4; not prepared): solo.wav" in report
    with open(os.path.join(out, "spm", "d_unigram20_units.txt"), encoding="utf8") as handle:
        pieces = [line.split()[0] for line in handle]
    assert not [p for p in pieces if set(p) & set("JQZVX")], pieces  # letters only the skipped clip has
    from datamodule.label_list import read_label_list

    assert [u.rel_path for u in read_label_list(os.path.join(out, "labels", "d_train.csv"))] == ["c0.mp4", "c1.mp4"]
