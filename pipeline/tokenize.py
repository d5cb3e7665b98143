"""Tokenize: raw sentence pairs -> word tokens on both sides (spaCy).

Each language gets a blank spaCy pipeline (rule-based tokenizer only, nothing
to download): jieba segments Chinese and SudachiPy Japanese. Whitespace tokens
are dropped, so every token is a word the aligner can embed. In languages that
write a name's case suffix after an apostrophe (Turkish ``Ankara'da``), the
suffix becomes its own token, so the name matches its KB alias and projects on
its own. Pairs with an empty or over-long side go to the dead-letter output.

    rows, dead = records | Tokenize(TokenizeConfig(src_lang="en", tgt_lang="de"))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam

from relbridge.data_specs.formats import BitextRecord
from relbridge.data_specs.schema import ShardRow
from relbridge.data_specs.tokenizer import (  # noqa: F401 (re-exported: the stage's tokenizer)
    APOSTROPHE_SUFFIX_LANGS,
    SEGMENTER_CONFIG,
    check_language,
    make_tokenizer,
    split_apostrophe_suffix,
)
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, reject

@dataclass(frozen=True)
class TokenizeConfig:
    """Tokenizer settings.

    Attributes:
      src_lang: source language code; any language spaCy has (``spacy.blank``).
      tgt_lang: target language code.
      max_words: pairs with more words than this on a side are dead-lettered
        (the aligner windows long sentences, but a 1,000-word "sentence" is
        almost always a segmentation error). Recommended 150-400.
    """

    src_lang: str
    tgt_lang: str
    max_words: int = 256

    def __post_init__(self):
        if self.max_words < 1:
            raise ValueError(f"max_words must be positive, got {self.max_words}")
        for side, lang in (("source", self.src_lang), ("target", self.tgt_lang)):
            check_language(lang, side)


def tokenize_pair(
    record: BitextRecord,
    src_tokenize: Callable[[str], list[str]],
    tgt_tokenize: Callable[[str], list[str]],
    cfg: TokenizeConfig,
) -> ShardRow:
    """Tokenizes both sides of a record into a `ShardRow` (no labels yet).

    Raises:
      ValueError: a side has no tokens or more than ``cfg.max_words``.
    """
    src_tokens, tgt_tokens = src_tokenize(record.src), tgt_tokenize(record.tgt)
    for side, tokens in (("source", src_tokens), ("target", tgt_tokens)):
        if not tokens:
            raise ValueError(f"the {side} sentence has no tokens")
        if len(tokens) > cfg.max_words:
            raise ValueError(
                f"the {side} sentence has {len(tokens)} words (max_words={cfg.max_words})"
            )
    return ShardRow(
        pair_id=record.pair_id,
        corpus=record.corpus,
        source_file=record.source_file,
        line=record.line,
        src_lang=cfg.src_lang,
        tgt_lang=cfg.tgt_lang,
        src_text=record.src,
        tgt_text=record.tgt,
        src_tokens=tuple(src_tokens),
        tgt_tokens=tuple(tgt_tokens),
        doc_id=record.doc_id,
        src_sentence_ids=record.src_sentence_ids,
        tgt_sentence_ids=record.tgt_sentence_ids,
        sentence_score=record.sentence_score,
    )


class TokenizePairFn(beam.DoFn):
    """Wraps `tokenize_pair`; the spaCy pipelines are built in `setup`."""

    def __init__(self, cfg: TokenizeConfig):
        self.cfg = cfg
        self.rejected = beam.metrics.Metrics.counter(self.__class__, "rejected")

    def setup(self):
        self._src = make_tokenizer(self.cfg.src_lang)
        self._tgt = make_tokenizer(self.cfg.tgt_lang)

    def process(self, record: BitextRecord):
        try:
            yield tokenize_pair(record, self._src, self._tgt, self.cfg)
        except ValueError as e:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, reject("Tokenize", str(e), record))


class Tokenize(beam.PTransform):
    """Tokenizes sentence pairs; returns main output ``rows`` plus ``dead_letter``."""

    def __init__(self, cfg: TokenizeConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, records):
        return records | "TokenizePairs" >> beam.ParDo(TokenizePairFn(self.cfg)).with_outputs(
            DEAD_LETTER_TAG, main="rows"
        )
