"""What a run left on disk, read for the report: plain dicts and lists, no drawing.

* a pipeline output directory: ``stats.json`` (the record funnel and the
  projection counts), ``dead_letter/*.jsonl`` (reasons) and ``shards/*.parquet``
  (projection confidences, relation labels per language, sample pairs);
* a training directory: ``train_stats.json`` (dev history, best dev metrics).

Only what exists is read; a missing file leaves its section out. Shards are
read up to ``max_rows`` rows, so a report of a large run stays quick and small.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from typing import Any

from relbridge.data_specs.relations import NA

# A dead letter's reason often starts with its own FILE:LINE, which would make
# every reason unique; the report groups by what is left.
_WHERE = re.compile(r"^\S+:\d+: ")


def _read_text(path: str) -> str | None:
    """A file's text through Beam's filesystems (local or gs://), None when absent."""
    if "://" not in path:
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def _match(pattern: str) -> list[str]:
    if "://" not in pattern:
        import glob

        return sorted(glob.glob(pattern))
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def funnel(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """The record funnel: input -> rows / dead letters -> mentions -> relations -> projected."""
    counts = stats.get("counts", {})
    steps = [("input records", stats.get("input_records", 0))]
    if stats.get("skipped_existing"):
        steps.append(("skipped (already in the output)", stats["skipped_existing"]))
    for key, n in sorted(counts.items()):
        if key.startswith("dead_letter:"):
            steps.append((f"dead letters: {key.split(':', 1)[1]}", n))
    steps += [
        ("shard rows", stats.get("rows", 0)),
        ("source mentions", counts.get("src_mentions", 0)),
        ("relation instances (KB)", counts.get("relation_instances", 0)),
        ("NA instances", counts.get("na_instances", 0)),
        ("projected mentions", counts.get("tgt_mentions", 0)),
        ("projected relation instances", counts.get("projected_relation_instances", 0)),
    ]
    return steps


def projection_counts(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """``projection:*`` counts of ``stats.json``: projected, repaired, dropped and why."""
    counts = stats.get("counts", {})
    return [
        (k.split(":", 1)[1], v) for k, v in sorted(counts.items()) if k.startswith("projection:")
    ]


def dead_letter_reasons(output: str, limit: int = 20) -> list[dict[str, Any]]:
    """Dead letters grouped by stage and reason, most frequent first, with one example each."""
    groups: dict[tuple[str, str], list] = {}
    for path in _match(os.path.join(output, "dead_letter", "*.jsonl")):
        for line in (_read_text(path) or "").splitlines():
            if not line.strip():
                continue
            letter = json.loads(line)
            reason = _WHERE.sub("", str(letter.get("reason", "")))[:160]
            group = groups.setdefault((letter.get("stage", "?"), reason), [0, None])
            group[0] += 1
            group[1] = group[1] or f"{letter.get('source_file')}:{letter.get('line')}"
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][0])[:limit]
    return [
        {"stage": stage, "reason": reason, "count": n, "example": where}
        for (stage, reason), (n, where) in ranked
    ]


def shard_summary(
    output: str, max_rows: int = 200_000, n_samples: int = 3
) -> dict[str, Any] | None:
    """Confidences, labels per language and sample pairs from the first ``max_rows`` shard rows.

    Returns:
      ``{"rows_read", "confidences": [...], "labels": {lang: Counter},
      "samples": [row dicts]}``, or None when there are no shards. Samples are
      short pairs with a projected relation (else with a projected mention).
    """
    import pyarrow.parquet as pq

    files = _match(os.path.join(output, "shards", "*.parquet"))
    if not files:
        return None
    confidences: list[float] = []
    labels: dict[str, Counter] = defaultdict(Counter)
    candidates: list[tuple[int, dict]] = []
    rows_read = 0
    for path in files:
        if rows_read >= max_rows:
            break
        if "://" in path:
            from apache_beam.io.filesystems import FileSystems

            table = pq.read_table(FileSystems.open(path))
        else:
            table = pq.read_table(path)
        for row in table.slice(0, max_rows - rows_read).to_pylist():
            rows_read += 1
            confidences += [m["confidence"] for m in row["tgt_mentions"]]
            for rel in row["relations"]:
                if rel["label"] == NA:
                    continue
                labels[row["src_lang"]][rel["label"]] += 1
                if rel["projected"]:
                    labels[row["tgt_lang"]][rel["label"]] += 1
            projected = any(r["projected"] and r["label"] != NA for r in row["relations"])
            chars = max(len(" ".join(row["src_tokens"])), len(" ".join(row["tgt_tokens"])))
            if row["tgt_mentions"] and chars <= 150 and len(candidates) < 200:
                candidates.append((0 if projected else 1, row))
    candidates.sort(key=lambda c: (c[0], c[1]["pair_id"]))
    return {
        "rows_read": rows_read,
        "confidences": confidences,
        "labels": {lang: dict(c.most_common()) for lang, c in sorted(labels.items())},
        "samples": [row for _, row in candidates[:n_samples]],
    }


def read_pipeline(output: str) -> dict[str, Any] | None:
    """Everything the report shows about a pipeline output directory, or None without stats."""
    text = _read_text(os.path.join(output, "stats.json"))
    if text is None:
        return None
    stats = json.loads(text)
    config = json.loads(_read_text(os.path.join(output, "pipeline_config.json")) or "{}")
    return {
        "output": output,
        "stats": stats,
        "min_confidence": config.get("project", {}).get("min_confidence"),
        "funnel": funnel(stats),
        "projection": projection_counts(stats),
        "dead_letters": dead_letter_reasons(output),
        "shards": shard_summary(output),
    }


def read_training(output: str) -> dict[str, Any] | None:
    """``train_stats.json`` of a training directory (history and best dev), or None."""
    text = _read_text(os.path.join(output, "train_stats.json"))
    return None if text is None else {"output": output, **json.loads(text)}
