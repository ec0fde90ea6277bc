"""Every registered command renders its --help, listing each of its options; shared options
(neurofm.cli.options) keep each command's own default."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from neurofm.cli import app


def _commands(command: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) for the app and every command and group below it."""
    command = command or typer.main.get_command(app)
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands()


def _param(path: tuple[str, ...], name: str) -> Any:
    command = dict(COMMANDS)[path]
    return next(p for p in command.params if p.name == name)


def test_the_walk_finds_commands_and_groups() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"predict", "finetune", "monitor fit", "package run", "bench loader"} <= paths
    assert len(paths) > 40


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_renders_and_lists_every_option(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(
        app, [*path, "--help"], terminal_width=200, env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and " ".join(path) in result.output
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            assert param.opts[0] in result.output, f"{param.opts[0]} missing from --help"


@pytest.mark.parametrize(
    ("path", "name", "default"),
    [
        (("predict",), "device", "auto"),
        (("monitor", "fit"), "device", "cpu"),
        (("package", "verify"), "device", "cpu"),
        (("package", "run"), "threads", 1),
        (("finetune",), "threads", 0),
        (("prepare",), "workers", 1),
        (("synth",), "workers", 0),
    ],
)
def test_shared_options_keep_each_commands_default(
    path: tuple[str, ...], name: str, default: object
) -> None:
    assert _param(path, name).default == default


def test_shared_option_help_is_the_same_everywhere() -> None:
    helps = {_param(p, "device").help for p in [("predict",), ("monitor", "fit"), ("study",)]}
    assert helps == {"auto | cpu | cuda"}
