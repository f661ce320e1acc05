"""Reference of every registered component and its options, kept in ``docs/components.md``.

The reference is generated from the registries (:data:`MODEL_REGISTRY` in ``registry.py``:
every family it holds, in its order) and from the ``options`` each component class
declares (``component_options.py``), so it lists exactly the flags ``train.py`` and
``eval.py`` accept. It is written between two marker lines of ``docs/components.md``;
the hand-written text around them is kept. From the repository root::

    .venv/bin/python -m espnet.nets.pytorch_backend.component_docs           # rewrite the file
    .venv/bin/python -m espnet.nets.pytorch_backend.component_docs --check   # exit 1 if stale

``tests/test_docs.py`` fails when the file differs from what this module generates.
"""

import argparse
import inspect
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from espnet.nets.pytorch_backend.component_options import Option
from espnet.nets.pytorch_backend.registry import MODEL_REGISTRY, Registry

REGENERATE = "python -m espnet.nets.pytorch_backend.component_docs"
BEGIN_PREFIX = "<!-- BEGIN GENERATED"
BEGIN = f"{BEGIN_PREFIX} by `{REGENERATE}`: do not edit by hand -->"
END = "<!-- END GENERATED -->"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEFAULT_PATH = os.path.join(REPO_ROOT, "docs", "components.md")

_SKELETON_TITLE = "# Components\n\n"


def entry_heading(registry: Registry, name: str) -> str:
    """The heading line of component ``name``'s entry, e.g. ``### `--decoder llama```."""
    return f"### `{registry.flag} {name}`"


def registered_names(registry: Registry) -> List[str]:
    """Registered names of a family, aliases left out, in registration order (planned
    components included)."""
    return [name for name in registry.choices() if registry.canonical(name) == name]


def aliases_of(registry: Registry, name: str) -> List[str]:
    return [alias for alias in registry.choices() if alias != name and registry.canonical(alias) == name]


def _rst_to_md(text: str) -> str:
    return text.replace("``", "`")


def _first_paragraph(doc: Optional[str]) -> str:
    """First paragraph of a docstring, on one line; empty when it is a section header
    (``Args:``), which says nothing about what the component is."""
    doc = inspect.cleandoc(doc or "")
    paragraph = doc.split("\n\n", 1)[0].strip()
    first_line = paragraph.split("\n", 1)[0].strip()
    if first_line.endswith(":") and " " not in first_line:
        return ""
    return " ".join(line.strip() for line in paragraph.splitlines())


def summary(cls: type) -> str:
    """What a component is: its class docstring's first paragraph, else its module's."""
    text = _first_paragraph(cls.__doc__) or _first_paragraph(sys.modules[cls.__module__].__doc__)
    return _rst_to_md(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    return f"`{value}`"


def option_type(option: Option) -> str:
    if option.type is bool:
        return "switch"
    text = option.type.__name__
    if option.choices:
        text += ": " + " \\| ".join(_value(c) for c in option.choices)
    if option.minimum is not None:
        text += f", ≥ {option.minimum:g}"
    if option.greater_than is not None:
        text += f", > {option.greater_than:g}"
    if option.maximum is not None:
        text += f", ≤ {option.maximum:g}"
    return text


def option_default(option: Option, cls: type) -> str:
    if option.type is bool:
        return "on" if option.default else "off"
    if option.default is None:
        model_name = getattr(cls, "default_model_name", "")
        if option.name == "model_name" and model_name:
            return _value(model_name)
        return "—"
    return _value(option.default)


def option_rows(registry: Registry, name: str, cls: type) -> List[str]:
    rows = []
    for option in getattr(cls, "options", ()):
        flag = option.flag_for(name, registry.word)
        help_text = _cell(_rst_to_md(option.help.replace("{family}", registry.word)))
        rows.append(f"| `{flag}` | {option_type(option)} | {option_default(option, cls)} | {help_text} |")
        for alias, value in option.aliases:
            rows.append(f"| `{alias}` | switch | off | Same as `{flag} {value}`. |")
    return rows


def component_entry(registry: Registry, name: str) -> List[str]:
    """Markdown lines of one component's entry."""
    lines = [entry_heading(registry, name), ""]
    spec = registry[name]
    if not spec.available:
        lines += [f"Planned, not available yet ({spec.planned}); choosing it is an error that says so.", ""]
        return lines
    cls = registry.resolve_class(name)
    text = summary(cls)
    if text:
        lines += [text, ""]
    facts = [f"class `{spec.target}`"]
    frame_rate = getattr(cls, "frame_rate", None)
    if frame_rate is not None:
        facts.append(f"declared output rate {frame_rate:g} Hz")
    model_name = getattr(cls, "default_model_name", "")
    if model_name:
        facts.append(f"default pretrained model `{model_name}`")
    aliases = aliases_of(registry, name)
    if aliases:
        facts.append("also chosen as " + ", ".join(f"`{registry.flag} {a}`" for a in aliases))
    sentence = "; ".join(facts)
    lines += [sentence[:1].upper() + sentence[1:] + ".", ""]
    rows = option_rows(registry, name, cls)
    if rows:
        lines += ["| flag | type | default | what |", "| --- | --- | --- | --- |"] + rows + [""]
    else:
        lines += ["No options of its own.", ""]
    return lines


def flag_index(registries: Mapping[str, Registry]) -> List[Tuple[str, List[str]]]:
    """Every component flag with the components that declare it, in registry order."""
    users: Dict[str, List[str]] = {}
    for registry in registries.values():
        for name in registry.available():
            for option in getattr(registry.resolve_class(name), "options", ()):
                flags = [option.flag_for(name, registry.word)] + [alias for alias, _ in option.aliases]
                for flag in flags:
                    users.setdefault(flag, []).append(f"`{registry.flag} {name}`")
    return list(users.items())


def _family_title(registry: Registry) -> str:
    return f"{registry.family[:1].upper()}{registry.family[1:]}s (`{registry.flag}`)"


def render_reference(registries: Mapping[str, Registry] = MODEL_REGISTRY) -> str:
    """The generated block (markers included) for ``registries``."""
    lines = [
        BEGIN,
        "",
        "## Reference: every registered component",
        "",
        f"Generated from the registries (`espnet/nets/pytorch_backend/registry.py`) and the options each "
        f"component declares; regenerate with `{REGENERATE}` from the repository root.",
        "",
        "| family | flag | options stored in | components |",
        "| --- | --- | --- | --- |",
    ]
    for registry in registries.values():
        names = ", ".join(f"`{n}`" for n in registry.choices())
        lines.append(f"| {registry.family} | `{registry.flag}` | `{registry.config_key}_conf` | {names} |")
    lines.append("")
    for registry in registries.values():
        lines += [f"## {_family_title(registry)}", ""]
        for name in registered_names(registry):
            lines += component_entry(registry, name)
    index = flag_index(registries)
    lines += ["## Component flags", "",
              "A flag applies only when a component that declares it is chosen; a flag several components "
              "declare sets the option of each chosen one.", "",
              "| flag | declared by |", "| --- | --- |"]
    lines += [f"| `{flag}` | {', '.join(users)} |" for flag, users in index]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def render_file(current: Optional[str], registries: Mapping[str, Registry] = MODEL_REGISTRY) -> str:
    """``current`` (the file's text, ``None`` if there is none) with its generated block
    replaced by a fresh one; the text before and after the markers is kept."""
    block = render_reference(registries)
    if current is None:
        return _SKELETON_TITLE + block
    start = current.find(BEGIN_PREFIX)
    end = current.find(END, start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        raise ValueError(f"no generated block: the file needs a line starting with {BEGIN_PREFIX!r} "
                         f"and, after it, the line {END!r}")
    after = current[end + len(END):]
    if after.startswith("\n"):
        after = after[1:]
    return current[:start] + block + after


def _write(path: str, text: str) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the component reference of docs/components.md "
                                                 "from the registries.")
    parser.add_argument("--path", default=DEFAULT_PATH, help="The file to rewrite. (Default: docs/components.md)")
    parser.add_argument("--check", action="store_true",
                        help="Change nothing; exit 1 if the file differs from what would be written.")
    args = parser.parse_args(argv)
    current = None
    if os.path.exists(args.path):
        with open(args.path, encoding="utf-8") as f:
            current = f.read()
    try:
        text = render_file(current)
    except ValueError as err:
        print(f"error: {args.path}: {err}", file=sys.stderr)
        return 2
    if args.check:
        if text != current:
            print(f"{args.path} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{args.path} is up to date")
        return 0
    if text == current:
        print(f"{args.path} is up to date")
    else:
        _write(args.path, text)
        print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
