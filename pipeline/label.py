"""LabelWithKb: distant supervision of the source side.

Entity mentions are found by matching the KB's source-language aliases against
the source tokens (spaCy's PhraseMatcher, tokenised by the same tokenizer as the
corpus, so multi-word aliases match token-exactly). Every ordered pair of
mentions of two different entities becomes a relation instance labelled with
each KB relation that holds from the first to the second, or ``NA``.

Rules, in order:
  * Overlapping matches: the longest wins, then the leftmost (spaCy's
    ``filter_spans``), so "New York Times" beats "New York".
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
    ``LabelConfig.skip_function_word_aliases=False`` keeps them.

    rows = rows | LabelWithKb(LabelConfig(kb="kb_dir", src_lang="en"))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import permutations

import apache_beam as beam

from relbridge.data_specs.formats import KnowledgeBase, load_kb
from relbridge.data_specs.languages import lexicon
from relbridge.data_specs.relations import NA
from relbridge.data_specs.schema import Mention, RelationInstance, ShardRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelConfig:
    """Distant-supervision settings.

    Attributes:
      kb: KB directory (``entities.{tsv,jsonl}``, ``triples.{tsv,jsonl}``); any
        Beam filesystem path.
      src_lang: language of the aliases to match (the corpus's source side).
      case_sensitive: match aliases on exact case (default) or lower-cased.
        Case-insensitive matching finds more mentions and more false ones
        ("Will", "May").
      max_mentions: keep at most this many mentions per sentence (10-30).
      skip_function_word_aliases: do not match one-word aliases that are in
        the source language's stop list (see the module docstring).
    """

    kb: str
    src_lang: str
    case_sensitive: bool = True
    max_mentions: int = 20
    skip_function_word_aliases: bool = True

    def __post_init__(self):
        if self.max_mentions < 2:
            raise ValueError(f"max_mentions must be at least 2, got {self.max_mentions}")


def read_kb(path: str) -> KnowledgeBase:
    """Loads the KB directory at ``path`` through Beam's filesystems (local, gs://, ...).

    Raises:
      InputError: a malformed line (the message names the file and line).
    """
    from apache_beam.io.filesystems import FileSystems

    from relbridge.pipeline.ingest import open_text

    def listdir(folder: str) -> list[str]:
        pattern = FileSystems.join(folder, "*")
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]

    return load_kb(path, open_text=open_text, listdir=listdir)


@dataclass(frozen=True)
class Candidate:
    """A matched alias: word span ``[start, end)`` and the entity ids it may name."""

    start: int
    end: int
    entity_ids: tuple[str, ...]


class AliasMatcher:
    """Finds KB aliases in token lists with spaCy's PhraseMatcher.

    Matches the aliases of ``alias_langs`` (default: ``lang`` alone), each
    tokenised by ``lang``'s tokenizer, the language of the text.
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

        from relbridge.pipeline.tokenize import make_tokenizer

        self._vocab = spacy.blank("xx").vocab
        self._matcher = PhraseMatcher(self._vocab, attr="ORTH" if case_sensitive else "LOWER")
        self._fold = (lambda text: text) if case_sensitive else str.lower  # as LOWER compares
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
            if is_function_word_alias(words, stop_words):
                skipped.append(alias)
                continue
            key = self._fold("\x1f".join(words))
            if not key:
                continue
            merged = tuple(sorted(set(self._ids.get(key, ())) | set(ids)))
            if key not in self._ids:
                self._matcher.add(key, [self._doc(key.split("\x1f"))])
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
        from spacy.util import filter_spans

        doc = self._doc(tokens)
        spans = [doc[s:e] for _, s, e in self._matcher(doc)]
        kept = sorted(filter_spans(spans), key=lambda span: span.start)
        return [
            Candidate(s.start, s.end, self._ids[self._fold("\x1f".join(t.text for t in s))])
            for s in kept
        ]


class TextMentions:
    """KB mentions in raw text: ``finder(text) -> (words, [(start, end, type)])``.

    What ``relbridge extract --kb`` uses to find entities the KB names, so
    that the records' arguments link to KB ids; the words are ``lang``'s
    tokens (substrings of the text). An alias of several entities of one
    type keeps that type, else ``""``; which entity it names is left to the
    linker (`relbridge.models.triples`).

    Args:
      kb: the knowledge base.
      lang: the text's language (tokenizer, function words).
      alias_langs: whose aliases to match (default: every language of the KB,
        since names are often written alike across languages).
      case_sensitive: match aliases on exact case.

    Attributes:
      found: mentions found so far, over all calls.

    Raises:
      ValueError: an ``alias_langs`` language that no KB alias has.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        lang: str,
        alias_langs: Sequence[str] | None = None,
        case_sensitive: bool = True,
    ):
        from relbridge.pipeline.tokenize import make_tokenizer

        in_kb = sorted({code for e in kb.entities.values() for code in e.aliases})
        unknown = sorted(set(alias_langs or ()) - set(in_kb))
        if unknown:
            raise ValueError(
                f"the KB has no aliases in {', '.join(unknown)} (it has: {', '.join(in_kb)})"
            )
        self._kb = kb
        self._tokenize = make_tokenizer(lang)
        self._match = AliasMatcher(kb, lang, case_sensitive, alias_langs=alias_langs or in_kb)
        self.found = 0

    def __call__(self, text: str) -> tuple[list[str], list[tuple[int, int, str]]]:
        words = self._tokenize(text)
        found = []
        for cand in self._match(words):
            types = {self._kb.entities[e].type for e in cand.entity_ids}
            found.append((cand.start, cand.end, types.pop() if len(types) == 1 else ""))
        self.found += len(found)
        return words, found


def is_function_word_alias(words: Sequence[str], stop_words: frozenset[str]) -> bool:
    """A one-word alias in the stop list, unless written in capitals (``US``, ``IT``)."""
    if len(words) != 1:
        return False
    word = words[0]
    return word.casefold() in stop_words and not (len(word) > 1 and word.isupper())


def resolve_mentions(
    candidates: Sequence[Candidate],
    tokens: Sequence[str],
    kb: KnowledgeBase,
    relation_index: dict[tuple[str, str], tuple[str, ...]],
    max_mentions: int,
) -> tuple[list[Mention], int]:
    """Turns alias matches into mentions, resolving ambiguous aliases.

    Returns:
      ``(mentions, num_ambiguous_dropped)``.
    """
    all_ids = {eid for c in candidates for eid in c.entity_ids}
    mentions, ambiguous = [], 0
    for cand in candidates:
        ids = cand.entity_ids
        if len(ids) > 1:
            ids = tuple(
                e
                for e in ids
                if any((e, o) in relation_index or (o, e) in relation_index for o in all_ids - {e})
            )
        if len(ids) != 1:
            ambiguous += 1
            continue
        entity = kb.entities[ids[0]]
        text = " ".join(tokens[cand.start : cand.end])
        mentions.append(Mention(cand.start, cand.end, entity.id, entity.type, text))
    return mentions[:max_mentions], ambiguous


def label_relations(
    mentions: Sequence[Mention], relation_index: dict[tuple[str, str], tuple[str, ...]]
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


class LabelWithKbFn(beam.DoFn):
    """Finds mentions and labels relations; the KB index is built in `setup`."""

    def __init__(self, cfg: LabelConfig):
        self.cfg = cfg
        self.mentions = beam.metrics.Metrics.counter(self.__class__, "mentions")
        self.ambiguous = beam.metrics.Metrics.counter(self.__class__, "ambiguous_mentions")
        self.positive = beam.metrics.Metrics.counter(self.__class__, "relation_instances")
        self.na = beam.metrics.Metrics.counter(self.__class__, "na_instances")

    def setup(self):
        self._kb = read_kb(self.cfg.kb)
        self._index = self._kb.relation_index()
        self._matcher = AliasMatcher(
            self._kb,
            self.cfg.src_lang,
            self.cfg.case_sensitive,
            self.cfg.skip_function_word_aliases,
        )

    def process(self, row: ShardRow):
        candidates = self._matcher(row.src_tokens)
        mentions, ambiguous = resolve_mentions(
            candidates, row.src_tokens, self._kb, self._index, self.cfg.max_mentions
        )
        relations = label_relations(mentions, self._index)
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
        return rows | "MatchAliasesAndKbFacts" >> beam.ParDo(LabelWithKbFn(self.cfg))
