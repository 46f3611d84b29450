"""The ``ipvg`` typer app and its one ``main()``.

Each subcommand lives in its own module under ``ipvgkit.cli`` and exposes ``register(app)``. Modules
import nothing heavy at import time (no torch), so ``ipvg --help``, ``ipvg pack`` and ``ipvg cases``
start fast. ``main()`` maps ipvgkit's exception types to a one-line message on stderr and an exit code.
"""

from __future__ import annotations

import importlib

import typer
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

from ipvgkit import __version__

# (module under ipvgkit.cli) in the order the commands appear in --help.
COMMAND_MODULES = [
    "cases",
    "generate",
    "finetune",
    "score",
    "pack",
    "prepare",
    "models",
    "demo",
    "doctor",
]


def _flag_type_rich(self, ctx):
    """A boolean flag takes no value: show no ``<bool>`` type for it in ``--help``."""
    if getattr(self, "is_flag", False) and getattr(self, "is_bool_flag", False):
        return None
    return _typer_type_rich(self, ctx)


_typer_type_rich = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type_rich  # typer >= 0.20 shows a value type for flags too


class _Group(TyperGroup):
    """Maps ipvgkit errors to one line on stderr and their exit code, for ``main()`` and CliRunner alike."""

    def invoke(self, ctx):
        from ipvgkit.errors import IpvgError

        try:
            return super().invoke(ctx)
        except IpvgError as exc:
            from ipvgkit.cli.ui import err

            err.print(f"[bold red]error:[/] {escape(_message(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: finished outputs are kept; rerun the same command to resume", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="ipvg",
    help=(
        "Identity-preserving video generation toolkit: test sets -> generation -> scores -> a valid "
        "challenge submission.\n\nStart with `ipvg doctor`, then `ipvg demo`."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ipvg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Identity-preserving video generation toolkit."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"ipvgkit.cli.{_name}").register(app)


def _message(exc: BaseException) -> str:
    from ipvgkit.errors import CheckFailed

    msg = str(exc).strip() or type(exc).__name__
    first = msg.splitlines()[0]
    if isinstance(exc, CheckFailed) and exc.problems:
        return first + "\n" + "\n".join(f"  {p}" for p in exc.problems)
    return first


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (errors are mapped inside the command group, see ``_Group``)."""
    app(args=argv, prog_name="ipvg")
