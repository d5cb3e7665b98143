"""Where an index comes from: a KB directory or a built index, local or on any Beam filesystem.

`open_kb(path, profiles)` is the one call every user makes:
  * ``path`` is a KB directory: its files are hashed (the KB's fingerprint),
    and the index ``<cache>/<fingerprint>-<profiles>.kbindex`` is built when
    missing, so a changed KB file gives a new index and an unchanged KB is
    never parsed twice;
  * ``path`` is an index file (``relbridge kb build``): it is opened as is;
  * a remote path (``gs://...``) is read through Beam's filesystems, which
    are imported only then; a remote index is copied once per process into
    the local cache (SQLite reads a local file).

The cache directory is ``$RELBRIDGE_KB_CACHE``, else ``kb`` under ``$RELBRIDGE_CACHE`` (the
bundled encoder's cache), else ``~/.cache/relbridge/kb``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from relbridge.data_specs.formats import open_lines, strict_lines
from relbridge.data_specs.kb_format import find_kb_files
from relbridge.kb.build import build_index
from relbridge.kb.index import INDEX_FORMAT, KbIndex, MatchProfile
from relbridge.runtime.cache import cache_root

logger = logging.getLogger(__name__)

INDEX_SUFFIX = ".kbindex"
_BUILD_LOCK = threading.Lock()


def default_cache_dir() -> str:
    """``$RELBRIDGE_KB_CACHE``, else ``kb`` in relbridge's cache (``$RELBRIDGE_CACHE``, where the
    bundled encoder lives, else ``~/.cache/relbridge``): one variable moves every cache."""
    own = os.environ.get("RELBRIDGE_KB_CACHE")
    return os.path.expanduser(own) if own else os.path.join(cache_root(), "kb")


def is_remote(path: str) -> bool:
    return "://" in path


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def listdir(folder: str) -> list[str]:
    if not is_remote(folder):
        return [os.path.join(folder, n) for n in os.listdir(folder)]
    fs = _filesystems()
    return [m.path for m in fs.match([fs.join(folder, "*")])[0].metadata_list]


@contextmanager
def open_text(path: str) -> Iterator[Iterator[str]]:
    """A file's UTF-8 lines, gzip by extension, local or remote."""
    if not is_remote(path):
        with open_lines(path) as lines:
            yield lines
        return
    with _filesystems().open(path) as f:
        yield strict_lines(iter(f.readline, b""), path)


def _open_raw(path: str):
    if not is_remote(path):
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def exists(path: str) -> bool:
    return os.path.exists(path) if not is_remote(path) else _filesystems().exists(path)


def is_kb_dir(path: str) -> bool:
    """A KB directory (entities and triples files), rather than an index file."""
    if not is_remote(path):
        return os.path.isdir(path)
    try:
        find_kb_files(listdir(path))
    except FileNotFoundError:
        return False
    return True


def kb_fingerprint(kb_dir: str) -> str:
    """A hash of the KB's files (names and bytes) and the index format."""
    digest = hashlib.sha256(INDEX_FORMAT.encode())
    for path in find_kb_files(listdir(kb_dir)).all:
        digest.update(b"\0" + os.path.basename(path).encode() + b"\0")
        with _open_raw(path) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def index_name(fingerprint: str, profiles: Sequence[MatchProfile]) -> str:
    names = "\n".join(sorted(p.name for p in profiles))
    return f"{fingerprint[:24]}-{hashlib.sha1(names.encode()).hexdigest()[:8]}{INDEX_SUFFIX}"


def ensure_index(
    kb: str, profiles: Sequence[MatchProfile], cache_dir: str | None = None
) -> str:
    """The index path for ``kb`` (a KB directory or an index), building it if needed.

    For a KB directory the index goes to ``cache_dir`` (default: the local
    cache; a gs:// folder makes it readable by remote workers), named by the
    KB's fingerprint and the profiles, and is built only when not there yet.
    """
    if not is_kb_dir(kb):
        if not exists(kb):
            raise FileNotFoundError(f"{kb}: no such KB directory or KB index")
        return kb
    cache_dir = cache_dir or default_cache_dir()
    fingerprint = kb_fingerprint(kb)
    target = f"{cache_dir.rstrip('/')}/{index_name(fingerprint, profiles)}"
    with _BUILD_LOCK:
        if exists(target):
            logger.info("KB %s: index %s is up to date", kb, target)
            return target
        logger.info("KB %s: building its index %s", kb, target)
        local = target if not is_remote(target) else os.path.join(
            default_cache_dir(), os.path.basename(target)
        )
        build_index(kb, local, profiles, fingerprint, open_text=open_text, listdir=listdir)
        if local != target:
            _upload(local, target)
    return target


def _upload(local: str, target: str) -> None:
    """Copies a built index to a remote folder, under a temporary name first."""
    fs = _filesystems()
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(local, "rb") as src, fs.create(tmp) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    fs.rename([tmp], [target])


def localize(path: str, cache_dir: str | None = None) -> str:
    """A local copy of an index (itself when local); copied once per process and cache."""
    if not is_remote(path):
        return path
    local = os.path.join(
        cache_dir or default_cache_dir(),
        "remote-" + hashlib.sha1(path.encode()).hexdigest()[:12] + "-" + os.path.basename(path),
    )
    with _BUILD_LOCK:
        if not os.path.exists(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            tmp = f"{local}.tmp-{os.getpid()}-{threading.get_ident()}"
            with _open_raw(path) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, local)
            logger.info("KB index %s copied to %s", path, local)
    return local


def open_kb(
    kb: str, profiles: Sequence[MatchProfile], cache_dir: str | None = None
) -> KbIndex:
    """Opens the index of ``kb`` (KB directory or index, local or remote) with ``profiles``."""
    index = KbIndex(localize(ensure_index(kb, profiles, cache_dir)))
    for profile in profiles:
        index.matcher(profile)  # a missing profile fails here, not on the first sentence
    return index
