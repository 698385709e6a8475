"""The command line's frame: the app, its sub-apps, the error printer, shared options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import version as package_version
from typing import Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from cleaner.core import choices
from cleaner.core.errors import FoldsFailed, InputError, task_name
from cleaner.core.progress import console, err_console

# `--help` lists the commands in the order of the loop, not alphabetically.
WORKFLOW = (
    "status", "ingest", "init", "oof", "flag", "review", "apply", "round", "refresh", "retrain",
    "export", "import", "repoint",
)  # fmt: skip


def _flag_help(option: Any) -> Any:
    """``--help`` is a flag: no ``<bool>`` beside it in the help (typer shows its type)."""
    if option is not None:
        option.metavar = ""
    return option


class WorkflowGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:  # typer vendors its own click
        names = super().list_commands(ctx)
        order = {name: i for i, name in enumerate(WORKFLOW)}
        return sorted(names, key=lambda n: order.get(n, len(order)))

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_help(super().get_help_option(ctx))

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None and not isinstance(command, WorkflowGroup):
            _flag_help(command.get_help_option(ctx))  # typer caches the option: set once
        return command


app = typer.Typer(
    cls=WorkflowGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Find mislabeled images, review them, and retrain on the cleaned labels.",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"cleaner {package_version('cleaner')}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        metavar="",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Find mislabeled images, review them, and retrain on the cleaned labels."""


ingest_app = typer.Typer(
    cls=WorkflowGroup, no_args_is_help=True, help="Make a manifest from raw images."
)


app.add_typer(ingest_app, name="ingest")


F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Print bad-input errors as one message and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InputError, FileExistsError) as e:
            # The message is user text (labels, paths): print it literally, unwrapped.
            err_console.print(
                Text.assemble(("error: ", "bold red"), str(e)), highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except OSError as e:
            # A full disk, a read-only or unwritable folder: the environment, not the input
            # and not a bug. Outputs are written atomically, so nothing half-way is left.
            where = f"{e.filename}: " if e.filename else ""
            err_console.print(
                Text.assemble(("error: ", "bold red"), f"{where}{e.strerror or e}"),
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None
        except FoldsFailed as e:
            table = Table(title=f"failed folds of {e.run_dir} (each was retried once)")
            table.add_column("fold", justify="right")
            table.add_column("error", overflow="fold")
            for k, reason in e.failed.items():
                table.add_row(task_name(k), reason)
            err_console.print(table)
            err_console.print(
                "the finished folds are kept: run the same command again to train only "
                "the failed ones and merge"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# Options shared by `oof` and `retrain --mode folds`: where the folds run.
SET_OPTION = typer.Option(
    [], "--set", metavar="KEY=VALUE", help="Override a key: section.key=value (repeatable)."
)


BACKEND_OPTION = typer.Option("local", "--backend", help=choices.BACKENDS.help())


ADDRESS_OPTION = typer.Option(
    None, "--address", help="Ray cluster address (default: start a local Ray instance)."
)


GPUS_OPTION = typer.Option(
    None, "--gpus-per-fold", help="GPUs per Ray fold, <= 1 (default: 1 when the cluster has GPUs)."
)


CPUS_OPTION = typer.Option(
    None, "--cpus-per-fold", help="CPUs per Ray fold (default: max(1, train.workers))."
)


export_app = typer.Typer(
    cls=WorkflowGroup, no_args_is_help=True, help="Write the queue for another review tool."
)


app.add_typer(export_app, name="export")


import_app = typer.Typer(
    cls=WorkflowGroup, no_args_is_help=True, help="Read decisions from another review tool."
)


app.add_typer(import_app, name="import")


synth_app = typer.Typer(
    cls=WorkflowGroup, no_args_is_help=True, help="Make synthetic data sets with known noise."
)


app.add_typer(synth_app, name="synth")
