"""Checks before a Dataflow submission, so that a job that cannot run stops at once.

Without them, a submission with the ``gcp`` extra but no credentials hung for
ten minutes (anonymous GCS checks timed out, then staging retried), and one
without the extra ended in Beam's traceback about ``apache_beam[gcp]``.
`check_dataflow` looks, in this order, at what the job needs and reports every
problem it finds in one line each (a `PreflightError`, so the CLI exits 2):

* the ``relbridge[gcp]`` extra is installed (nothing else can be checked without it);
* ``--project`` and ``--region`` are set (the project may come from the credentials);
* the workers can get relbridge: ``--setup_file``, ``--extra_package(s)`` or a
  ``--sdk_container_image`` that has it installed;
* Application Default Credentials resolve;
* ``--temp_location`` (or ``--staging_location``) and the output are gs:// paths
  whose buckets these credentials can list.

`pipeline_options` also sets ``save_main_session`` False for every runner
unless a flag sets it: relbridge ships its code as the installed package, and
Beam 2.77 would otherwise pickle ``__main__`` for Dataflow.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

GCP_MODULES = ("google.auth", "google.cloud.storage", "google.cloud.dataflow")
PROBE_TIMEOUT_S = 20.0


class PreflightError(ValueError):
    """Problems that stop a submission, one line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(
            "cannot submit to Dataflow:\n" + "\n".join(f"  {p}" for p in self.problems)
        )


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from the leftover flags, ``save_main_session`` False unless a flag sets it."""
    options = PipelineOptions(list(beam_args))
    setup = options.view_as(SetupOptions)
    if setup.save_main_session is None:
        setup.save_main_session = False
    return options


def is_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return runner.split(".")[-1] in ("DataflowRunner", "TestDataflowRunner")


class GoogleCloud:
    """The real environment: installed modules, Application Default Credentials, GCS."""

    def missing_modules(self) -> list[str]:
        missing = []
        for name in GCP_MODULES:
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:  # a parent package is missing
                found = False
            if not found:
                missing.append(name)
        return missing

    def credentials(self) -> tuple[Any, str | None]:
        """``(credentials, their project)``; raises when none resolve."""
        import google.auth

        return google.auth.default()

    def probe(self, credentials: Any, project: str | None, bucket: str, prefix: str) -> None:
        """Lists one object under gs://bucket/prefix; raises when that fails."""
        from google.cloud import storage

        client = storage.Client(project=project, credentials=credentials)
        blobs = client.list_blobs(bucket, prefix=prefix, max_results=1, timeout=PROBE_TIMEOUT_S)
        list(blobs)


def split_gcs(path: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, prefix = path[len("gs://") :].partition("/")
    return bucket, prefix


def check_dataflow(options: PipelineOptions, output: str, env: GoogleCloud | None = None) -> None:
    """Raises `PreflightError` naming every reason a Dataflow job could not run.

    Args:
      options: the job's Beam options.
      output: the pipeline's ``--output``.
      env: where modules, credentials and buckets are looked up (tests pass a fake).
    """
    env = env or GoogleCloud()
    missing = env.missing_modules()
    if missing:
        extra = f"the DataflowRunner needs the gcp extra ({', '.join(missing)} not installed)"
        raise PreflightError([f'{extra}: pip install "relbridge[gcp]"'])
    gcp = options.view_as(GoogleCloudOptions)
    setup = options.view_as(SetupOptions)
    problems = []
    if not gcp.region:
        problems.append("--region is not set: pass the Dataflow region, e.g. --region us-central1")
    if not (setup.setup_file or setup.extra_packages or _container_image(options)):
        problems.append(
            "the workers cannot import relbridge: pass --setup_file ./pyproject.toml (a checkout), "
            "--extra_package relbridge-*.whl, or a --sdk_container_image with relbridge installed"
        )
    temp = gcp.temp_location or gcp.staging_location
    locations = {}
    if not temp:
        problems.append("--temp_location is not set: pass a gs:// path, e.g. gs://BUCKET/tmp")
    elif not temp.startswith("gs://"):
        problems.append(f"--temp_location {temp} is not a gs:// path")
    else:
        locations["--temp_location"] = temp
    if not output.startswith("gs://"):
        problems.append(f"--output {output} is not a gs:// path: Dataflow workers cannot write it")
    else:
        locations["--output"] = output
    try:
        credentials, default_project = env.credentials()
    except Exception as error:  # google.auth.exceptions.DefaultCredentialsError and kin
        problems.append(
            f"no Google Cloud credentials: {_first_line(error)} "
            "(run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS)"
        )
        credentials = default_project = None
    project = gcp.project or default_project
    if not project:
        problems.append("--project is not set and the credentials name no project")
    if credentials is not None:
        for flag, path in locations.items():
            bucket, prefix = split_gcs(path)
            try:
                env.probe(credentials, project, bucket, prefix)
            except Exception as error:  # NotFound, Forbidden, a timeout: all stop the job
                problems.append(f"{flag} {path}: cannot list gs://{bucket}: {_first_line(error)}")
    if problems:
        raise PreflightError(problems)


def _container_image(options: PipelineOptions) -> str | None:
    worker = options.view_as(WorkerOptions)
    return getattr(worker, "sdk_container_image", None) or getattr(
        worker, "worker_harness_container_image", None
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
