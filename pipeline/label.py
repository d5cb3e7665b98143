"""LabelWithKb: distant supervision of the source side.

Entity mentions are found by matching the KB's source-language aliases against
the source tokens, tokenised by the same tokenizer as the corpus, so multi-word
aliases match token-exactly. Every ordered pair of mentions of two different
entities becomes a relation instance labelled with each KB relation that holds
from the first to the second, or ``NA``. The rules (longest then leftmost,
ambiguous aliases resolved by KB facts, function-word aliases, ``max_mentions``)
are `relbridge.kb.matching`'s.

The KB is an index (`relbridge.kb`): built once per KB version on the launcher
(`prepare_kb`), opened read-only by every worker process and shared between
its threads (``Shared``), so a worker's memory does not grow with the KB.

    rows = rows | LabelWithKb(LabelConfig(kb="kb_dir", src_lang="en"))
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, replace

import apache_beam as beam
from apache_beam.utils.shared import Shared

from relbridge.data_specs.relations import NA
from relbridge.data_specs.schema import ShardRow
from relbridge.kb import KbIndex, MatchProfile, label_relations, open_kb, resolve_mentions
from relbridge.kb.source import ensure_index, is_remote

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelConfig:
    """Distant-supervision settings.

    Attributes:
      kb: a KB directory (``entities.{tsv,jsonl}[.gz]``, ``triples.{tsv,jsonl}[.gz]``)
        or an index built by ``relbridge kb build``; any Beam filesystem path.
      src_lang: language of the aliases to match (the corpus's source side).
      case_sensitive: match aliases on exact case (default) or lower-cased.
        Case-insensitive matching finds more mentions and more false ones
        ("Will", "May").
      max_mentions: keep at most this many mentions per sentence (10-30).
      skip_function_word_aliases: do not match one-word aliases that are in
        the source language's stop list (see `relbridge.kb.matching`).
      index_cache: where the launcher builds the index of a KB directory
        (default: the local cache, ``$RELBRIDGE_KB_CACHE``); give a gs://
        folder when workers run elsewhere.
      index: the index the workers open; set by `prepare_kb` (recorded in
        ``pipeline_config.json``), empty until then.
    """

    kb: str
    src_lang: str
    case_sensitive: bool = True
    max_mentions: int = 20
    skip_function_word_aliases: bool = True
    index_cache: str = ""
    index: str = ""

    def __post_init__(self):
        if self.max_mentions < 2:
            raise ValueError(f"max_mentions must be at least 2, got {self.max_mentions}")

    @property
    def profile(self) -> MatchProfile:
        """Source-language aliases, matched in source-language tokens."""
        return MatchProfile(
            self.src_lang, (self.src_lang,), self.case_sensitive, self.skip_function_word_aliases
        )


def prepare_kb(cfg: LabelConfig) -> LabelConfig:
    """Builds (or finds up to date) the KB's index once, on the launcher; returns the config to run.

    A malformed KB stops here with its file and line, before anything is
    written or submitted.
    """
    index = ensure_index(cfg.kb, [cfg.profile], cfg.index_cache or None)
    if is_remote(index):  # the workers copy it; the launcher need not
        logger.info("KB %s: index %s", cfg.kb, index)
    else:
        opened = open_kb(index, [cfg.profile])  # a missing profile stops the run here
        logger.info(
            "KB %s: %d entities, %d triples (index %s)",
            cfg.kb,
            len(opened),
            opened.meta["triples"],
            index,
        )
    return dataclasses.replace(cfg, index=index)


def label_tokens(tokens, index: KbIndex, cfg: LabelConfig):
    """Mentions, relation instances and the number of ambiguous mentions dropped, of one sentence."""
    candidates = index.find_mentions(tokens, cfg.profile)
    view = index.view_of(candidates)
    mentions, ambiguous = resolve_mentions(
        candidates, tokens, view, view.relation_index, cfg.max_mentions
    )
    return mentions, label_relations(mentions, view.relation_index), ambiguous


class LabelWithKbFn(beam.DoFn):
    """Finds mentions and labels relations; the KB index is opened once per process."""

    def __init__(self, cfg: LabelConfig, shared: Shared):
        self.cfg = cfg
        self._shared = shared
        self.mentions = beam.metrics.Metrics.counter(self.__class__, "mentions")
        self.ambiguous = beam.metrics.Metrics.counter(self.__class__, "ambiguous_mentions")
        self.positive = beam.metrics.Metrics.counter(self.__class__, "relation_instances")
        self.na = beam.metrics.Metrics.counter(self.__class__, "na_instances")

    def setup(self):
        cfg = self.cfg
        self._index = self._shared.acquire(
            lambda: open_kb(cfg.index or cfg.kb, [cfg.profile], cfg.index_cache or None),
            tag=cfg.index or cfg.kb,
        )

    def process(self, row: ShardRow):
        mentions, relations, ambiguous = label_tokens(row.src_tokens, self._index, self.cfg)
        self.mentions.inc(len(mentions))
        self.ambiguous.inc(ambiguous)
        positives = sum(r.label != NA for r in relations)
        self.positive.inc(positives)
        self.na.inc(len(relations) - positives)
        yield replace(row, src_mentions=tuple(mentions), relations=tuple(relations))


class LabelWithKb(beam.PTransform):
    """Adds source mentions and distantly supervised relation instances to rows."""

    def __init__(self, cfg: LabelConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        return rows | "MatchAliasesAndKbFacts" >> beam.ParDo(LabelWithKbFn(self.cfg, Shared()))
