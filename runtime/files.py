"""Writing a local file whole or not at all."""

from __future__ import annotations

import os
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
