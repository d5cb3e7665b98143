"""Staged output folders: a lock, a staging folder beside the output, an atomic swap, COMPLETED.

The one implementation of the output safety of ``relbridge run`` (see
`relbridge.pipeline.output`) and ``relbridge kg build`` (`relbridge.kg.build`),
whose store swap ``relbridge kg load`` (`relbridge.kg.store`) shares too. A
reader of ``OUTPUT`` must at every moment see one complete output, the old one
or the new one, never a part of a run, two runs mixed, or nothing after a
crash. So a run never writes into ``OUTPUT`` while it runs:

1. `StagedFolder` takes a lock on ``OUTPUT`` (`OutputLock`: on local paths
   ``flock`` on the sibling file ``.<name>.relbridge.lock``, which names the
   holder's run id, pid and host; the kernel drops it when the holder dies, so
   a killed run leaves no stale lock). A second run into the same folder stops
   with a `ValueError` (exit status 2) naming the folder and the holder. It
   then removes what killed runs left: staging folders beside ``OUTPUT`` and
   ``beam-temp-*`` folders in its data folders.
2. The job writes into a staging folder beside ``OUTPUT``
   (``.<name>.staging-<run>``), invisible to readers of ``OUTPUT``.
3. `StagedFolder.publish` completes the staging folder (a refresh links the
   earlier files of the folders it adds to; files a user put in ``OUTPUT`` are
   carried over), writes ``stats.json`` and ``COMPLETED``, and swaps it in with
   one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux, `swap_in`), then deletes
   the old folder. Where the exchange is missing, two renames leave ``OUTPUT``
   absent (never partial) for an instant.

On gs:// and other object stores there is neither an atomic create (so no
lock: two runs into one gs:// folder are not detected) nor a folder rename: the
staged files are copied into ``OUTPUT`` one by one after ``COMPLETED`` was
removed, then the old files are deleted and ``COMPLETED`` written last. The
old output stays whole until the new one is complete, so a crash before the
copy leaves the old output; a reader that checks ``COMPLETED`` before and
after reading never takes a mix.

What a command owns in its folder is its `Layout`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from relbridge.runtime.files import OutputLock, swap_in

logger = logging.getLogger(__name__)

COMPLETED = "COMPLETED"
STATS = "stats.json"


def is_local(path: str) -> bool:
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def match_paths(pattern: str) -> list[str]:
    """The sorted paths a Beam filesystem glob matches."""
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def delete_paths(paths: list[str]) -> None:
    """Deletes files and folders (with what they hold) on any filesystem.

    Local paths are removed directly: Beam's local delete matches each path as a
    glob, so it fails on a name with ``[`` in it.
    """
    remote = [p for p in paths if not is_local(p)]
    for path in paths:
        if not is_local(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if remote:
        FileSystems.delete(remote)


def glob_dirs(folder: str, pattern: str) -> list[str]:
    """Local entries of ``folder`` matching ``pattern`` (folders included)."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))


def write_json(path: str, content) -> None:
    """Writes ``content`` as JSON to ``path`` (any filesystem); None: an empty file."""
    with FileSystems.create(path) as f:
        if content is not None:
            f.write(json.dumps(content, indent=2, sort_keys=True, default=str).encode())


@dataclass(frozen=True)
class Layout:
    """What a command owns in its output folder; every other entry is the user's and stays.

    Attributes:
      data: data folder -> glob of its data files, e.g. ``{"shards": "part-*.parquet"}``.
      files: top-level files a run writes into its staging folder (its resolved config).
      kept_on_refresh: the data folders whose earlier files a refresh keeps
        (it adds to them); the other data folders are rewritten by every run.
      extra: more top-level entries a run owns but does not stage (a report
        written after publishing, what older versions wrote): dropped, never
        carried over.
    """

    data: dict[str, str]
    files: tuple[str, ...] = ()
    kept_on_refresh: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    @property
    def own_entries(self) -> frozenset[str]:
        return frozenset({*self.data, *self.files, *self.extra, STATS, COMPLETED})

    def data_files(self, folder: str, only: tuple[str, ...] | None = None) -> list[str]:
        """The data files in ``folder`` (of the data folders ``only``, default all)."""
        found = []
        for sub, pattern in self.data.items():
            if only is None or sub in only:
                found += match_paths(FileSystems.join(folder, sub, pattern))
        return found


def staging_path(output: str, run_id: str) -> str:
    """The staging folder of a run into ``output``: beside it, hidden from its readers."""
    parent, name = FileSystems.split(output.rstrip("/") or output)
    return FileSystems.join(parent, f".{name}.staging-{run_id}")


def remove_leftovers(output: str, data_dirs=()) -> None:
    """What killed runs into ``output`` left: staging folders, and beam-temp folders in OUTPUT."""
    parent, name = FileSystems.split(output)
    # the name escaped: an output "run[1]" must not match (and delete) the staging of "run1"
    staging, temp = f".{glob.escape(name)}.staging-*", "beam-temp-*"
    if is_local(output):  # a local match lists files; the folders themselves go
        old = glob_dirs(parent, staging)
        for sub in data_dirs:
            old += glob_dirs(os.path.join(output, sub), temp)
    else:  # an object store's match lists every object under the prefix
        old = match_paths(FileSystems.join(parent, staging))
        for sub in data_dirs:
            old += match_paths(FileSystems.join(output, sub, temp))
    if old:
        logger.warning("removing %d leftover(s) of killed runs: %s", len(old), old[0])
        delete_paths(old)


class StagedFolder:
    """One run's hold on its output folder: lock, staging folder, publishing.

    Use as a context manager around the job::

        with StagedFolder(output, run_id, layout, refresh=...) as out:
            run the job into out.stage(run_id)
            stats = out.publish(stats_of)

    Leaving the block without `publish` (an error) removes the staging folder
    and keeps the old output as it was. Subclasses check in `check` (called
    under the lock, before anything is written) whether the run may replace
    what the folder holds.
    """

    def __init__(self, output: str, run_id: str, layout: Layout, refresh: bool = False):
        self.output = output.rstrip("/") or output
        self.local = is_local(self.output)
        if self.local:  # one lock and one swap however the folder is named (symlinks)
            self.output = os.path.realpath(self.output)
        self.run_id = run_id
        self.layout = layout
        self.refresh = refresh
        self._lock = OutputLock(self.output, run_id) if self.local else None
        self.staging = ""

    def __enter__(self) -> StagedFolder:
        if self._lock:
            self._lock.acquire()
        else:
            logger.warning(
                "%s: no lock on this filesystem; do not start two runs into one folder",
                self.output,
            )
        try:
            if self.local and os.path.lexists(self.output) and not os.path.isdir(self.output):
                # the swap would put the folder in its place and delete it (a typo'd corpus)
                raise ValueError(
                    f"{self.output} exists and is not a folder: choose another {self._lock.flag}"
                )
            remove_leftovers(self.output, tuple(self.layout.data))
            self.check()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.staging and FileSystems.exists(self.staging):
                delete_paths([self.staging])
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._lock:
            self._lock.release()

    def check(self) -> None:
        """Raises `ValueError` where this run may not replace what the folder holds."""

    def stage(self, run_id: str) -> str:
        """The staging folder the job writes into (created empty)."""
        self.run_id = run_id
        self.staging = staging_path(self.output, run_id)
        FileSystems.mkdirs(self.staging)
        return self.staging

    def publish(self, stats_of: Callable[[str, str], dict]) -> dict:
        """Completes the staged output and makes it the output; returns ``stats.json``.

        Args:
          stats_of: ``(folder, output) -> stats``: the ``stats.json`` of the
            completed files, which lie in ``folder`` and are read in ``output``.
        """
        if self.local:
            self._complete_staging()
            stats = stats_of(self.staging, self.output)
            write_json(FileSystems.join(self.staging, STATS), stats)
            write_json(FileSystems.join(self.staging, COMPLETED), None)
            swap_in(self.staging, self.output)
        else:
            self._copy_in()
            stats = stats_of(self.output, self.output)
            write_json(FileSystems.join(self.output, STATS), stats)
            write_json(FileSystems.join(self.output, COMPLETED), None)
            delete_paths([self.staging])
        self.staging = ""
        return stats

    def _complete_staging(self) -> None:
        """Links what the staged output keeps from the old one into it (local)."""
        for sub in self.layout.data:
            os.makedirs(os.path.join(self.staging, sub), exist_ok=True)
            for leftover in glob_dirs(os.path.join(self.staging, sub), "beam-temp-*"):
                shutil.rmtree(leftover)
        if not os.path.isdir(self.output):
            return
        if self.refresh:
            for path in self.layout.data_files(self.output, self.layout.kept_on_refresh):
                staged = os.path.join(self.staging, os.path.relpath(path, self.output))
                if not os.path.exists(staged):  # else this run's file of that name replaces it,
                    os.link(path, staged)  # as `_copy_in` does on object stores
        for entry in sorted(set(os.listdir(self.output)) - self.layout.own_entries):
            src, dst = os.path.join(self.output, entry), os.path.join(self.staging, entry)
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
            else:
                os.link(src, dst, follow_symlinks=False)

    def _copy_in(self) -> None:
        """Copies the staged files into OUTPUT (object stores: no folder rename)."""
        delete_paths(
            [p for p in [FileSystems.join(self.output, COMPLETED)] if FileSystems.exists(p)]
        )
        staged = self.layout.data_files(self.staging) + [
            FileSystems.join(self.staging, name)
            for name in self.layout.files
            if FileSystems.exists(FileSystems.join(self.staging, name))
        ]
        targets = [FileSystems.join(self.output, p[len(self.staging) + 1 :]) for p in staged]
        FileSystems.copy(staged, targets)
        kept = self.layout.kept_on_refresh if self.refresh else ()
        rewritten = tuple(d for d in self.layout.data if d not in kept)
        delete_paths(sorted(set(self.layout.data_files(self.output, rewritten)) - set(targets)))
