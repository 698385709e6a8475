"""The CLI and the Python API agree: every option of a command is a parameter of the API
function of the same name, with the same default."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import cleaner.api as api
from cleaner.cli import data, loop, rounds

# CLI name -> API name, where the API spells a parameter as Python does.
RENAMED = {"set_": "overrides", "oof_runs": "oof", "source": "source"}
# Options the API leaves out on purpose, and why.
CLI_ONLY = {
    "quiet": "the API shows no progress unless progress=True",
    "fold": "one fold of a run spread over machines: cleaner.training.oof.oof_command",
}
COMMANDS: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("ingest digits", data.ingest_digits, api.ingest_digits),
    ("ingest folder", data.ingest_folder, api.ingest_folder),
    ("ingest csv", data.ingest_csv, api.ingest_csv),
    ("init", data.init, api.init),
    ("oof", loop.oof, api.oof),
    ("flag", loop.flag, api.flag),
    ("apply", loop.apply, api.apply),
    ("retrain", loop.retrain, api.retrain),
    ("round", rounds.round_, api.round),
    ("refresh", rounds.refresh, api.refresh),
]


def _cli_default(param: inspect.Parameter) -> Any:
    """A typer parameter's default: its OptionInfo / ArgumentInfo's, ``...`` when required."""
    default = param.default
    value = getattr(default, "default", default)
    return inspect.Parameter.empty if value is ... else value


def _same(cli_value: Any, api_value: Any, *, repeatable: bool = False) -> bool:
    # A repeatable option (list[...]) defaults to [] or None in typer: none given; its
    # API parameter to () or [].
    if repeatable:
        return cli_value in ([], None) and api_value in ((), [])
    return bool(cli_value == api_value)


@pytest.mark.parametrize(("name", "command", "function"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_option_is_an_api_parameter_with_the_same_default(
    name: str, command: Callable[..., Any], function: Callable[..., Any]
) -> None:
    cli_params = inspect.signature(command).parameters
    api_params = inspect.signature(function).parameters
    problems = []
    for cli_name, param in cli_params.items():
        if cli_name in CLI_ONLY:
            continue
        api_name = RENAMED.get(cli_name, cli_name)
        if api_name not in api_params:
            problems.append(f"--{cli_name}: no parameter {api_name!r} in cleaner.api")
            continue
        ours, theirs = _cli_default(param), api_params[api_name].default
        if not _same(ours, theirs, repeatable="list[" in str(param.annotation)):
            problems.append(f"{api_name}: CLI default {ours!r}, API default {theirs!r}")
    assert not problems, f"cleaner {name}: " + "; ".join(problems)


def test_the_comparison_sees_a_difference() -> None:
    """The check above can fail: a differing default and a missing parameter are found."""

    def command(out: Any = None, top: int = 3) -> None: ...

    def function(out: Any = None, top: int = 4) -> None: ...

    def missing(out: Any = None) -> None: ...

    top = inspect.signature(command).parameters["top"]
    assert not _same(_cli_default(top), inspect.signature(function).parameters["top"].default)
    assert "top" not in inspect.signature(missing).parameters
