"""Packaging and architecture: one import name, dependencies pointing one way."""

import ast
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALLOWED = {
    "runtime": set(),
    "data_specs": set(),
    "text": set(),  # the sentence splitter: plain Python, shared by every layer that reads documents
    "alignment": {"data_specs", "runtime"},
    "projection": {"data_specs", "runtime"},
    # runtime: only its cache root; Beam only for gs:// paths, imported lazily (test_kb_index)
    "kb": {"data_specs", "runtime"},
    "report": {"data_specs"},  # Beam's FileSystems for gs:// outputs, imported lazily
    "pipeline": {"data_specs", "runtime", "text", "alignment", "projection", "kb", "report"},
    "models": {"data_specs", "runtime", "text", "kb"},
    # the KG: a Beam job (kg build) over the extractor's own functions, and the RDF store
    "kg": {"data_specs", "runtime", "text", "kb", "models", "pipeline"},
}
"""Which relbridge layers each layer may import (the owner's dependency rule).

cli/ and demo/ wire the layers together and may import any of them; nothing
imports them. Function-level imports count as much as module-level ones."""

BEAM_LAYERS = {"pipeline", "kb", "report", "kg"}  # kb, report: only inside functions, for gs:// paths
PACKAGES = ("runtime", "data_specs", "text", "kb", "report", "alignment", "projection", "pipeline", "models",
            "kg", "cli", "demo")  # fmt: skip


def imported_modules(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer):
    offenders = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, layer)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            for module in imported_modules(path):
                parts = module.split(".")
                if (
                    parts[0] == "relbridge"
                    and len(parts) > 1
                    and parts[1] != layer
                    and parts[1] not in ALLOWED[layer]
                ):
                    offenders.append(f"{path}: {module}")
                if layer not in BEAM_LAYERS and parts[0] == "apache_beam":
                    offenders.append(f"{path}: {module}")
    assert not offenders, "imports against the layer rule:\n" + "\n".join(offenders)


def test_every_package_has_a_layer_rule_and_nothing_imports_the_wiring():
    """A new top-level package must say what it may import; cli/demo sit on top."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        dirs = tomllib.load(f)["tool"]["setuptools"]["package-dir"].values()
    assert set(dirs) == set(PACKAGES) and set(ALLOWED) | {"cli", "demo"} == set(PACKAGES)
    for layer in ALLOWED:
        for dirpath, _, files in os.walk(os.path.join(ROOT, layer)):
            for name in (n for n in files if n.endswith(".py")):
                for module in imported_modules(os.path.join(dirpath, name)):
                    assert not module.startswith(("relbridge.cli", "relbridge.demo")), (
                        f"{dirpath}/{name}: {module}"
                    )


def test_no_module_is_over_600_lines():
    long = []
    for package in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
            for name in (n for n in files if n.endswith(".py")):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    lines = sum(1 for _ in f)
                if lines > 600:
                    long.append(f"{dirpath}/{name}: {lines}")
    assert not long, long


@pytest.mark.parametrize(
    "modules,forbidden",
    [
        (("relbridge.models.extract",), ("apache_beam",)),  # inference never imports Beam
        (
            ("relbridge.data_specs.schema", "relbridge.data_specs.formats",
             "relbridge.data_specs.kb_format",
             "relbridge.data_specs.relations", "relbridge.data_specs.relx",
             "relbridge.data_specs.languages"),
            ("apache_beam", "torch"),
        ),  # the specs say what the data is, nothing runs here
        (("relbridge.projection.projection", "relbridge.projection.projection_eval"),
         ("apache_beam", "torch")),
        # a model's settings and the training flags read without loading torch
        (("relbridge.models.model_config", "relbridge.models.train_config"),
         ("apache_beam", "torch")),
    ],
)  # fmt: skip
def test_importing_leaves_heavy_frameworks_out(modules, forbidden):
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_wheel_installs_under_one_import_name(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ROOT,
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"relbridge"}
    for package in PACKAGES:
        assert f"relbridge/{package}/__init__.py" in names
    assert "relbridge/demo/data/relx_ende_train.tsv" in names
    assert "relbridge/demo/data/kb/triples.jsonl" in names
    assert not any(n.startswith("relbridge/tests") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "relbridge = relbridge.cli.main:main"
        in zipfile.ZipFile(tmp_path / wheel).read(entry_points).decode()
    )


def test_cli_lists_subcommands():
    from relbridge.cli.main import build_parser

    help_text = build_parser().format_help()
    for command in ("run", "train", "evaluate", "demo"):
        assert command in help_text


def test_every_commands_flags_build_without_torch():
    """`relbridge --help` builds every subcommand's flags; torch (2 s) waits for a command that runs."""
    code = (
        "import sys\nfrom relbridge.cli.main import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


def test_dataflow_stages_the_package_from_pyproject(tmp_path):
    """`--setup_file pyproject.toml` builds the sdist Dataflow workers install, offline."""
    import tarfile

    from apache_beam.runners.portability.stager import Stager

    tarball = Stager._build_setup_package(os.path.join(ROOT, "pyproject.toml"), str(tmp_path), None)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for path in (
        "pyproject.toml",
        "data_specs/schema.py",
        "pipeline/main.py",
        "demo/data/kb/entities.jsonl",
    ):
        assert any(n.endswith("/" + path) for n in names), path


def test_log_level_flag_takes_effect_after_beam_is_imported():
    import logging

    import apache_beam  # noqa: F401 (its import may log, which configures the root logger)

    from relbridge.cli.main import configure_logging

    root = logging.getLogger()
    logging.basicConfig(level=logging.WARNING)
    configure_logging("debug")
    try:
        assert root.level == logging.DEBUG
    finally:
        configure_logging("warning")


def test_cli_start_up_is_free_of_beams_apitools_notice():
    """Without the gcp extra Beam logs 'apitools not found' on import; the CLI hides that notice only."""
    code = (
        "import relbridge.cli.main as m; m.build_parser(); import logging; logging.warning('kept')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "apitools" not in done.stderr and "kept" in done.stderr
