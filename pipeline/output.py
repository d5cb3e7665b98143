"""The output folder of ``relbridge run``: its layout, refresh bookkeeping, whole-folder stats.

The lock, the staging folder beside ``OUTPUT``, the atomic swap and
``COMPLETED`` are `relbridge.pipeline.staging`'s, shared with ``kg build``
(its module docstring says what a reader of ``OUTPUT`` sees when). Here:
which files a run owns (`LAYOUT`: shards, dead letters, the resolved config,
harvested aliases), that a full run replaces only its own earlier files unless
``--overwrite`` (`OutputFolder.check`), and ``stats.json`` for the whole folder,
with the run's own counts under ``"run"`` (`folder_stats`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from relbridge.pipeline.harvest import ALIASES
from relbridge.pipeline.ingest import local_absolute, open_text
from relbridge.pipeline.staging import (
    STATS,
    Layout,
    StagedFolder,
    delete_paths,
    match_paths,
    write_json,
)
from relbridge.pipeline.write_shards import WriteConfig

logger = logging.getLogger(__name__)

CONFIG = "pipeline_config.json"
LAYOUT = Layout(
    data={"shards": "part-*.parquet", "dead_letter": "part-*.jsonl"},
    files=(CONFIG, ALIASES),
    kept_on_refresh=("shards", "dead_letter"),
    # the CLI's run report (relbridge.report), rewritten after each publish; an
    # old one is not carried over, where it would describe another run.
    extra=("report.html",),
)


def data_files(folder: str) -> list[str]:
    """The shard and dead-letter files of an output folder."""
    return LAYOUT.data_files(folder)


@dataclass(frozen=True)
class Handled:
    """Input that earlier runs into the same output already handled (refresh mode).

    A refresh processes only new input: pairs already in a shard, and input
    lines already in a dead letter, are counted as skipped instead of being
    processed (and dead-lettered) again on every scheduled run.

    Attributes:
      pair_ids: pair ids of the shard rows.
      lines: ``(source_file, line)`` of the dead letters of whole input lines; a
        line that could not even be parsed has no pair id.
      documents: ``(corpus, doc_id)`` of the document pairs whose sentences are
        in a shard row or a sentence dead letter (``run --documents``). A
        document is skipped whole, before it is embedded: its id is stable (the
        manifest's, or a hash of both texts when a JSONL line has none), while
        its sentence pairs exist only after the costly alignment.
    """

    pair_ids: frozenset[str] = frozenset()
    lines: frozenset[tuple[str, int]] = frozenset()
    documents: frozenset[tuple[str, str]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.pair_ids or self.lines or self.documents)

    def covers(self, record) -> bool:
        """Whether a `BitextRecord` was handled before."""
        return record.pair_id in self.pair_ids or (record.source_file, record.line) in self.lines

    def covers_letter(self, letter: dict) -> bool:
        """Whether an input line's dead letter was written before.

        A sentence's dead letter (`is_sentence_letter`) names its document's
        manifest line, which a later manifest may give to another document: it
        is never skipped here; its document was skipped before alignment or is new.
        """
        line = (letter["source_file"], letter["line"])
        return not is_sentence_letter(letter) and line in self.lines

    def other_corpora(self, name: str) -> set[str]:
        """The corpus names other than ``name`` in the shard rows' pair ids (``<corpus>:<id>``)."""
        mine = f"{name}:"
        return {p.split(":", 1)[0] for p in self.pair_ids if not p.startswith(mine)}

    def fingerprint(self) -> str:
        keys = sorted(self.pair_ids) + [f"{f}\x1f{n}" for f, n in sorted(self.lines)]
        return hashlib.sha1("\n".join(keys).encode()).hexdigest()

    def refresh_run_id(self, run_id: str) -> str:
        """A refresh's run id: its files go beside the old ones, never over them."""
        return hashlib.sha1((run_id + self.fingerprint()).encode()).hexdigest()[:10]


WHERE_AND_HOW = {
    "": ("write", "overwrite", "skip_existing"),
    "ingest": ("corpus", "corpus_format", "corpus_name"),
    "documents": ("documents", "corpus_name"),
    "label": ("index", "index_cache"),  # the KB's cached index: the kb path stays compared
    "align": ("num_threads", "compile"),
}
"""Settings a refresh may change: which input and output, and how to compute the same result."""


def refresh_conflicts(earlier: dict, config: dict) -> list[str]:
    """The settings (dotted names) in which a refresh's config differs from the output's.

    Input, output and compute settings (`WHERE_AND_HOW`) may differ, and a
    setting one of the two configs lacks (an older or newer version) is not
    counted; any other difference would put rows made two ways in one folder.
    """
    return [
        name
        for key in sorted(earlier.keys() & config.keys() - set(WHERE_AND_HOW[""]))
        for name in _differences(earlier[key], config[key], key, WHERE_AND_HOW.get(key, ()))
    ]


def _differences(a, b, name: str, skip: tuple[str, ...] = ()) -> list[str]:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [name]
    shared = sorted(a.keys() & b.keys() - set(skip))
    return [d for k in shared for d in _differences(a[k], b[k], f"{name}.{k}")]


def check_refresh(output: str, config: dict) -> None:
    """Refuses a refresh (``--skip-existing``) of an output made with other settings."""
    path = FileSystems.join(output, CONFIG)
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as f:
        try:
            earlier = json.loads(f.read())
        except ValueError:
            raise ValueError(f"{path}: not JSON; the output's settings are unknown") from None
    conflicts = refresh_conflicts(earlier, json.loads(json.dumps(config, default=str)))
    if conflicts:
        raise ValueError(
            f"{output} was made with other settings ({', '.join(conflicts[:4])}"
            f"{', ...' if len(conflicts) > 4 else ''}): --skip-existing would mix rows made "
            "two ways; rerun with those settings, or with --overwrite instead, or another --output"
        )


def is_sentence_letter(letter: dict) -> bool:
    """Whether a dead letter holds sentences of an aligned document (not a whole input line).

    Its record names the sentence indices: an `AlignSentences` unit, or a
    sentence pair a later stage rejected (a line-aligned `BitextRecord` has them
    as null).
    """
    record = letter.get("record")
    return isinstance(record, dict) and record.get("src_sentence_ids") is not None


def existing_outputs(output: str) -> Handled:
    """What earlier runs wrote to ``output``: pair ids, dead-letter lines, aligned documents."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    documents = set()  # (corpus, doc_id)
    for path in match_paths(FileSystems.join(output, "shards", "*.parquet")):
        with FileSystems.open(path) as f:
            parquet = pq.ParquetFile(f)
            names = set(parquet.schema_arrow.names)
            columns = ["pair_id"] + [c for c in ("corpus", "doc_id") if c in names]
            table = parquet.read(columns=columns).to_pydict()
        ids.extend(table["pair_id"])
        if "doc_id" in table:
            pairs = zip(table["corpus"], table["doc_id"])
            documents.update((c, d) for c, d in pairs if d is not None)
    lines = set()  # dead letters of whole input lines: (source_file, line)
    for path in match_paths(FileSystems.join(output, "dead_letter", "*.jsonl")):
        with open_text(path) as letters:
            for text in letters:
                if text.strip():
                    letter = json.loads(text)
                    if not is_sentence_letter(letter):  # older runs kept relative paths
                        lines.add((local_absolute(letter["source_file"]), letter["line"]))
                    elif "corpus" in letter["record"]:
                        documents.add((letter["record"]["corpus"], letter["record"]["doc_id"]))
    return Handled(frozenset(ids), frozenset(lines), frozenset(documents))


class OutputFolder(StagedFolder):
    """One ``relbridge run``'s hold on its output folder: a `StagedFolder` with run's `LAYOUT`.

    Use as a context manager around the pipeline run::

        with OutputFolder(cfg.write, overwrite=..., refresh=...) as out:
            run the pipeline into out.stage(run_id)
            stats = out.publish(extra)

    Leaving the block without `publish` (an error) removes the staging folder
    and keeps the old output as it was.
    """

    def __init__(self, cfg: WriteConfig, overwrite: bool = False, refresh: bool = False):
        super().__init__(cfg.output, cfg.run_id, LAYOUT, refresh)
        self.overwrite = overwrite

    def check(self) -> None:
        """A full run replaces only its own earlier files unless ``overwrite``.

        Readers take every shard in the folder, so another run's files (other
        input or settings) are replaced only on request; the run stops here,
        before writing anything.
        """
        if self.refresh:
            return
        mine = f"part-{self.run_id}-"
        others = [
            p for p in data_files(self.output) if not FileSystems.split(p)[1].startswith(mine)
        ]
        if others and not self.overwrite:
            raise ValueError(
                f"{self.output} holds {len(others)} shard/dead-letter file(s) of another run "
                f"(other input or settings), e.g. {others[0]}: pass --overwrite to replace them, "
                "--skip-existing to add only new input beside them, or choose another --output"
            )
        if others:
            logger.warning(
                "--overwrite: the %d file(s) of earlier runs in %s go when this run is complete",
                len(others),
                self.output,
            )

    def publish(self, extra: dict | None = None) -> dict:
        """Completes the staged output and makes it the output; returns ``stats.json``.

        Args:
          extra: more top-level fields for ``stats.json``.
        """
        with FileSystems.open(FileSystems.join(self.staging, STATS)) as f:
            run_stats = json.loads(f.read())
        old_stats = self._old_stats() if self.refresh else {}
        # only the files the pipeline reported: a retried worker may have left others
        written = set(run_stats["shard_files"] + run_stats["dead_letter_files"])
        if self.refresh:  # a refresh adds no empty files beside the old ones
            written = {p for p in written if not _is_empty(p)}
        delete_paths([p for p in data_files(self.staging) if p not in written])
        return super().publish(
            lambda folder, output: folder_stats(folder, output, run_stats, old_stats, extra)
        )

    def _old_stats(self) -> dict:
        path = FileSystems.join(self.output, STATS)
        if not FileSystems.exists(path):
            return {}
        with FileSystems.open(path) as f:
            return json.loads(f.read())


def _is_empty(path: str) -> bool:
    """A shard without rows, or a dead-letter file without letters."""
    if path.endswith(".jsonl"):
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes == 0
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        return pq.ParquetFile(f).metadata.num_rows == 0


def count_folder(folder: str) -> tuple[int, int]:
    """Rows in ``folder/shards`` and letters in ``folder/dead_letter``, as a reader finds them."""
    import pyarrow.parquet as pq

    rows = 0
    for path in match_paths(FileSystems.join(folder, "shards", "part-*.parquet")):
        with FileSystems.open(path) as f:
            rows += pq.ParquetFile(f).metadata.num_rows
    letters = 0
    for path in match_paths(FileSystems.join(folder, "dead_letter", "part-*.jsonl")):
        with open_text(path) as lines:
            letters += sum(1 for text in lines if text.strip())
    return rows, letters


def folder_stats(
    folder: str, output: str, run_stats: dict, old_stats: dict, extra: dict | None = None
) -> dict:
    """``stats.json`` of a whole output folder, with the run's own counts under ``"run"``.

    The totals are what a reader finds: rows and dead letters are counted in
    the files; the input records are the earlier folder's plus this run's new
    (not skipped) ones, so ``balanced`` says every input line ends in exactly
    one shard row or dead letter. The per-kind ``counts`` of a refresh add to
    the earlier folder's.

    Args:
      folder: where the files are now (the staging folder, locally).
      output: where readers find them (file names in ``stats.json``).
      run_stats: what the pipeline wrote for this run alone.
      old_stats: the earlier ``stats.json`` of a refresh ({} for a full run).
      extra: more top-level fields.
    """
    rows, letters = count_folder(folder)
    skipped = run_stats.get("skipped_existing", 0)
    new_inputs = run_stats["input_records"] - skipped
    if old_stats:
        old_inputs = old_stats.get("input_records", 0)
        counts = Counter(old_stats.get("counts", {}))
    else:
        counts = Counter()
        old_inputs = rows + letters - run_stats["rows"] - run_stats["dead_letters"]
    counts.update({k: v for k, v in run_stats["counts"].items() if k != "skipped_existing"})
    rename = lambda p: FileSystems.join(output, p[len(folder) + 1 :])
    files = data_files(folder)
    stats = {
        "schema_version": run_stats["schema_version"],
        "run_id": run_stats["run_id"],
        "input_records": old_inputs + new_inputs,
        "rows": rows,
        "dead_letters": letters,
        "counts": dict(sorted(counts.items())),
        "shard_files": [rename(p) for p in files if p.endswith(".parquet")],
        "dead_letter_files": [rename(p) for p in files if p.endswith(".jsonl")],
        "run": {k: v for k, v in run_stats.items() if not k.endswith("_files")},
        **(extra or {}),
    }
    stats["balanced"] = (
        stats["input_records"] == rows + letters
        and counts.get("rows", 0) == rows
        and bool(run_stats.get("balanced"))
    )
    if not stats["balanced"]:
        logger.error("record counts of %s do not add up: %s", output, stats)
    return stats


def warn_if_refresh_missed(done: Handled, corpus_name: str, stats: dict) -> None:
    """Warns when a refresh skipped nothing in a folder of another corpus name's rows.

    A pair id starts with the corpus name, by default the corpus file's name:
    the grown corpus arriving under a new file name gets new ids, and every
    pair it shares with the folder is added a second time.
    """
    others = done.other_corpora(corpus_name)
    if done and others and not stats["run"].get("skipped_existing"):
        logger.warning(
            "--skip-existing skipped nothing: pair ids start with the corpus name, and the "
            "folder's rows are of corpus %s, this run's of %r; if this is the same corpus under "
            "a new file name, rerun with --corpus-name %s (pairs in both are now twice in %s)",
            ", ".join(sorted(others)),
            corpus_name,
            sorted(others)[0],
            stats["shard_files"][0].rsplit("/shards/", 1)[0] if stats["shard_files"] else "",
        )


def write_config(path: str, cfg) -> None:
    """Saves the resolved config (`PipelineConfig`) as ``path/pipeline_config.json``."""
    if not FileSystems.exists(path):
        FileSystems.mkdirs(path)
    write_json(FileSystems.join(path, CONFIG), cfg.to_dict())
