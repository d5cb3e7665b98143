"""Shared fixtures: tiny in-code encoders, never a download."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tiny_models import build_tiny_encoder


@pytest.fixture(autouse=True, scope="session")
def _kb_index_cache(tmp_path_factory):
    """KB indexes built by tests go to a temporary cache, never the user's."""
    old = os.environ.get("RELBRIDGE_KB_CACHE")
    os.environ["RELBRIDGE_KB_CACHE"] = str(tmp_path_factory.mktemp("kb_cache"))
    yield
    if old is None:
        os.environ.pop("RELBRIDGE_KB_CACHE", None)
    else:
        os.environ["RELBRIDGE_KB_CACHE"] = old

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """Path of a tiny random BERT directory (2 layers, hidden 32)."""
    return build_tiny_encoder(str(tmp_path_factory.mktemp("tiny_encoder")))


@pytest.fixture(scope="session")
def metaspace_encoder(tmp_path_factory) -> str:
    """The tiny BERT with a sentencepiece-style tokenizer (lone "▁" pieces)."""
    return build_tiny_encoder(str(tmp_path_factory.mktemp("metaspace")), metaspace=True)


@pytest.fixture(scope="session")
def shared_data() -> str:
    """Path of ../shared/data, or skip when this checkout has none beside it."""
    path = os.path.abspath(os.environ.get("RELBRIDGE_SHARED_DATA", SHARED_DATA))
    if not os.path.isdir(path):
        pytest.skip(f"development data not found at {path} (set RELBRIDGE_SHARED_DATA)")
    return path
