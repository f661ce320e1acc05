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
    """train.py/eval.py called in-process set torch's intra-op threads (``--num-threads``, auto
    by load); the next test gets the process default back, so numerics do not depend on order."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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
