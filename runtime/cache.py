"""Where relbridge keeps what it builds once and reuses: one root for every cache.

The bundled encoder (`relbridge.runtime.bundled_e5`) and the KB indexes
(`relbridge.kb.source`) live under it, so one variable moves them all.
"""

from __future__ import annotations

import os

CACHE_ENV = "RELBRIDGE_CACHE"


def cache_root() -> str:
    """``$RELBRIDGE_CACHE`` if set, else ``~/.cache/relbridge``."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "relbridge"))
