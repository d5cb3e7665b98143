"""SplitSentences: `TextLine` -> its `Sentence`s (`relbridge.text.sentences`, in ``--lang``).

A line with ``<e1>``/``<e2>`` markers stays one sentence (its pair is one
instance); ``--no-split`` keeps every line whole, as ``relbridge extract`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from relbridge.data_specs.kg import Sentence, TextLine
from relbridge.kg.options import SplitConfig
from relbridge.models.extract import is_marked
from relbridge.text.sentences import sentences


def split_line(line: TextLine, cfg: SplitConfig) -> Iterator[Sentence]:
    """The sentences of one line, numbered within it."""
    parts = sentences(line.text, cfg.lang) if cfg.split and not is_marked(line.text) else [line.text]
    for k, text in enumerate(parts):
        yield Sentence(line.source_file, line.line, line.ordinal, line.id, k, text)


class SplitSentences(beam.PTransform):
    def __init__(self, cfg: SplitConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, lines):
        cfg = self.cfg
        return lines | "SplitLine" >> beam.FlatMap(split_line, cfg)
