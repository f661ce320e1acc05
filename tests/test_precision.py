"""``--precision auto``: bf16-mixed where the CPU (or GPU) computes bf16 natively, 32 elsewhere;
the choice is printed by train.py and eval.py and then acts as if given on the command line."""

import json
import os

import pytest
import torch

from espnet.training import precision
from espnet.training.precision import cpu_bf16_flag, read_cpu_flags, resolve_precision

ZEN4 = "fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni"
SAPPHIRE_RAPIDS = "fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
SKYLAKE = "fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni"


def test_the_cpu_flags_decide():
    assert cpu_bf16_flag(ZEN4) == "avx512_bf16"
    assert cpu_bf16_flag(SAPPHIRE_RAPIDS) == "amx_bf16"
    assert cpu_bf16_flag("flags\t\t: " + ZEN4) == "avx512_bf16"  # with the cpuinfo label
    assert cpu_bf16_flag(SKYLAKE) is None
    assert cpu_bf16_flag("avx512_bf16x avx512bf16") is None  # whole names only
    assert cpu_bf16_flag("") is None


def test_auto_resolves_per_device():
    assert resolve_precision("auto", "cpu", ZEN4) == ("bf16-mixed", "auto: the CPU has avx512_bf16")
    assert resolve_precision("auto", "cpu", SAPPHIRE_RAPIDS) == ("bf16-mixed", "auto: the CPU has amx_bf16")
    chosen, why = resolve_precision("auto", "cpu", SKYLAKE)
    assert chosen == "32" and why.startswith("auto: the CPU has neither avx512_bf16 nor amx_bf16")
    assert resolve_precision("auto", "mps", ZEN4)[0] == "32"
    for given in ("32", "bf16-mixed", "16-mixed", "bf16-true"):  # an explicit value is kept, whatever the CPU
        assert resolve_precision(given, "cpu", SKYLAKE) == (given, "--precision")
        assert resolve_precision(given, "cpu", ZEN4) == (given, "--precision")


def test_cpuinfo_is_read(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: {ZEN4}\n\nprocessor\t: 1\n"
                    f"flags\t\t: {ZEN4}\n")
    assert read_cpu_flags(str(path)) == ZEN4
    assert read_cpu_flags(str(tmp_path / "absent")) == ""  # no /proc/cpuinfo (macOS, Windows): no flags
    assert resolve_precision("auto", "cpu", read_cpu_flags(str(tmp_path / "absent")))[0] == "32"


@pytest.fixture
def cpu_flags(monkeypatch, tmp_path):
    """Let train.py/eval.py see a CPU with the given flags."""
    def use(flags):
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(precision, "CPUINFO", str(path))
    return use


def test_eval_prints_and_applies_the_choice(capsys, cpu_flags, toy_corpus, tmp_path):
    from bad_corpus import BadCorpus, write_untrained_model
    from espnet.asr import eval_cli

    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    model = write_untrained_model(corpus, str(tmp_path / "model_avg_1.pth"))
    results = {}
    for name, flags, extra in (("bf16", ZEN4, ["--precision", "auto"]),
                               ("fp32", SKYLAKE, ["--precision", "auto", "--num-threads", "idle"]),
                               ("given", ZEN4, ["--precision", "32"]), ("default", ZEN4, [])):
        cpu_flags(flags)
        out = str(tmp_path / f"{name}.json")
        code = eval_cli.main(["--root-dir", corpus.root, "--test-file", "test.csv", "--pretrained-model-path", model,
                              "--beam-size", "1", "--num-workers", "0", "--output-json", out, *extra])
        stdout = capsys.readouterr().out
        assert code == 0
        results[name] = (stdout, json.load(open(out)))
    assert "precision: bf16-mixed (auto: the CPU has avx512_bf16)" in results["bf16"][0]
    assert "precision: 32 (auto: the CPU has neither avx512_bf16 nor amx_bf16" in results["fp32"][0]
    assert "precision: 32 (--precision)" in results["given"][0]
    # the default decodes as the (float32-trained) model was trained, whatever the processor
    assert "precision: 32 (--precision checkpoint)" in results["default"][0]
    assert "(--num-threads idle: " in results["fp32"][0] and "CPU threads: " in results["given"][0]
    # the explicit 32 decodes as auto does on a CPU without bf16: the same hypotheses
    hyps = {name: [u["hypothesis"] for u in res["utterances"]] for name, (_, res) in results.items()}
    assert hyps["given"] == hyps["fp32"] == hyps["default"] and len(hyps["fp32"]) == len(corpus.lines["test"])


def test_train_resolves_auto_before_anything_reads_it(capsys, cpu_flags, toy_corpus, tmp_path):
    """auto on a bf16 CPU trains as --precision bf16-mixed does: Lightning's bf16 mixed precision,
    and the model config records bfloat16 (what eval.py --precision checkpoint then follows)."""
    from bad_corpus import BadCorpus, train_args
    from espnet.asr import eval_cli
    from espnet.training import train_cli

    corpus = BadCorpus(toy_corpus, str(tmp_path / "root"))
    cpu_flags(SAPPHIRE_RAPIDS)
    exp = str(tmp_path / "exp")
    train = corpus.write("few.csv", corpus.lines["train"][:4])
    code = train_cli.main(train_args(corpus, exp, train, "--precision", "auto", "--average-last", "1",
                                     "--num-threads", "1"))
    stdout = capsys.readouterr().out
    assert code == 0
    assert "precision: bf16-mixed (auto: the CPU has amx_bf16)" in stdout
    assert "CPU threads: 1 (--num-threads)" in stdout and torch.get_num_threads() == 1  # the flag is obeyed
    with open(os.path.join(exp, "run", "model_avg_1.json")) as handle:
        assert json.load(handle)["model_config"]["pretrained_dtype"] == "bfloat16"
    cpu_flags(SKYLAKE)  # eval.py on another machine: auto decodes in float32, checkpoint as trained
    for given, expected in (("auto", "precision: 32 (auto: the CPU has neither"),
                            ("checkpoint", "precision: bf16-mixed (--precision checkpoint)")):
        code = eval_cli.main(["--root-dir", corpus.root, "--test-file", "test.csv", "--pretrained-model-path",
                              os.path.join(exp, "run", "model_avg_1.pth"), "--beam-size", "1", "--num-workers", "0",
                              "--precision", given])
        assert code == 0 and expected in capsys.readouterr().out
