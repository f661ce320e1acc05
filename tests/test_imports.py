"""Scripts are thin shells that nothing imports: no module of the project (package, tutorials,
benchmarks, tests) imports ``train``, ``eval`` or ``transcribe``, and no tutorial imports
another tutorial."""

import ast
import os

import pytest

from conftest import REPO

SCRIPTS = {"train", "eval", "transcribe"}
FOLDERS = ("espnet", "datamodule", "preparation", "tutorials", "benchmarks", "tests")


def python_files():
    for folder in FOLDERS:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))


def imported_modules(path):
    with open(path, encoding="utf8") as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_walk_sees_the_project():
    files = list(python_files())
    assert len(files) > 100 and os.path.join(REPO, "espnet", "asr", "pretrained.py") in files


@pytest.mark.parametrize("path", [p for p in python_files() if os.sep + "tutorials" + os.sep in p],
                         ids=lambda p: os.path.relpath(p, REPO))
def test_tutorials_import_only_the_package_and_installed_modules(path):
    """A tutorial runs from anywhere with the repository on its path, nothing else: every module
    it imports must be found from there (the package, the standard library, the venv)."""
    import importlib.util

    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top == "tutorials" or importlib.util.find_spec(top) is not None, \
            f"{os.path.relpath(path, REPO)} imports {name}, which is neither in the package nor installed"


@pytest.mark.parametrize("path", list(python_files()), ids=lambda p: os.path.relpath(p, REPO))
def test_no_module_imports_a_script_or_a_tutorial(path):
    tutorials = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(REPO, "tutorials")) if f.endswith(".py")}
    for name in imported_modules(path):
        top = name.split(".")[0]
        assert top not in SCRIPTS, f"{os.path.relpath(path, REPO)} imports the script {name}.py"
        assert top not in tutorials, f"{os.path.relpath(path, REPO)} imports the tutorial {name}"
