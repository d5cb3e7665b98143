"""The examples in the docstrings of the rule modules run and hold."""

import doctest
import importlib

import pytest

MODULES = [
    "relbridge.data_specs.aliases",
    "relbridge.data_specs.relx",
    "relbridge.projection.link_rules",
    "relbridge.projection.span_search",
    "relbridge.projection.projection_eval",
    "relbridge.models.extract",
    "relbridge.models.tagging",
    "relbridge.models.triples",
    "relbridge.runtime.metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
