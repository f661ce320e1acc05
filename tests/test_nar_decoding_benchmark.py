"""benchmarks/nar_decoding.py: ``--paraformer-sampling-ratio`` is checked against the
Paraformer's own bounds, and ``--nar-counts`` against the known counts, before any corpus is
generated or model trained; ``--dry-run`` shows where each model starts."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "nar_decoding.py")


def test_refuses_a_sampling_ratio_outside_the_decoders_bounds(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    for value, message in (("2", "sampling_ratio must be <= 1, got 2.0"),
                           ("-0.1", "sampling_ratio must be >= 0, got -0.1"),
                           ("nan", "sampling_ratio must be a finite number, got nan")):
        proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--paraformer-sampling-ratio",
                               value], capture_output=True, text=True, env=env, timeout=120)  # a hang fails
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines()[-1] == f"nar_decoding.py: error: --paraformer-sampling-ratio: {message}"
        assert proc.stdout == ""
    assert not (tmp_path / "o").exists()  # nothing generated


def test_refuses_an_unknown_nar_count(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--nar-counts", "cif,length"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1"),
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("nar_decoding.py: error: --nar-counts: a comma-separated subset of cif, "
                                            "ctc, both, got 'cif,length'")
    assert not (tmp_path / "o").exists()  # nothing generated


def test_refuses_no_speed_rounds(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--speed-rounds", "0"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1"),
                          timeout=120)  # a hang fails
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("nar_decoding.py: error: --speed-rounds 0: at least 1 (each round times "
                                            "every row once)")
    assert not (tmp_path / "o").exists()  # nothing generated


def test_help_names_the_flag():
    proc = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "--paraformer-sampling-ratio PARAFORMER_SAMPLING_RATIO The Paraformer's --paraformer-sampling-ratio " \
           "(glancing sampler share; 0 = none)" in text
    assert "--split {test,val} The held-out split decoded: test, or val" in text


def test_refuses_a_split_it_must_not_score(tmp_path):
    """Only the held-out splits: scoring the training split would flatter every model."""
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--split", "train"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1"),
                          timeout=120)  # a hang fails
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "nar_decoding.py: error: argument --split: invalid choice: 'train'")
    assert not (tmp_path / "o").exists()  # nothing generated


def dry_run(tmp_path, *flags):
    """The ``train.py`` commands ``--dry-run`` prints, as ``{run name: argv}``."""
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--dry-run", *flags],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr
    commands = {}
    for line in proc.stdout.splitlines():
        argv = line.split()
        commands[argv[argv.index("--exp-name") + 1]] = argv
    assert not (tmp_path / "o").exists()  # nothing generated or trained
    return commands


def flag_values(argv, flag):
    """The values after ``flag`` up to the next flag."""
    i = argv.index(flag) + 1
    values = []
    while i < len(argv) and not argv[i].startswith("--"):
        values.append(argv[i])
        i += 1
    return values


def test_dry_run_shows_where_each_paraformer_starts(tmp_path):
    avg = str(tmp_path / "o" / "{}" / "model_avg_5.pth")
    own = dry_run(tmp_path)
    assert sorted(own) == ["audio_paraformer", "audio_transformer", "audiovisual_paraformer",
                           "audiovisual_transformer", "video_paraformer", "video_transformer"]
    assert flag_values(own["video_paraformer"], "--pretrained-model-path") == [avg.format("audio_paraformer")]
    assert "--transfer-backend" in own["video_paraformer"] and "--freeze-param" not in own["audio_paraformer"]

    frozen = dry_run(tmp_path, "--paraformer-encoder", "ar-frozen", "--paraformer-sampling-ratio", "0")
    assert sorted(frozen) == ["audio_paraformer_sampling0_frozenar", "audio_transformer",
                              "audiovisual_paraformer_sampling0_frozenar", "audiovisual_transformer",
                              "video_paraformer_sampling0_frozenar", "video_transformer"]
    for modality, parts in (("audio", ["frontend", "proj_encoder", "encoder"]),
                            ("audiovisual", ["vision_frontend", "audio_frontend", "fusion", "encoder"])):
        argv = frozen[f"{modality}_paraformer_sampling0_frozenar"]
        assert flag_values(argv, "--pretrained-model-path") == [avg.format(f"{modality}_transformer")]
        assert "--transfer-encoder" in argv and flag_values(argv, "--freeze-param") == parts
        assert flag_values(argv, "--max-epochs") == [{"audio": "30", "audiovisual": "6"}[modality]]

    ar = dry_run(tmp_path, "--paraformer-encoder", "ar", "--modalities", "video")
    assert sorted(ar) == ["audio_transformer", "video_paraformer_initar", "video_transformer",
                          "video_transformer_initar"]
    for run in ("video_paraformer_initar", "video_transformer_initar"):  # both from the first video model's encoder
        assert flag_values(ar[run], "--pretrained-model-path") == [avg.format("video_transformer")]
        assert "--transfer-encoder" in ar[run] and "--freeze-param" not in ar[run]


def test_dry_run_with_an_auxiliary_ar_decoder(tmp_path):
    """--paraformer-ar-dlayers N (and --paraformer-detach-encoder, --paraformer-live-predictor): the
    Paraformers train with that many auxiliary decoder blocks (on the detached encoder output,
    its predictor on the live one), in their own run folders."""
    runs = dry_run(tmp_path, "--paraformer-ar-dlayers", "2", "--modalities", "audio")
    assert sorted(runs) == ["audio_paraformer_ar2", "audio_transformer"]
    assert flag_values(runs["audio_paraformer_ar2"], "--paraformer-ar-dlayers") == ["2"]
    assert "--paraformer-ar-dlayers" not in runs["audio_transformer"]
    detached = dry_run(tmp_path, "--paraformer-ar-dlayers", "1", "--paraformer-detach-encoder", "--modalities", "audio")
    assert sorted(detached) == ["audio_paraformer_ar1_detached", "audio_transformer"]
    assert "--paraformer-detach-encoder" in detached["audio_paraformer_ar1_detached"]
    live = dry_run(tmp_path, "--paraformer-ar-dlayers", "1", "--paraformer-detach-encoder",
                   "--paraformer-live-predictor", "--modalities", "audio")
    assert sorted(live) == ["audio_paraformer_ar1_detached_live", "audio_transformer"]
    assert {"--paraformer-detach-encoder", "--paraformer-live-predictor"} <= set(live["audio_paraformer_ar1_detached_live"])


def test_refuses_a_device_it_cannot_decode_on(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    for device, message in (("cuda:99", "--device cuda:99: not a CUDA device of this machine ("),
                            ("mps", "--device mps: not a CUDA device of this machine ("),
                            ("gpu", "--device gpu: Expected one of")):
        proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), "--device", device],
                              capture_output=True, text=True, env=env, timeout=120)  # a hang fails
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(f"nar_decoding.py: error: {message}"), proc.stderr
    assert not (tmp_path / "o").exists()  # nothing generated


@pytest.mark.parametrize("flags,message", [
    (["--nar-ar-top", "3"], "--nar-ar-top 3: limits the hypotheses the auxiliary AR decoder scores: it needs "
                            "--paraformer-ar-dlayers"),
    (["--nar-ar-top", "-1", "--paraformer-ar-dlayers", "1"], "--nar-ar-top must be >= 0, got -1"),
    (["--nar-ctc-fusion", "-1"], "--nar-ctc-fusion must be a finite number >= 0, got -1"),
    (["--nar-ctc-fusion", "1", "--nar-counts", "cif"],
     "--nar-ctc-fusion 1: fuses the tokens of the rows at the CTC head's count; --nar-counts cif has none"),
    (["--nar-scorers", "paraformer,lm"],
     "--nar-scorers: a comma-separated subset of paraformer, ar, both, got 'paraformer,lm'"),
    (["--nar-scorers", "paraformer,both"],
     "--nar-scorers paraformer,both: ar and both score with the auxiliary AR decoder: they need "
     "--paraformer-ar-dlayers")])
def test_refuses_decoding_flags_it_cannot_use(tmp_path, flags, message):
    """--nar-ar-top without the auxiliary decoder or below 0, --nar-ctc-fusion below 0 or
    without a row at the CTC head's count, --nar-scorers unknown or needing the auxiliary
    decoder: one line, before anything is generated."""
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "o"), *flags], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1"),
                          timeout=120)  # a hang fails
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"nar_decoding.py: error: {message}"
    assert not (tmp_path / "o").exists()  # nothing generated
