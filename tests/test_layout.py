"""The layout rules of the package, checked on the code itself.

- No module longer than 600 lines: a longer one holds more than one concept.
- No function longer than 80 lines; the layers import downwards only.
- Every CLI command's body (after its docstring) at most 25 lines: parse the
  arguments, make one call into the API or the layer's public function, print.
- No file name of a run folder, a fold's folder or a queue folder spelled outside
  :mod:`cleaner.formats.run_files`, in the package or the benchmarks.
- The tests mirror the package: a test folder per layer (a subpackage of
  ``cleaner``), each on pytest's ``pythonpath``, no two test files of one name.
"""

from __future__ import annotations

import ast
import tomllib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "cleaner"
OWNER = PACKAGE / "formats" / "run_files.py"
MAX_MODULE_LINES = 600
MAX_COMMAND_LINES = 25


def _modules(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py"))


def _run_file_names() -> set[str]:
    """Every file name :mod:`cleaner.formats.run_files` spells: its string constants
    that look like a file name (``oof.csv``, ``metrics.json``, ...)."""
    tree = ast.parse(OWNER.read_text())
    names = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and "." in n.value
    }
    return {s for s in names if " " not in s and "/" not in s and not s.startswith(".")}


def test_the_owner_names_the_files_we_look_for() -> None:
    assert {"oof.csv", "metrics.json", "config.toml", "queue.csv", "queue.json"} <= (
        _run_file_names()
    )


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_600_lines(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {n} lines"


def _commands() -> list[tuple[str, ast.FunctionDef]]:
    """Every function a typer app registers as a command, in ``cleaner/cli``."""
    found = []
    for path in _modules(PACKAGE / "cli"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "command"
                for d in node.decorator_list
            ):
                found.append((f"{path.name}:{node.name}", node))
    return found


def test_every_cli_command_body_is_short() -> None:
    commands = _commands()
    assert len(commands) >= 15  # every command is found: ingest x5, oof, flag, ...
    long = []
    for name, fn in commands:
        body = fn.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring is the command's help, not its work
        lines = (body[-1].end_lineno or 0) - body[0].lineno + 1
        if lines > MAX_COMMAND_LINES:
            long.append(f"{name}: {lines} lines")
    assert not long, long


def test_no_run_file_name_outside_its_owner() -> None:
    names = _run_file_names()
    found = []
    for path in _modules(PACKAGE, ROOT / "benchmarks"):
        if path == OWNER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_no_function_in_the_package_is_longer_than_80_lines() -> None:
    long = []
    for path in _modules(PACKAGE):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


# Lowest first: a layer imports only from itself and the layers before it.
LAYERS = (
    "core",
    "formats",
    "ingest",
    "review",
    "ranking",
    "training",
    "rounds",
    "final",
    "api",
    "demo",
    "cli",
    "__main__",
)


def test_the_layers_import_downwards_only() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for path in _modules(PACKAGE):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue
        own = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cleaner."):
                names = [node.module or ""]
            elif isinstance(node, ast.ImportFrom) and node.module == "cleaner":
                names = [f"cleaner.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("cleaner.")]
            for name in names:
                if rank[name.split(".")[1]] > rank[own]:
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not upward, "\n".join(upward)


def test_oof_folds_train_through_fold_train_not_oof() -> None:
    """oof runs folds through ray_folds, which trains them with fold_train: not oof."""
    training = PACKAGE / "training"
    assert "cleaner.training.oof" not in (training / "ray_folds.py").read_text()
    assert "cleaner.training.oof" not in (training / "fold_train.py").read_text()
    assert "cleaner.training.ray_folds" not in (training / "fold_train.py").read_text()


def test_the_tests_mirror_the_package() -> None:
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    layers = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders <= layers, f"test folders without a layer: {sorted(folders - layers)}"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    paths = set(config["tool"]["pytest"]["ini_options"]["pythonpath"])
    assert {f"tests/{f}" for f in folders} <= paths, "a test folder missing from pythonpath"
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], "two test files of one name"
    assert not list(tests.rglob("__init__.py")), "test folders are not packages"
