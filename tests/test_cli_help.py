"""Every optional flag of every `relbridge` subcommand says in its help what its default is."""

import argparse

import pytest

from relbridge.cli.main import build_parser

def subcommands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from subcommands(sub, (*prefix, name))
                else:
                    yield " ".join((*prefix, name)), sub


COMMANDS = dict(subcommands(build_parser()))


def missing_defaults(parser) -> list[str]:
    """Flags whose help lacks 'default', or lacks the default value itself when it has one."""
    bad = []
    for action in parser._actions:
        if action.required or isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        text = (action.help or "").lower()
        value = action.default
        if isinstance(value, (list, tuple)):
            value = " ".join(map(str, value))
        shown = value is None or isinstance(value, bool) or str(value).lower() in text
        if "default" not in text or not shown:
            bad.append(f"{action.option_strings[0]}: {action.help!r}")
    return bad


def test_every_subcommand_is_checked():
    assert {"run", "train", "evaluate", "extract", "benchmark relx", "triples", "demo"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_names_its_default(command):
    assert missing_defaults(COMMANDS[command]) == []
