"""Local outputs that are never seen partial: one file (`atomic_file`), a folder swapped in
whole (`swap_in`), and a lock that keeps a second run out of an output (`OutputLock`).

`relbridge.pipeline.staging` builds ``run``'s and ``kg build``'s staged outputs on
these; ``train`` locks its output folder and swaps its model folder in with them.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


@contextmanager
def atomic_file(path: str, mode: str = "w", **open_args) -> Iterator[IO]:
    """``open(path, mode)`` for writing, where ``path`` appears only when the block ends well.

    The file is written under a temporary name beside ``path``, of this process
    (two writers never share it; created under the umask, like any output), and
    renamed over ``path`` at the end. If the block fails, the temporary file is
    removed and ``path``, old or absent, is left as it was. Text modes default
    to UTF-8.
    """
    if "b" not in mode:
        open_args.setdefault("encoding", "utf-8")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode, **open_args) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class OutputLock:
    """An exclusive lock on a local output folder, held by one run at a time.

    ``flock`` on ``<parent>/.<name>.relbridge.lock``; the file says who holds
    it (run id, pid, host, start time) for the error message of the next run.
    The kernel releases it when the process dies, however it dies.
    """

    def __init__(self, output: str, run_id: str, flag: str = "--output"):
        parent, name = os.path.split(os.path.abspath(output))
        self.output = output
        self.flag = flag
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
                    f"{self.flag}"
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

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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


def swap_in(staging: str, output: str) -> None:
    """Makes the local folder ``staging`` the folder ``output`` and deletes the old one.

    Atomic where ``renameat2`` exchanges; elsewhere ``output`` is absent (never
    partial) between two renames.
    """
    if not os.path.exists(output):
        os.rename(staging, output)
        return
    if _exchange(staging, output):
        shutil.rmtree(staging)  # now the old output
        return
    replaced = f"{staging}-replaced"
    os.rename(output, replaced)
    os.rename(staging, output)
    shutil.rmtree(replaced)
