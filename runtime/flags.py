"""One way to make command-line flags: from dataclass fields (name, type, default, help).

Every command builds its flags here from the config it fills, so a flag is
named after its field (``batch_size`` -> ``--batch-size``, with a ``prefix``
such as ``align-`` where several configs share one command), typed by the
field's annotation, documented by the field's ``metadata["help"]`` or, failing
that, by its entry in the class docstring's ``Attributes:`` section, and says
its default in its help.

    flags = field_flags(AlignConfig, ["layer", "method"], prefix="align-")
    add_flags(parser, flags, given_only=True, default_text="the preset's")
    overrides = given(args, flags)          # {"layer": 5} for --align-layer 5

``given_only`` flags default to ``None`` so that only the flags a user gave
override a preset or a JSON file; otherwise the field's default is the flag's.
A boolean field is a ``--x/--no-x`` pair; ``invert`` names a store-true flag
that sets a boolean field to False (``--case-insensitive`` for
``case_sensitive``). A tuple field takes several values (``nargs="+"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Flag:
    """One flag of one dataclass field."""

    field: str
    flag: str  # without the leading "--"
    dest: str
    hint: Any
    help: str
    default: Any = MISSING
    inverted: bool = False


def docstring_help(cls: type) -> dict[str, str]:
    """Field -> first sentence of its entry in ``cls``'s ``Attributes:`` docstring section."""
    doc = cls.__doc__ or ""
    section = doc.split("Attributes:", 1)
    if len(section) < 2:
        return {}
    entries: dict[str, list[str]] = {}
    current = None
    for line in section[1].splitlines():
        found = re.match(r"^\s{2,6}(\w+): ?(.*)$", line)
        if found and found.group(1) in {f.name for f in dataclasses.fields(cls)}:
            current = found.group(1)
            entries[current] = [found.group(2)]
        elif current and line.strip():
            entries[current].append(line.strip())
        elif not line.strip() and current:
            current = None
    out = {}
    for name, words in entries.items():
        text = " ".join(words)
        sentence = re.split(r"(?<!e\.g)(?<!i\.e)(?<=[a-z0-9)`'\"])\. (?=[A-Z(`])", text, maxsplit=1)[0]
        out[name] = sentence.rstrip(".") + "."
    return out


def _plain_type(hint: Any) -> Any:
    """``int | None`` -> int; other hints unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def field_flags(
    cls: type,
    fields: Iterable[str] | None = None,
    *,
    prefix: str = "",
    rename: Mapping[str, str] | None = None,
    invert: Mapping[str, str] | None = None,
    defaults: Any = None,
    help: Mapping[str, str] | None = None,  # noqa: A002 (argparse's word)
) -> list[Flag]:
    """Flags for ``fields`` of dataclass ``cls`` (all of them by default).

    Args:
      prefix: put before every flag and dest name (``align-`` -> ``--align-layer``).
      rename: field -> flag name (before the prefix), where the two differ.
      invert: boolean field -> name of a flag that sets it to False.
      defaults: an instance whose values are the defaults (else the fields').
      help: field -> help text, overriding the field's own.
    """
    rename, invert, help = rename or {}, invert or {}, help or {}
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    documented = docstring_help(cls)
    out = []
    for name in fields if fields is not None else by_name:
        f = by_name[name]
        flag = prefix + (invert.get(name) or rename.get(name, name)).replace("_", "-")
        if defaults is not None:
            default = getattr(defaults, name)
        elif f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        text = help.get(name) or f.metadata.get("help") or documented.get(name, "")
        dest = flag.replace("-", "_")
        out.append(Flag(name, flag, dest, hints[name], text, default, name in invert))
    return out


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flags: Iterable[Flag],
    *,
    given_only: bool = False,
    default_text: str | None = None,
    choices: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Adds ``flags`` to ``parser``; each help ends with the default it stands for.

    Args:
      given_only: every flag defaults to None (only given flags override).
      default_text: what the help says the default is, instead of the value
        (``"the preset's"``).
      choices: field -> allowed values.
    """
    choices = choices or {}
    for f in flags:
        hint = _plain_type(f.hint)
        if f.inverted:
            shown = "off"
            f = dataclasses.replace(f, help=f"sets {f.field} to False: {f.help}")
        elif default_text is not None:
            shown = default_text
        elif f.default is None:
            shown = "none"
        else:
            shown = None if f.default is MISSING else f.default
        help_text = f.help + (f" (default: {shown})" if shown not in (None, "") else "")
        if f.default == "" and default_text is None and not f.inverted:
            help_text = f.help + " (default: none)"
        kwargs: dict[str, Any] = {"dest": f.dest, "help": help_text}
        if f.inverted:
            kwargs.update(action="store_true", default=None if given_only else False)
        elif hint is bool:
            default = None if given_only or f.default is MISSING else f.default
            kwargs.update(action=argparse.BooleanOptionalAction, default=default)
        else:
            if typing.get_origin(hint) is tuple:
                kwargs["nargs"] = "+"
            else:
                kwargs["type"] = hint
            if f.field in choices:
                kwargs["choices"] = tuple(choices[f.field])
            if f.default is MISSING and not given_only:
                kwargs["required"] = True
            else:
                kwargs["default"] = None if given_only else f.default
        parser.add_argument("--" + f.flag, **kwargs)


def given(args: argparse.Namespace, flags: Iterable[Flag]) -> dict[str, Any]:
    """Field -> value of the flags present in ``args`` and not None (lists as tuples)."""
    out = {}
    for f in flags:
        value = getattr(args, f.dest, None)
        if value is None:
            continue
        if f.inverted:
            if not value:
                continue
            value = False
        out[f.field] = tuple(value) if isinstance(value, list) else value
    return out


def at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (a batch size of 0 or -3 is a usage error,
    not a crash or, with -3, a run that silently scores nothing)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message: 'invalid integer value'
    return parse


def comma_list(item: Any = str):
    """An argparse type: comma-separated values, each converted by ``item``, blanks dropped.

    ``en, de,`` -> ``("en", "de")``; with ``item=int`` a value such as ``8,x`` is a usage
    error naming the flag (exit 2), not a traceback from deep in the command.
    """

    def parse(text: str) -> tuple:
        return tuple(item(part.strip()) for part in text.split(",") if part.strip())

    parse.__name__ = "comma-separated"  # argparse: 'invalid comma-separated value: ...'
    return parse
