"""The output folder of a run: lock, staging, refresh bookkeeping, whole-folder stats.

A reader of ``OUTPUT`` must at every moment see one complete output, the old
one or the new one, never a part of a run, two runs mixed, or nothing after a
crash. So a run never writes into ``OUTPUT`` while it runs:

1. `OutputFolder` takes a lock on ``OUTPUT`` (local paths: ``flock`` on the
   sibling file ``.<name>.relbridge.lock``, which names the holder's run id,
   pid and host; the kernel drops it when the holder dies, so a killed run
   leaves no stale lock). A second run into the same folder stops with exit
   status 2 naming the folder and the holder. It then removes what killed runs
   left: staging folders and ``beam-temp-*`` folders of older versions.
2. The pipeline writes into a staging folder beside ``OUTPUT``
   (``.<name>.staging-<run>``), invisible to readers of ``OUTPUT``.
3. `OutputFolder.publish` completes the staging folder (a refresh links the
   earlier shards and dead letters in; files a user put in ``OUTPUT`` are
   carried over), writes ``stats.json`` for the whole folder, with the run's
   own counts under ``"run"``, and ``COMPLETED``, and swaps it in with one
   atomic ``renameat2(RENAME_EXCHANGE)`` (Linux), then deletes the old folder.
   Where the exchange is missing, two renames leave ``OUTPUT`` absent (never
   partial) for an instant.

On gs:// and other object stores there is neither an atomic create (so no
lock: two runs into one gs:// folder are not detected) nor a folder rename: the
staged files are copied into ``OUTPUT`` one by one after ``COMPLETED`` was
removed, then the old files are deleted and ``COMPLETED`` written last. The
old output stays whole until the new one is complete, so a crash before the
copy leaves the old output; a reader that checks ``COMPLETED`` before and
after reading never takes a mix.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections import Counter
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from relbridge.pipeline.harvest import ALIASES
from relbridge.pipeline.ingest import open_text
from relbridge.pipeline.write_shards import COMPLETED, STATS, WriteConfig

logger = logging.getLogger(__name__)

CONFIG = "pipeline_config.json"
DATA_DIRS = ("shards", "dead_letter")  # relbridge owns these folders of OUTPUT
# report.html: the CLI's run report (relbridge.report), rewritten after each
# publish; an old one is not carried over, where it would describe another run.
OWN_ENTRIES = frozenset({*DATA_DIRS, STATS, COMPLETED, CONFIG, ALIASES, "report.html"})


def is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def _matches(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def data_files(folder: str) -> list[str]:
    """The shard and dead-letter files of an output folder."""
    return _matches(FileSystems.join(folder, "shards", "part-*.parquet")) + _matches(
        FileSystems.join(folder, "dead_letter", "part-*.jsonl")
    )


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
    for path in _matches(FileSystems.join(output, "shards", "*.parquet")):
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
    for path in _matches(FileSystems.join(output, "dead_letter", "*.jsonl")):
        with open_text(path) as letters:
            for text in letters:
                if text.strip():
                    letter = json.loads(text)
                    if not is_sentence_letter(letter):
                        lines.add((letter["source_file"], letter["line"]))
                    elif "corpus" in letter["record"]:
                        documents.add((letter["record"]["corpus"], letter["record"]["doc_id"]))
    return Handled(frozenset(ids), frozenset(lines), frozenset(documents))


class OutputLock:
    """An exclusive lock on a local output folder, held by one run at a time.

    ``flock`` on ``<parent>/.<name>.relbridge.lock``; the file says who holds
    it (run id, pid, host, start time) for the error message of the next run.
    The kernel releases it when the process dies, however it dies.
    """

    def __init__(self, output: str, run_id: str):
        parent, name = os.path.split(os.path.abspath(output))
        self.output = output
        self.path = os.path.join(parent, f".{name}.relbridge.lock")
        self.holder = {
            "run_id": run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._fd: int | None = None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read_holder(fd)
                os.close(fd)
                raise ValueError(
                    f"{self.output} is in use by another run (run {other.get('run_id', '?')}, "
                    f"pid {other.get('pid', '?')} on {other.get('host', '?')}, "
                    f"since {other.get('since', '?')}): wait for it to end or choose another "
                    "--output"
                ) from None
            try:  # the holder before us may have unlinked the file we opened
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.holder).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.unlink(self.path)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _exchange(a: str, b: str) -> bool:
    """Swaps two paths atomically (Linux ``renameat2``); False where unsupported."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a)


def _delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)


class OutputFolder:
    """One run's hold on its output folder: lock, staging folder, publishing.

    Use as a context manager around the pipeline run::

        with OutputFolder(cfg.write, overwrite=..., refresh=...) as out:
            run the pipeline into out.staging
            stats = out.publish(run_id, reproducible)

    Leaving the block without `publish` (an error) removes the staging folder
    and keeps the old output as it was.
    """

    def __init__(self, cfg: WriteConfig, overwrite: bool = False, refresh: bool = False):
        self.output = cfg.output.rstrip("/") or cfg.output
        self.local = is_local(self.output)
        if self.local:  # one lock and one swap however the folder is named (symlinks)
            self.output = os.path.realpath(self.output)
        self.run_id = cfg.run_id
        self.overwrite = overwrite
        self.refresh = refresh
        parent, name = FileSystems.split(self.output)
        self._parent, self._name = parent, name
        self._lock = OutputLock(self.output, cfg.run_id) if self.local else None
        self.staging = ""

    def __enter__(self) -> OutputFolder:
        if self._lock:
            self._lock.acquire()
        else:
            logger.warning(
                "%s: no lock on this filesystem; do not start two runs into one folder",
                self.output,
            )
        try:
            self._remove_leftovers()
            if not self.refresh:
                self._check_replaceable()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.staging and FileSystems.exists(self.staging):
                _delete([self.staging])
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock:
            self._lock.release()

    def stage(self, run_id: str) -> str:
        """The staging folder the pipeline writes into (created empty)."""
        self.run_id = run_id
        self.staging = FileSystems.join(self._parent, f".{self._name}.staging-{run_id}")
        FileSystems.mkdirs(self.staging)
        return self.staging

    def _remove_leftovers(self) -> None:
        """What killed runs left: staging folders, and beam-temp folders in OUTPUT."""
        staging, temp = f".{self._name}.staging-*", "beam-temp-*"
        if self.local:  # a local match lists files; the folders themselves go
            old = glob_dirs(self._parent, staging)
            for sub in DATA_DIRS:
                old += glob_dirs(os.path.join(self.output, sub), temp)
        else:  # an object store's match lists every object under the prefix
            old = _matches(FileSystems.join(self._parent, staging))
            for sub in DATA_DIRS:
                old += _matches(FileSystems.join(self.output, sub, temp))
        if old:
            logger.warning("removing %d leftover(s) of killed runs: %s", len(old), old[0])
            _delete(old)

    def _check_replaceable(self) -> None:
        """A full run replaces only its own earlier files unless ``overwrite``.

        Readers take every shard in the folder, so another run's files (other
        input or settings) are replaced only on request; the run stops here,
        before writing anything.
        """
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
        _delete([p for p in data_files(self.staging) if p not in written])
        if self.local:
            self._complete_staging()
            stats = folder_stats(self.staging, self.output, run_stats, old_stats, extra)
            _write_json(FileSystems.join(self.staging, STATS), stats)
            _write_json(FileSystems.join(self.staging, COMPLETED), None)
            self._swap_in()
        else:
            self._copy_in()
            stats = folder_stats(self.output, self.output, run_stats, old_stats, extra)
            _write_json(FileSystems.join(self.output, STATS), stats)
            _write_json(FileSystems.join(self.output, COMPLETED), None)
            _delete([self.staging])
        self.staging = ""
        return stats

    def _old_stats(self) -> dict:
        path = FileSystems.join(self.output, STATS)
        if not FileSystems.exists(path):
            return {}
        with FileSystems.open(path) as f:
            return json.loads(f.read())

    def _complete_staging(self) -> None:
        """Links what the staged output keeps from the old one into it (local)."""
        for sub in DATA_DIRS:
            os.makedirs(os.path.join(self.staging, sub), exist_ok=True)
            for leftover in glob_dirs(os.path.join(self.staging, sub), "beam-temp-*"):
                shutil.rmtree(leftover)
        if not os.path.isdir(self.output):
            return
        keep = data_files(self.output) if self.refresh else []
        for path in keep:
            rel = os.path.relpath(path, self.output)
            os.link(path, os.path.join(self.staging, rel))
        for entry in sorted(set(os.listdir(self.output)) - OWN_ENTRIES):
            src, dst = os.path.join(self.output, entry), os.path.join(self.staging, entry)
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
            else:
                os.link(src, dst, follow_symlinks=False)

    def _swap_in(self) -> None:
        if not os.path.exists(self.output):
            os.rename(self.staging, self.output)
            return
        if _exchange(self.staging, self.output):
            shutil.rmtree(self.staging)  # now the old output
            return
        replaced = os.path.join(self._parent, f".{self._name}.staging-replaced-{self.run_id}")
        os.rename(self.output, replaced)
        os.rename(self.staging, self.output)
        shutil.rmtree(replaced)

    def _copy_in(self) -> None:
        """Copies the staged files into OUTPUT (object stores: no folder rename)."""
        _delete([p for p in [FileSystems.join(self.output, COMPLETED)] if FileSystems.exists(p)])
        staged = data_files(self.staging) + [
            FileSystems.join(self.staging, name)
            for name in (CONFIG, ALIASES)
            if FileSystems.exists(FileSystems.join(self.staging, name))
        ]
        targets = [FileSystems.join(self.output, p[len(self.staging) + 1 :]) for p in staged]
        FileSystems.copy(staged, targets)
        if not self.refresh:
            _delete(sorted(set(data_files(self.output)) - set(targets)))


def _is_empty(path: str) -> bool:
    """A shard without rows, or a dead-letter file without letters."""
    if path.endswith(".jsonl"):
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes == 0
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        return pq.ParquetFile(f).metadata.num_rows == 0


def glob_dirs(folder: str, pattern: str) -> list[str]:
    """Local entries of ``folder`` matching ``pattern`` (folders included)."""
    import glob

    return sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))


def _write_json(path: str, content) -> None:
    with FileSystems.create(path) as f:
        if content is not None:
            f.write(json.dumps(content, indent=2, sort_keys=True, default=str).encode())


def count_folder(folder: str) -> tuple[int, int]:
    """Rows in ``folder/shards`` and letters in ``folder/dead_letter``, as a reader finds them."""
    import pyarrow.parquet as pq

    rows = 0
    for path in _matches(FileSystems.join(folder, "shards", "part-*.parquet")):
        with FileSystems.open(path) as f:
            rows += pq.ParquetFile(f).metadata.num_rows
    letters = 0
    for path in _matches(FileSystems.join(folder, "dead_letter", "part-*.jsonl")):
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
    _write_json(FileSystems.join(path, CONFIG), cfg.to_dict())
