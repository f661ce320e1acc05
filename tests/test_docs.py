"""The documentation stays true to the code: docs/components.md lists every registered
component and equals what its generator writes now; the README stays short; every relative
link in README.md and docs/*.md points at a file (and heading) that exists."""

import glob
import os
import re
from typing import List

import pytest

from conftest import REPO
from espnet.nets.pytorch_backend import component_docs
from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY, Registry

COMPONENTS_MD = os.path.join(REPO, "docs", "components.md")
README_MAX_LINES = 250


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- docs/components.md ---------------------------------------------------------------------

def test_every_registered_component_has_an_entry():
    text = read(COMPONENTS_MD)
    missing = [f"{registry.flag} {name}" for registry in MODEL_REGISTRY.values()
               for name in component_docs.registered_names(registry)
               if component_docs.entry_heading(registry, name) not in text.splitlines()]
    assert not missing, (f"docs/components.md has no entry for {', '.join(missing)}; regenerate it with: "
                         f"{component_docs.REGENERATE}")


def test_components_doc_is_up_to_date():
    current = read(COMPONENTS_MD)
    expected = component_docs.render_file(current)
    if current != expected:
        first = next(i for i, (a, b) in enumerate(zip(current.splitlines() + [""], expected.splitlines() + [""]))
                     if a != b)
        pytest.fail(f"docs/components.md is out of date (first difference at line {first + 1}); regenerate it "
                    f"with: {component_docs.REGENERATE}")


class _FakeEncoder:
    """A fake encoder for the generator test.

    More text that is not the summary."""

    options = (Option("depth", 3, "Blocks | layers of the {family} encoder.", minimum=1),
               Option("mode", "fast", "How it runs.", choices=("fast", "slow"), flag="--{family}-mode",
                      aliases=(("--slow", "slow"),)),
               Option("model_name", None, "Pretrained model.", type=str, flag="--{family}-model-name"))
    frame_rate = 50.0
    default_model_name = "org/fake-model"


class _Bare:
    """Args:
        nothing: The class docstring says nothing about what it is."""


def _fake_registries():
    fake = Registry("fake encoder", "--fake-encoder", "fake", "fake_encoder")
    fake.add("first", f"{__name__}:_FakeEncoder")
    fake.add("bare", f"{__name__}:_Bare")
    fake.alias("one", "first")
    fake.add("later", None, planned="issue 99")
    return {"vision_encoder": MODEL_REGISTRY["vision_encoder"], "fake_encoder": fake}


def test_generator_lists_every_family_component_and_option():
    text = component_docs.render_reference(_fake_registries())
    lines = text.splitlines()
    assert lines[0].startswith(component_docs.BEGIN_PREFIX) and lines[-1] == component_docs.END
    # families in registry order, each with its components (registration order, planned ones too)
    headings = [line for line in lines if line.startswith("#")]
    assert headings.index("## Vision encoders (`--vision-encoder`)") < headings.index(
        "## Fake encoders (`--fake-encoder`)")
    fake_entries = [h for h in headings if h.startswith("### `--fake-encoder")]
    assert fake_entries == ["### `--fake-encoder first`", "### `--fake-encoder bare`", "### `--fake-encoder later`"]
    assert "| fake encoder | `--fake-encoder` | `fake_encoder_conf` | `first`, `bare`, `later`, `one` |" in lines
    # one row per option: flag, type, default, help ({family} filled in, | escaped); the alias flag too
    assert "| `--first-depth` | int, ≥ 1 | `3` | Blocks \\| layers of the fake encoder. |" in lines
    assert "| `--fake-mode` | str: `fast` \\| `slow` | `fast` | How it runs. |" in lines
    assert "| `--slow` | switch | off | Same as `--fake-mode slow`. |" in lines
    assert "| `--fake-model-name` | str | `org/fake-model` | Pretrained model. |" in lines
    assert ("Class `test_docs:_FakeEncoder`; declared output rate 50 Hz; default pretrained model "
            "`org/fake-model`; also chosen as `--fake-encoder one`.") in lines
    assert "A fake encoder for the generator test." in lines
    # a docstring that starts with a section header falls back to the module's first paragraph
    bare = lines.index("### `--fake-encoder bare`")
    assert lines[bare + 2] == ("The documentation stays true to the code: docs/components.md lists every "
                               "registered component and equals what its generator writes now; the README "
                               "stays short; every relative link in README.md and docs/*.md points at a file "
                               "(and heading) that exists.")
    assert "No options of its own." in lines[bare:bare + 8]
    later = lines.index("### `--fake-encoder later`")
    assert lines[later + 2].startswith("Planned, not available yet (issue 99)")
    # the index of flags names every component that declares each
    assert "| `--fake-mode` | `--fake-encoder first` |" in lines
    assert "| `--resnet-width` | `--vision-encoder resnet` |" in lines


def test_generator_keeps_the_hand_written_text_and_check_reports_stale(tmp_path, capsys):
    path = tmp_path / "components.md"
    path.write_text("# Title\n\nBy hand.\n\n<!-- BEGIN GENERATED -->\nold table\n<!-- END GENERATED -->\n\nAfter.\n")
    assert component_docs.main(["--path", str(path), "--check"]) == 1
    assert f"out of date; regenerate it with: {component_docs.REGENERATE}" in capsys.readouterr().err
    assert "old table" in path.read_text()  # --check changes nothing
    assert component_docs.main(["--path", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("# Title\n\nBy hand.\n\n" + component_docs.BEGIN + "\n")
    assert text.endswith(component_docs.END + "\n\nAfter.\n") and "old table" not in text
    assert text == component_docs.render_file(text)
    assert component_docs.main(["--path", str(path), "--check"]) == 0
    assert not os.path.exists(f"{path}.partial")


def test_generator_refuses_a_file_without_markers(tmp_path, capsys):
    path = tmp_path / "components.md"
    path.write_text("# Title\n\nno block\n")
    assert component_docs.main(["--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: no generated block") and "<!-- END GENERATED -->" in err
    assert path.read_text() == "# Title\n\nno block\n"
