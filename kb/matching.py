"""Alias matching rules shared by every matcher: what a mention is, and how a sentence is labelled.

Rules, in order:
  * Overlapping matches: the longest wins, then the leftmost (spaCy's
    ``filter_spans``, `longest_leftmost`), so "New York Times" beats "New York".
  * An alias naming several entities keeps only those that take part in a KB
    triple with another entity matched in the sentence; if that still leaves
    more than one, the mention is dropped (counted as ``ambiguous_mentions``),
    since guessing would inject label noise.
  * Sentences with more than ``max_mentions`` mentions keep the first ones
    (the number of pairs grows quadratically).
  * One-word aliases that are function words of the source language (spaCy's
    stop list: ``it``, ``one``, ``his``, ``May``) are not matched, unless
    written in capitals (``US``, ``IT``): KBs hold such aliases (a film called
    *It*, pronoun entities in RELX), and they match nearly every sentence.
  * Words are compared in Unicode NFC, with the typographic apostrophe ``’``
    read as ``'`` (an NFD ``José`` or a news text's ``O’Brien`` names the KB's
    ``José``, ``O'Brien``); case-insensitive matching compares the ``str.lower``
    forms of those.

`AliasMatcher` is the in-memory reference (a spaCy ``PhraseMatcher`` over a
loaded `KnowledgeBase`): it is what `relbridge.kb.index.KbIndex` must agree
with, mention for mention, and what the scale benchmark compares against.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import permutations

from relbridge.data_specs.kb_format import Entity, KnowledgeBase
from relbridge.data_specs.languages import is_function_word, lexicon
from relbridge.data_specs.relations import NA
from relbridge.data_specs.schema import Mention, RelationInstance

logger = logging.getLogger(__name__)

KEY_SEP = "\x1f"
"""Joins an alias's words into its index key (a character no tokenizer emits)."""


@dataclass(frozen=True)
class Candidate:
    """A matched alias: word span ``[start, end)`` and the entity ids it may name (sorted)."""

    start: int
    end: int
    entity_ids: tuple[str, ...]
    # what an index already knows of the entities (aligned with entity_ids), so
    # that `KbIndex.view_of` need not look them up again; not part of equality
    nums: tuple[int, ...] = field(default=(), compare=False, repr=False)
    types: tuple[str, ...] = field(default=(), compare=False, repr=False)


_APOSTROPHES = str.maketrans({"\u2019": "'"})


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFC", text).translate(_APOSTROPHES)


def fold_for(case_sensitive: bool):
    """The function that makes words comparable: NFC with ``’`` as ``'``, then ``str.lower``
    (spaCy's LOWER) unless ``case_sensitive``."""
    return _normalize if case_sensitive else (lambda text: _normalize(text).lower())


def alias_key(words: Sequence[str], case_sensitive: bool) -> str:
    """An alias's (or a word span's) lookup key: its words joined by `KEY_SEP`, folded."""
    return fold_for(case_sensitive)(KEY_SEP.join(words))


def longest_leftmost(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Non-overlapping spans, longest first, then leftmost; in word order.

    The rule of spaCy's ``filter_spans``, step for step, on ``(start, end)`` pairs.

    >>> longest_leftmost([(0, 2), (1, 4), (3, 5), (5, 6)])
    [(1, 4), (5, 6)]
    """
    ranked = sorted(spans, key=lambda s: (s[1] - s[0], -s[0]), reverse=True)
    kept, seen = [], set()
    for start, end in ranked:
        if start not in seen and end - 1 not in seen:
            kept.append((start, end))
            seen.update(range(start, end))
    return sorted(kept)


class AliasMatcher:
    """Finds KB aliases in token lists with spaCy's PhraseMatcher (the in-memory reference).

    Matches the aliases of ``alias_langs`` (default: ``lang`` alone), each
    tokenised by ``lang``'s tokenizer, the language of the text. Holds every
    alias in memory: for large KBs use `relbridge.kb.index.KbIndex`.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        lang: str,
        case_sensitive: bool = True,
        skip_function_words: bool = True,
        alias_langs: Sequence[str] | None = None,
    ):
        import spacy
        from spacy.matcher import PhraseMatcher

        from relbridge.data_specs.tokenizer import make_tokenizer

        self._vocab = spacy.blank("xx").vocab
        self._matcher = PhraseMatcher(self._vocab, attr="ORTH" if case_sensitive else "LOWER")
        self._case_sensitive = case_sensitive
        tokenize = make_tokenizer(lang)
        stop_words = lexicon(lang)[0] if skip_function_words else frozenset()
        self._ids: dict[str, tuple[str, ...]] = {}
        skipped = []
        aliases: dict[str, set[str]] = {}
        for alias_lang in alias_langs or (lang,):
            for alias, ids in kb.aliases(alias_lang).items():
                aliases.setdefault(alias, set()).update(ids)
        for alias, ids in aliases.items():
            words = tokenize(alias)
            if is_function_word(words, stop_words):
                skipped.append(alias)
                continue
            key = alias_key(words, case_sensitive)
            if not key:
                continue
            merged = tuple(sorted(set(self._ids.get(key, ())) | set(ids)))
            if key not in self._ids:
                self._matcher.add(key, [self._doc(key.split(KEY_SEP))])
            self._ids[key] = merged
        logger.info(
            "AliasMatcher: %d aliases for %d entities (%s)", len(self._ids), len(kb.entities), lang
        )
        if skipped:
            logger.info(
                "AliasMatcher: %d one-word function-word aliases not matched, e.g. %s",
                len(skipped),
                ", ".join(sorted(skipped)[:8]),
            )

    def _doc(self, words: Sequence[str]):
        from spacy.tokens import Doc

        return Doc(self._vocab, words=list(words))

    def __call__(self, tokens: Sequence[str]) -> list[Candidate]:
        fold = fold_for(self._case_sensitive)
        doc = self._doc([fold(t) for t in tokens])
        spans = longest_leftmost((s, e) for _, s, e in self._matcher(doc))
        return [
            Candidate(s, e, self._ids[alias_key(tokens[s:e], self._case_sensitive)])
            for s, e in spans
        ]


def resolve_mentions(
    candidates: Sequence[Candidate],
    tokens: Sequence[str],
    kb: KnowledgeBase | KbView,
    relation_index: Mapping[tuple[str, str], tuple[str, ...]],
    max_mentions: int,
) -> tuple[list[Mention], int]:
    """Turns alias matches into mentions, resolving ambiguous aliases.

    ``kb`` needs only the candidates' entities and ``relation_index`` only the
    pairs among them (a `KbView` of an index holds just those).

    Returns:
      ``(mentions, num_ambiguous_dropped)``.
    """
    all_ids = {eid for c in candidates for eid in c.entity_ids}
    linked = None
    mentions, ambiguous = [], 0
    for cand in candidates:
        ids = cand.entity_ids
        if len(ids) > 1:
            if linked is None:
                linked = entities_with_facts(all_ids, relation_index)
            ids = tuple(e for e in ids if e in linked)
        if len(ids) != 1:
            ambiguous += 1
            continue
        entity = kb.entities[ids[0]]
        text = " ".join(tokens[cand.start : cand.end])
        mentions.append(Mention(cand.start, cand.end, entity.id, entity.type, text))
    return mentions[:max_mentions], ambiguous


def entities_with_facts(
    ids: set[str], relation_index: Mapping[tuple[str, str], tuple[str, ...]]
) -> set[str]:
    """The ``ids`` that take part in a fact, either way round, with another of ``ids``.

    Walks the facts when there are fewer of them than pairs of ids (an index's
    `KbView` holds only facts among the sentence's candidates), else tries
    every pair; both give the same set. A common alias of a large KB names
    thousands of entities, and trying all their pairs cost seconds a sentence.
    """
    if len(relation_index) <= len(ids) * len(ids):
        return {x for s, o in relation_index if s != o and s in ids and o in ids for x in (s, o)}
    return {
        e
        for e in ids
        if any((e, o) in relation_index or (o, e) in relation_index for o in ids - {e})
    }


def label_relations(
    mentions: Sequence[Mention], relation_index: Mapping[tuple[str, str], tuple[str, ...]]
) -> list[RelationInstance]:
    """Labels every ordered pair of mentions of two different entities.

    A pair gets one instance per KB relation from its subject to its object,
    or a single ``NA`` instance when the KB holds none.
    """
    out = []
    for i, j in permutations(range(len(mentions)), 2):
        s, o = mentions[i].kb_id, mentions[j].kb_id
        if s == o:
            continue
        for label in relation_index.get((s, o), (NA,)):
            out.append(RelationInstance(subject=i, object=j, label=label, distant=label != NA))
    return out


@dataclass(frozen=True)
class KbView:
    """The part of a KB that one sentence's candidates touch: their entities and mutual facts."""

    entities: dict[str, Entity]
    relation_index: dict[tuple[str, str], tuple[str, ...]]
