"""`headwater --help` and each command's help say what the commands do today: the list comes
from the parser, every command there has a handler and a help line, and each command's own
`--help` opens with that line."""

from __future__ import annotations

import argparse

import pytest

from devstack.cli import _COMMANDS, _parser

pytestmark = pytest.mark.unit


def subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    [found] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return found


def test_every_command_of_the_parser_has_a_handler_and_a_help_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = subcommands(_parser())
    assert set(commands.choices) == set(_COMMANDS)
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    for action in commands._choices_actions:
        assert action.help, f"`{action.dest}` has a help line"
        assert action.dest in shown
        assert " ".join(action.help.split()[:3]) in " ".join(shown.split())


@pytest.mark.parametrize("command", sorted(set(_COMMANDS) - {"bench"}))
def test_each_commands_help_opens_with_its_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = subcommands(_parser())
    line = next(a.help for a in commands._choices_actions if a.dest == command)
    argv = [command, "--help"]
    nested = commands.choices[command]._subparsers
    if nested is not None:  # `cluster up --help`, `stream bronze --help`, ...
        argv = [command, next(iter(subcommands(commands.choices[command]).choices)), "--help"]
    with pytest.raises(SystemExit) as done:
        _parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert " ".join(str(line).split()) in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as nested_done:
        _parser().parse_args(argv)
    assert nested_done.value.code == 0


def test_the_demos_help_says_it_runs_every_layer_and_the_ui() -> None:
    demo = subcommands(_parser()).choices["demo"]
    text = demo.format_help()
    for part in ("bronze", "silver", "gold", "Dagster UI", "PostgreSQL"):
        assert part in text
