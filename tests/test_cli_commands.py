"""The CLI imports only the module of the command it runs."""

import subprocess
import sys

from relbridge.cli.main import COMMAND_MODULES, build_parser, command_of


def test_command_of_skips_options_and_their_values():
    assert command_of(["--log-level", "DEBUG", "extract", "--model", "m"]) == "extract"
    assert command_of(["--help"]) is None


def test_every_command_is_listed_with_its_module():
    listed = {c for commands in COMMAND_MODULES.values() for c in commands}
    registered = set(build_parser()._subparsers._group_actions[0].choices)
    assert listed == registered


def test_extract_does_not_import_beam():
    code = (
        "import sys; from relbridge.cli.main import build_parser; "
        "build_parser('extract').parse_known_args(['extract', '--model', 'm', '--input', 'i', "
        "'--output', 'o']); assert 'apache_beam' not in sys.modules, 'Beam imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
