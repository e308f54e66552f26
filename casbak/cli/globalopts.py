"""Options every command takes, wherever they stand, and how the group names its commands.

``--repo``, ``--json``, ``--quiet``, ``--local`` and ``--password-file`` are
declared on the group and again on every command, so ``casbak --json list``
and ``casbak list --json`` mean the same. The group sets the shared
`Context`; a command's copies only override what was given after the
command name (the last ``--repo`` given wins).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from casbak.cli.context import Context
from casbak.defaults import DEFAULT_REPOSITORY_DISPLAY, default_repository

REPO_ENV = "CASBAK_REPO"
ANYWHERE = (
    "Global options may go before or after the command: --repo, --json, -q/--quiet, --local, "
    "--password-file."
)

# Other spellings of a command, shown in the command list as such.
ALIASES = {"snapshots": "list"}

# The commands a mistyped name may be taken for: none of them changes the
# repository, Descope or local files, so a wrong guess costs nothing. A
# command not named here is never suggested.
READING_COMMANDS = frozenset(
    {"list", "snapshots", "show", "diff", "stats", "log", "find", "verify"}
)

REPO_HELP = f"Repository folder (also ${REPO_ENV})."
JSON_HELP = "Print one JSON document for scripts."
QUIET_HELP = "Print nothing but errors."
LOCAL_HELP = "Show times in the local zone instead of UTC (JSON stays UTC)."
PASSWORD_HELP = (
    "An encrypted repository's password: this file's first line (else CASBAK_PASSWORD, "
    "CASBAK_PASSWORD_COMMAND, or a prompt on a terminal)."
)
_PASSWORD_FILE = click.Path(dir_okay=False, path_type=Path)


def group_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The global options as the group declares them, with their defaults."""
    for option in reversed(
        [
            click.option(
                "--repo",
                envvar=REPO_ENV,
                default=lambda: str(default_repository()),
                show_default=DEFAULT_REPOSITORY_DISPLAY,
                help=REPO_HELP,
            ),
            click.option("--json", "json_output", is_flag=True, help=JSON_HELP),
            click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP),
            # Set on the Context by its callback, so the group's signature stays as it is.
            click.option(
                "--local",
                "local_time",
                is_flag=True,
                expose_value=False,
                callback=_override,
                help=LOCAL_HELP,
            ),
            click.option(
                "--password-file",
                type=_PASSWORD_FILE,
                expose_value=False,
                callback=_override,
                help=PASSWORD_HELP,
            ),
        ]
    ):
        function = option(function)
    return function


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a global option given after the command name on the shared `Context`."""
    if value is None or value is False:
        return  # not given here: what the group parsed stands
    setattr(ctx.ensure_object(Context), _ATTRIBUTES[str(param.name)], value)


_ATTRIBUTES = {
    "repo": "repo_location",
    "json_output": "json_output",
    "quiet": "quiet",
    "local_time": "local_time",
    "password_file": "password_file",
}


def command_options() -> list[click.Parameter]:
    """Fresh copies of the global options for one command; they only override."""
    common: dict[str, Any] = {"expose_value": False, "callback": _override}
    return [
        click.Option(["--repo"], default=None, help=REPO_HELP, **common),
        click.Option(["--json", "json_output"], is_flag=True, help=JSON_HELP, **common),
        click.Option(["--quiet", "-q"], is_flag=True, help=QUIET_HELP, **common),
        click.Option(["--local", "local_time"], is_flag=True, help=LOCAL_HELP, **common),
        click.Option(["--password-file"], type=_PASSWORD_FILE, help=PASSWORD_HELP, **common),
    ]


class CasbakGroup(click.Group):
    """A group whose commands all take the global options, with aliases and safe guesses."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(param.callback is _override for param in cmd.params):  # once per command
            # A command with an option of its own by that name (init's
            # --password-file) keeps it; it falls back on the global one.
            taken = {param.name for param in cmd.params}
            cmd.params.extend(param for param in command_options() if param.name not in taken)
            cmd.epilog = f"{cmd.epilog}\n\n{ANYWHERE}" if cmd.epilog else ANYWHERE
        super().add_command(cmd, name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # click guesses among all commands; a reader's typo must not be
            # answered with a command that writes (``snapshots`` -> ``snapshot``).
            readers = sorted(name for name in self._names() if name in READING_COMMANDS)
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=readers, ctx=ctx
            ) from None

    def _names(self) -> list[str]:
        return [*self.commands, *ALIASES]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        rows = [(alias, f"Same as '{name}'.") for alias, name in sorted(ALIASES.items())]
        with formatter.section("Aliases"):
            formatter.write_dl(rows)


def json_requested(group: click.Group, args: Sequence[str]) -> bool:
    """Whether ``--json`` was given, read by click from arguments it refused.

    A usage error stops parsing before later options are seen, so they are
    parsed again leniently: unknown options skipped, no value checked, no
    command run. A ``--json`` that is the value of another option is not one.
    """
    state = Context("", False, False)
    try:
        ctx = group.context_class(group, info_name="casbak", obj=state, resilient_parsing=True)
        with ctx.scope(cleanup=False):
            # The plain command parse: it hands back the command and what follows it.
            rest = click.Command.parse_args(group, ctx, list(args))
        state.json_output = bool(ctx.params.get("json_output"))
        if rest:
            name, command, rest = group.resolve_command(ctx, rest)
            if command is None or name is None:
                # No command to tell values from options: any --json counts.
                state.json_output |= "--json" in rest[: _end_of_options(rest)]
            else:
                command.make_context(
                    name, rest, parent=ctx, resilient_parsing=True, ignore_unknown_options=True
                )
    except click.ClickException:
        pass  # as far as click got
    return state.json_output


def _end_of_options(args: list[str]) -> int:
    return args.index("--") if "--" in args else len(args)
