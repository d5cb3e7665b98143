"""Dataflow submissions fail fast: each missing piece is one line, exit 2, no network."""

import pytest
from apache_beam.options.pipeline_options import SetupOptions
from test_pipeline_e2e import pipeline_argv

from relbridge.cli.main import main
from relbridge.pipeline import preflight
from relbridge.pipeline.preflight import PreflightError, check_dataflow, pipeline_options

GOOD = [
    "--runner", "DataflowRunner", "--project", "p", "--region", "europe-west4",
    "--temp_location", "gs://bucket/tmp", "--setup_file", "./pyproject.toml",
]  # fmt: skip


class FakeCloud:
    """Installed modules, credentials and buckets as a test wants them."""

    def __init__(self, missing=(), credentials=("creds", "adc-project"), buckets=("bucket",)):
        self.missing, self.creds, self.buckets, self.probed = (
            list(missing),
            credentials,
            buckets,
            [],
        )

    def missing_modules(self):
        return self.missing

    def credentials(self):
        if self.creds is None:
            raise RuntimeError("Your default credentials were not found.\nTo set up ADC, see ...")
        return self.creds

    def probe(self, credentials, project, bucket, prefix):
        self.probed.append((project, bucket, prefix))
        if bucket not in self.buckets:
            raise RuntimeError(f"404 GET storage.googleapis.com/b/{bucket}: bucket does not exist")


def problems(argv, output="gs://bucket/out", **fake):
    try:
        check_dataflow(pipeline_options(argv), output, FakeCloud(**fake))
    except PreflightError as error:
        assert str(error).count("\n") == len(error.problems)  # one line each
        return error.problems
    return []


def test_a_complete_setup_passes_and_probes_both_buckets():
    env = FakeCloud()
    check_dataflow(pipeline_options(GOOD), "gs://bucket/out", env)
    assert env.probed == [("p", "bucket", "tmp"), ("p", "bucket", "out")]


def test_missing_extra_names_relbridge_gcp_alone():
    (line,) = problems(GOOD, missing=["google.cloud.dataflow"])
    assert 'pip install "relbridge[gcp]"' in line and "google.cloud.dataflow" in line


def test_each_missing_piece_is_one_line():
    argv = ["--runner", "DataflowRunner", "--temp_location", "/tmp/x"]
    found = problems(argv, output="out/local", credentials=None)
    assert len(found) == 6, found
    for flag in ("--region", "--setup_file", "--temp_location /tmp/x", "--output out/local",
                 "no Google Cloud credentials", "--project"):  # fmt: skip
        assert sum(flag in line for line in found) == 1, (flag, found)


def test_unreachable_bucket_and_project_from_credentials():
    argv = [a for a in GOOD if a not in ("--project", "p")]
    (line,) = problems(argv, output="gs://other/out")
    assert line.startswith("--output gs://other/out: cannot list gs://other: 404")


def test_save_main_session_is_off_unless_asked():
    for runner in ("DirectRunner", "DataflowRunner"):
        options = pipeline_options(["--runner", runner])
        assert options.view_as(SetupOptions).save_main_session is False
    asked = pipeline_options(["--runner", "DataflowRunner", "--save_main_session"])
    assert asked.view_as(SetupOptions).save_main_session is True


def test_cli_stops_before_reading_anything(tmp_path, tiny_encoder, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "GoogleCloud", lambda: FakeCloud(credentials=None))
    argv = pipeline_argv(tmp_path, tiny_encoder, *GOOD)
    argv[argv.index("--kb") + 1] = str(tmp_path / "no_such_kb")  # never read: the check comes first
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert "cannot submit to Dataflow" in err and "no Google Cloud credentials" in err
    assert f"--output {tmp_path / 'out'} is not a gs:// path" in err
    assert not (tmp_path / "out").exists()


def test_real_environment_without_the_extra(monkeypatch):
    if not preflight.GoogleCloud().missing_modules():
        pytest.skip("the gcp extra is installed here")
    with pytest.raises(PreflightError, match=r"relbridge\[gcp\]"):
        check_dataflow(pipeline_options(GOOD), "gs://bucket/out")
