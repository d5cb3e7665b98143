"""runtime.flags: every command's config flags come from dataclass fields and say their default."""

import argparse
from dataclasses import dataclass, field

import pytest

from relbridge.runtime.flags import add_flags, comma_list, field_flags, given


@dataclass(frozen=True)
class _Cfg:
    """Toy settings.

    Attributes:
      rate: how fast. Longer text is left out of the flag's help.
    """

    name: str = field(metadata={"help": "the name."})
    rate: float = 0.5
    exact: bool = True
    langs: tuple[str, ...] = ("en",)
    threads: int | None = None


def test_flags_are_typed_documented_and_override_only_when_given():
    flags = field_flags(_Cfg, prefix="x-", invert={"exact": "loose"})
    parser = argparse.ArgumentParser()
    add_flags(parser, flags, given_only=True)
    args = parser.parse_args(["--x-rate", "0.25", "--x-loose", "--x-langs", "de", "fr"])
    assert given(args, flags) == {"rate": 0.25, "exact": False, "langs": ("de", "fr")}
    assert given(parser.parse_args([]), flags) == {}
    helps = {a.dest: a.help for a in parser._actions if a.dest.startswith("x_")}
    assert helps["x_rate"] == "how fast. (default: 0.5)"
    assert helps["x_langs"].endswith("(default: ('en',))")
    assert "sets exact to False" in helps["x_loose"]


def test_required_fields_and_real_defaults_without_given_only():
    flags = field_flags(_Cfg, ["name", "threads"])
    parser = argparse.ArgumentParser()
    add_flags(parser, flags)
    with pytest.raises(SystemExit):
        parser.parse_args([])
    args = parser.parse_args(["--name", "n", "--threads", "2"])
    assert (args.name, args.threads) == ("n", 2)


@pytest.mark.parametrize(
    "command", ["run", "train", "eval-align", "eval-projection", "finetune-aligner"]
)
def test_every_config_flag_of_every_command_says_its_default(command):
    from relbridge.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = [a for a in sub.choices[command]._actions if a.option_strings and a.dest != "help"]
    missing = [a.option_strings[0] for a in actions if "default" not in a.help and not a.required]
    assert not missing, missing


def test_comma_lists_drop_blanks_and_a_bad_item_is_a_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="relbridge")
    parser.add_argument("--langs", type=comma_list(), default=())
    parser.add_argument("--layers", type=comma_list(int))
    args = parser.parse_args(["--langs", " en, de,,", "--layers", "8,10"])
    assert (args.langs, args.layers) == (("en", "de"), (8, 10))
    assert parser.parse_args([]).langs == ()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--layers", "8,x"])
    assert stop.value.code == 2
    assert "--layers: invalid comma-separated value: '8,x'" in capsys.readouterr().err


def test_the_commands_parse_their_comma_lists_into_tuples():
    from relbridge.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["eval-align", "--pairs", "p", "--gold", "g",
                              "--method", "itermax,match", "--extra-layers", "7, 9"])  # fmt: skip
    assert (args.method, args.extra_layers) == (("itermax", "match"), (7, 9))
    args = parser.parse_args(["triples", "--input", "r", "--output", "t", "--lang", "en,de"])
    assert args.lang == ("en", "de")
