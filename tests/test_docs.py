"""The documentation stays true to the code: docs/components.md lists every registered
component and equals what its generator writes now; the README stays short; relative links
in README.md and docs/*.md point at files and headings that exist; commands run existing
scripts with flags they accept."""

import glob
import importlib.util
import os
import re
import shlex
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
                               "stays short; relative links in README.md and docs/*.md point at files and "
                               "headings that exist; commands run existing scripts with flags they accept.")
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


# ---- README and links -----------------------------------------------------------------------

README = os.path.join(REPO, "README.md")
DOCS = [README] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """Markdown without its code blocks and code spans (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def heading_anchors(text: str) -> List[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to
    hyphens; a repeated anchor gets -1, -2, ..."""
    anchors: List[str] = []
    for line in _FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            count = sum(1 for a in anchors if a == slug or re.fullmatch(re.escape(slug) + r"-\d+", a))
            anchors.append(f"{slug}-{count}" if count else slug)
    return anchors


def broken_links(path: str, root: str = REPO) -> List[str]:
    """``path``'s relative links (and images) whose file, or heading, does not exist, as
    ``FILE: target (why)``."""
    problems = []
    text = read(path)
    for target in _LINK.findall(_prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        name = f"{os.path.relpath(path, root)}: {target}"
        if os.path.relpath(where, root).startswith(".."):
            problems.append(f"{name} (outside the repository)")
        elif not os.path.exists(where):
            problems.append(f"{name} (no such file)")
        elif anchor and where.endswith(".md") and anchor not in heading_anchors(read(where)):
            problems.append(f"{name} (no heading #{anchor} in {os.path.relpath(where, root)})")
    return problems


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    lines = read(README).splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move details to docs/")
    assert lines[2:6] == [
        "```bash",
        "bash tutorials/quickstart.sh   # set up .venv, generate a small corpus, train + evaluate audio and video "
        "models on CPU, print WER",
        "bash tests/run.sh              # set up .venv and run the test suite",
        "```"]


@pytest.mark.parametrize("path", DOCS, ids=[os.path.relpath(p, REPO) for p in DOCS])
def test_relative_links_point_at_existing_files(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_link_check_finds_missing_files_headings_and_ignores_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Step 2: run `it`\n\n## Step 2: run `it`\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("# Page\n\n[ok](other.md) [ok](other.md#step-2-run-it) [ok](other.md#step-2-run-it-1) "
                    "![ok](../img.png) [ok](#page) [web](https://example.org/x.md)\n"
                    "[gone](missing.md) [no heading](other.md#step-3) ![gone](../img.jpg) [out](../../x.md)\n"
                    "`[code](nothing.md)`\n\n```\n[fenced](nothing.md)\n```\n")
    assert broken_links(str(page), root=str(tmp_path)) == [
        "docs/page.md: missing.md (no such file)",
        "docs/page.md: other.md#step-3 (no heading #step-3 in docs/other.md)",
        "docs/page.md: ../img.jpg (no such file)",
        "docs/page.md: ../../x.md (outside the repository)",
    ]


# ---- commands in README.md and docs/*.md ------------------------------------------------------

def shell_commands(text: str) -> List[str]:
    """The commands of a page's ``bash`` blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def _argv_after(command: str, script: str) -> List[str]:
    words = shlex.split(command, comments=True)
    return words[words.index(script) + 1:]


@pytest.mark.parametrize("path", DOCS, ids=[os.path.relpath(p, REPO) for p in DOCS])
def test_commands_name_existing_scripts_and_flags(path):
    """Every script or module a command runs exists, and every complete ``train.py`` /
    ``eval.py`` / ``transcribe.py`` / ``-m espnet.serve`` command line (no ``...``) parses with
    that program's own flags."""
    from espnet.asr import eval_cli, transcribe_cli
    from espnet.serve import cli as serve_cli
    from espnet.training import train_cli

    parsers = {"train.py": train_cli.parse_args, "eval.py": eval_cli.parse_args,
               "transcribe.py": transcribe_cli.parse_args, "espnet.serve": serve_cli.parse_args}
    problems = []
    for command in shell_commands(read(path)):
        words = shlex.split(command, comments=True)
        for program, word in zip(words, words[1:]):
            if program == "-m" and importlib.util.find_spec(word) is None:
                problems.append(f"{command}: no module {word}")
            elif program.endswith(("python", "bash")) and not word.startswith("-") \
                    and not os.path.isfile(os.path.join(REPO, word)):
                problems.append(f"{command}: no file {word}")
        for script, parse in parsers.items():
            if script in words and "..." not in words:
                try:
                    parse(_argv_after(command, script))
                except SystemExit as exit_:
                    problems.append(f"{command}: {script} refuses its flags (exit status {exit_.code})")
    assert not problems, "\n".join(problems)
