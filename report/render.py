"""`write_report`: one self-contained HTML file from whatever a run left behind.

    write_report("out/run1/report.html", title="relbridge run", pipeline="out/run1")
    write_report("out/demo/report.html", pipeline=..., training=..., evaluations={...})

Every section is optional and appears when its data exists: the pipeline's
funnel, dead letters, projection and label figures and sample pairs (from a
pipeline output directory), training curves (a training directory),
precision/recall curves, per-relation and per-language tables and a confusion
matrix (``evaluate`` results made with ``details=True``), and any further
named score tables (projection against gold, raw-text extraction). Figures are
PNGs embedded as data URIs, so the file can be mailed or opened anywhere; the
HTML comes from a Jinja2 template with autoescaping.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import Any

import jinja2

from relbridge.report import collect, figures

logger = logging.getLogger(__name__)

REPORT = "report.html"
METRICS = (  # (key, heading) of the per-language table
    ("pairs", "pairs"),
    ("decisions", "decisions"),
    ("micro_p", "micro P"),
    ("micro_r", "micro R"),
    ("micro_f1", "micro F1"),
    ("macro_f1", "macro F1"),
    ("auc", "PR AUC"),
    ("relx_f1", "RELX F1"),
    ("accuracy", "accuracy"),
)


def _figure(png: bytes, alt: str) -> dict[str, str]:
    return {"src": figures.data_uri(png), "alt": alt}


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf) rows."""
    if isinstance(value, Mapping):
        rows = []
        for k, v in value.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, float):
        value = round(value, 3)
    return [(prefix, value)]


def pipeline_section(output: str) -> dict[str, Any] | None:
    data = collect.read_pipeline(output)
    if data is None:
        return None
    stats = data["stats"]
    section = {
        "output": output,
        "balanced": stats.get("balanced"),
        "funnel": data["funnel"],
        "dead_letters": data["dead_letters"],
        "projection": data["projection"],
        "figures": [
            _figure(
                figures.bar_chart(data["funnel"], "Record funnel", "count"),
                "record funnel: input records, dead letters, rows, mentions, relations, projected",
            )
        ],
        "samples": [],
    }
    shards = data["shards"]
    if shards:
        section["rows_read"] = shards["rows_read"]
        if shards["confidences"]:
            section["figures"].append(
                _figure(
                    figures.confidence_histogram(shards["confidences"], data["min_confidence"]),
                    "histogram of projected-mention confidences",
                )
            )
        if shards["labels"]:
            section["figures"].append(
                _figure(
                    figures.labels_per_language(shards["labels"]),
                    "relation label distribution per language",
                )
            )
        section["samples"] = [
            _figure(figures.alignment_figure(row), f"sentence pair {row['pair_id']} with alignment")
            for row in shards["samples"]
        ]
    return section


def training_section(output: str) -> dict[str, Any] | None:
    data = collect.read_training(output)
    if data is None:
        return None
    keep = ("epochs_run", "global_step", "train_pairs", "dev_pairs", "train_bags", "relations",
            "trainable_parameters", "examples_per_s", "wall_s", "device", "final_loss")  # fmt: skip
    section = {
        "output": output,
        "facts": [(k, data.get(k)) for k in keep if data.get(k) is not None],
        "best_dev": _flatten(
            {k: v for k, v in (data.get("best_dev") or {}).items() if k != "diagnostics"}
        ),
        "languages": data.get("languages", {}),
        "figures": [],
    }
    if data.get("history"):
        section["figures"].append(
            _figure(
                figures.training_curves(data["history"], data.get("dev_metric", "micro_f1")),
                "training loss and dev metric per step",
            )
        )
    return section


def _pr_entry(metrics: Mapping[str, Any]) -> tuple[list, list, float]:
    curve = metrics["diagnostics"]["pr_curve"]
    return curve["recall"], curve["precision"], metrics.get("auc", 0.0)


def pr_figure_of(result: Mapping[str, Any], title: str) -> bytes:
    """PR curves of an ``evaluate`` result made with ``details=True``: all, and per language."""
    overall = result.get("overall", result)
    per_language = result.get("per_language", {})
    curves = {lang: _pr_entry(m) for lang, m in per_language.items() if "diagnostics" in m}
    if len(curves) != 1:  # one language: its curve is the overall one
        curves = {"all": _pr_entry(overall), **curves}
    return figures.pr_curves(curves, title)


def evaluation_section(name: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """Tables and figures of one ``evaluate`` result (figures need ``details=True``)."""
    overall = result.get("overall", result)
    per_language = result.get("per_language", {})
    rows = [("all", overall)] + (list(per_language.items()) if len(per_language) > 1 else [])
    columns = [(k, h) for k, h in METRICS if any(k in m for _, m in rows)]
    section: dict[str, Any] = {
        "name": name,
        "columns": [h for _, h in columns],
        "rows": [(lang, [m.get(k) for k, _ in columns]) for lang, m in rows],
        "tagging": [(lang, m["tagging"]) for lang, m in rows if isinstance(m.get("tagging"), dict)],
        "figures": [],
        "per_relation": [],
    }
    if "diagnostics" not in overall:
        return section
    section["figures"].append(
        _figure(pr_figure_of(result, f"Held-out precision/recall: {name}"), f"PR curves of {name}")
    )
    diag = overall["diagnostics"]
    section["per_relation"] = sorted(
        diag["per_relation"].items(), key=lambda kv: (-kv[1]["support"], kv[0])
    )
    confusion = diag["confusion"]
    if len(confusion["labels"]) > 1:
        section["figures"].append(
            _figure(
                figures.confusion_matrix(
                    confusion["labels"], confusion["matrix"], f"Confusion matrix: {name}"
                ),
                f"confusion matrix of {name}",
            )
        )
    return section


def render(
    title: str,
    pipeline: str | None = None,
    training: str | None = None,
    evaluations: Mapping[str, Mapping[str, Any]] | None = None,
    scores: Mapping[str, Any] | None = None,
) -> str:
    """The report's HTML; see `write_report` for the arguments."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("relbridge.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    context = {
        "title": title,
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "pipeline": pipeline_section(pipeline) if pipeline else None,
        "training": training_section(training) if training else None,
        "evaluations": [evaluation_section(n, r) for n, r in (evaluations or {}).items()],
        "scores": [(name, _flatten(value)) for name, value in (scores or {}).items() if value],
    }
    return env.get_template("report.html.j2").render(**context)


def write_report(
    path: str,
    title: str = "relbridge run report",
    pipeline: str | None = None,
    training: str | None = None,
    evaluations: Mapping[str, Mapping[str, Any]] | None = None,
    scores: Mapping[str, Any] | None = None,
) -> str:
    """Writes the report to ``path`` (local or gs://) whole or not at all; returns ``path``.

    Args:
      path: the HTML file to write.
      title: the page title.
      pipeline: a `relbridge run` output directory (``stats.json``, shards, dead letters).
      training: a `relbridge train` output directory (``train_stats.json``).
      evaluations: name -> an ``evaluate`` result; ``details=True`` adds its figures.
      scores: name -> a (nested) dict of further scores, shown as tables.
    """
    html = render(title, pipeline, training, evaluations, scores).encode("utf-8")
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as f:  # GCS makes the object visible only on close
            f.write(html)
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(html)
        os.replace(tmp, path)  # a reader never sees half a report
    except BaseException:
        if os.path.exists(tmp):  # a full disk or a folder at ``path``: no stray partial copy
            os.remove(tmp)
        raise
    logger.info("report: %s", path)
    return path


def try_write_report(path: str, **kwargs: Any) -> str | None:
    """`write_report` for commands whose real work is done: a failure is a warning, not an error."""
    try:
        return write_report(path, **kwargs)
    except Exception as error:  # a report must never fail the run it describes
        logger.warning("report not written (%s: %s)", type(error).__name__, error)
        logger.debug("traceback", exc_info=True)
        return None
