"""Shared fixtures: the legacy fixtures in ../shared (skipped when absent) and a tiny
generated audio-visual corpus."""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

LEGACY = os.path.join(os.path.dirname(REPO), "shared", "legacy")

TINY_ENCODER_DIMS = ["--adim", "32", "--aheads", "2", "--eunits", "64", "--elayers", "1"]
TINY_DIMS = TINY_ENCODER_DIMS + ["--dunits", "64", "--dlayers", "1"]  # + the Transformer decoder's size options


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """No Hugging Face Hub access in any test: every model loads from a local directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """train.py/eval.py called in-process set torch's intra-op threads (``--num-threads``, by
    default all cores); the next test gets the process default back, so numerics do not depend
    on order."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def cpu_without_native_bf16(tmp_path_factory):
    """``--precision auto`` (the default of train.py and eval.py) picks bf16-mixed on a CPU with
    avx512_bf16 or amx_bf16 and float32 elsewhere. The tests compare numbers (resumed vs
    uninterrupted runs, batched vs single decoding, legacy outputs) that must not depend on the
    machine, so in-process runs here see a CPU without those flags: auto resolves to 32
    everywhere. Tests of auto's choice give the flags themselves (tests/test_precision.py);
    train.py started as a subprocess gets ``--precision 32`` from ``bad_corpus.train_args``."""
    from espnet.training import precision

    cpuinfo = tmp_path_factory.mktemp("cpuinfo") / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(precision, "CPUINFO", str(cpuinfo))
        yield


@pytest.fixture(scope="session")
def legacy_dir():
    if not os.path.isfile(os.path.join(LEGACY, "tiny_config.json")):
        pytest.skip("../shared/legacy fixtures are not available")
    return LEGACY


@pytest.fixture(scope="session")
def legacy_config(legacy_dir):
    with open(os.path.join(legacy_dir, "tiny_config.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def legacy_spm(legacy_dir):
    return (os.path.join(legacy_dir, "spm", "unigram5000.model"),
            os.path.join(legacy_dir, "spm", "unigram5000_units.txt"))


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    from preparation.toy_corpus import generate

    root = str(tmp_path_factory.mktemp("toy"))
    paths = generate(root, num_utts=18, num_speakers=6, seed=0, progress=False)
    paths["root"] = root
    return paths


def read_metrics(run_dir):
    """Rows of a run's CSV log (``RUN/logs/version_0/metrics.csv``) as dicts."""
    import csv

    with open(os.path.join(run_dir, "logs", "version_0", "metrics.csv")) as handle:
        return list(csv.DictReader(handle))
