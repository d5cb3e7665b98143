"""Training and evaluation instances from shards and from KBP37/RELX files.

Two instance kinds feed the two heads of `RelationExtractor`:

* `PairInstance`: one sentence (one language side), two entity word spans
  ``[start, end)`` and the relation in each direction. ``e1`` is simply the entity
  given first (for RELX/KBP37 the one marked ``<e1>``; for shards the one that
  starts first); ``label_12`` is the relation with e1 as subject, ``label_21``
  with e2 as subject, ``None`` when unknown (then that direction is not trained).
* `TagInstance`: one unmarked sentence with its mention spans, for BIO tagging.

Readers:
  * `read_shard_data(dir)`: both sides of every shard row, in all languages:
    source mentions/relations and, where a relation projected, the target
    mentions/relations (``tgt_subject``/``tgt_object``).
  * `read_relx_data(path)`: a KBP37/RELX file; ``r(e1,e2)`` makes e1 the subject
    (label_12 = r, label_21 = NA), ``r(e2,e1)`` the reverse, ``no_relation`` NA both ways.

`make_bags` groups ordered pairs by (subject KB id, object KB id) across
sentences and languages (OpenNRE's bags); `LanguageBalancedSampler` draws
instances with temperature-scaled language probabilities. Splitting by id is the
caller's job (`hash_fraction` helps).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from relbridge.data_specs.languages import language_in_name
from relbridge.data_specs.relations import NA
from relbridge.data_specs.relx import read_relx, words_with_spans
from relbridge.data_specs.schema import ShardRow, read_shards

logger = logging.getLogger(__name__)

Span = tuple[int, int]


@dataclass(frozen=True)
class PairInstance:
    """Two entities in one sentence and the relation in each direction.

    Attributes:
      id: the sentence id (shard ``pair_id`` or RELX/KBP37 id).
      lang: the sentence's language.
      tokens: the words.
      e1, e2: word spans ``[start, end)`` of the two entities (non-overlapping).
      label_12: relation with e1 as subject and e2 as object; None if unknown.
      label_21: relation with e2 as subject and e1 as object; None if unknown.
      e1_kb, e2_kb: KB ids ("" when unknown), for bags.
      e1_type, e2_type: entity types ("" when unknown), for typed markers.
      side: ``src``/``tgt`` for shards, ``relx`` for marked files.
    """

    id: str
    lang: str
    tokens: tuple[str, ...]
    e1: Span
    e2: Span
    label_12: str | None
    label_21: str | None
    e1_kb: str = ""
    e2_kb: str = ""
    e1_type: str = ""
    e2_type: str = ""
    side: str = "src"

    def directed_label(self) -> str:
        """The gold label in KBP37/RELX form: ``r(e1,e2)``, ``r(e2,e1)`` or ``no_relation``."""
        return directed_label(self.label_12, self.label_21)


def directed_label(label_12: str | None, label_21: str | None) -> str:
    if label_12 not in (None, NA):
        return f"{label_12}(e1,e2)"
    if label_21 not in (None, NA):
        return f"{label_21}(e2,e1)"
    return "no_relation"


@dataclass(frozen=True)
class TagInstance:
    """An unmarked sentence and its mentions ``(start, end, type)``, word spans ``[start, end)``.

    ``complete`` is False where only some mentions are annotated (RELX/KBP37 mark
    the two arguments): such a sentence trains the tags it has and scores
    mention recall, not precision.
    """

    id: str
    lang: str
    tokens: tuple[str, ...]
    mentions: tuple[tuple[int, int, str], ...]
    complete: bool = True


@dataclass(frozen=True)
class SkippedPair:
    """A labelled record that cannot be encoded (an entity covers no word, or the two overlap).

    Kept so that evaluation counts its gold relation as missed instead of
    silently shrinking the test set (KBP37/RELX have a few empty entities).
    """

    id: str
    lang: str
    label_12: str | None
    label_21: str | None


@dataclass
class RelationData:
    """Pair and tagging instances read from one source, and the records that could not be encoded."""

    pairs: list[PairInstance] = field(default_factory=list)
    tags: list[TagInstance] = field(default_factory=list)
    skipped: list[SkippedPair] = field(default_factory=list)

    def extend(self, other: RelationData) -> RelationData:
        self.pairs.extend(other.pairs)
        self.tags.extend(other.tags)
        self.skipped.extend(other.skipped)
        return self

    def relations(self) -> set[str]:
        return {lab for p in self.pairs for lab in (p.label_12, p.label_21) if lab is not None}

    def entity_types(self) -> set[str]:
        types = {t for p in self.pairs for t in (p.e1_type, p.e2_type)}
        types |= {m[2] for t in self.tags for m in t.mentions}
        return {t for t in types if t}

    def languages(self) -> Counter:
        return Counter(p.lang for p in self.pairs)

    def filter(
        self, keep_ids: Iterable[str] | None = None, lang: str | None = None
    ) -> RelationData:
        """Instances whose sentence id is in ``keep_ids`` and/or whose language is ``lang``."""
        ids = None if keep_ids is None else {str(i) for i in keep_ids}

        def ok(x) -> bool:
            return (ids is None or x.id in ids) and (lang is None or x.lang == lang)

        return RelationData(
            [p for p in self.pairs if ok(p)],
            [t for t in self.tags if ok(t)],
            [x for x in self.skipped if ok(x)],
        )


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _pairs_of_side(
    row_id: str,
    lang: str,
    tokens: Sequence[str],
    mentions: Sequence,
    triples: Iterable[tuple[int, int, str]],
    side: str,
) -> list[PairInstance]:
    """Groups directed (subject, object, label) mention triples into unordered pairs."""
    by_pair: dict[tuple[int, int], dict[str, str]] = {}
    for s, o, label in triples:
        if not (0 <= s < len(mentions) and 0 <= o < len(mentions)) or s == o:
            continue
        ms, mo = mentions[s], mentions[o]
        if _overlap((ms.start, ms.end), (mo.start, mo.end)) or max(ms.end, mo.end) > len(tokens):
            continue
        first, second = sorted((s, o), key=lambda i: (mentions[i].start, i))
        slot = by_pair.setdefault((first, second), {})
        slot["12" if s == first else "21"] = label
    out = []
    for (a, b), labels in by_pair.items():
        ma, mb = mentions[a], mentions[b]
        out.append(
            PairInstance(
                id=row_id,
                lang=lang,
                tokens=tuple(tokens),
                e1=(ma.start, ma.end),
                e2=(mb.start, mb.end),
                label_12=labels.get("12"),
                label_21=labels.get("21"),
                e1_kb=ma.kb_id,
                e2_kb=mb.kb_id,
                e1_type=ma.type,
                e2_type=mb.type,
                side=side,
            )
        )
    return out


def instances_from_rows(
    rows: Iterable[ShardRow], sides: Sequence[str] = ("src", "tgt")
) -> RelationData:
    """Pair and tagging instances of both sides of shard rows.

    The source side uses ``src_mentions`` and every relation; the target side uses
    ``tgt_mentions`` and the relations whose ``tgt_subject``/``tgt_object`` are set.
    """
    data = RelationData()
    for row in rows:
        if "src" in sides:
            triples = [(r.subject, r.object, r.label) for r in row.relations]
            data.pairs.extend(
                _pairs_of_side(
                    row.pair_id, row.src_lang, row.src_tokens, row.src_mentions, triples, "src"
                )
            )
            if row.src_mentions:
                spans = tuple((m.start, m.end, m.type) for m in row.src_mentions)
                data.tags.append(
                    TagInstance(row.pair_id, row.src_lang, tuple(row.src_tokens), spans)
                )
        if "tgt" in sides:
            triples = [
                (r.tgt_subject, r.tgt_object, r.label)
                for r in row.relations
                if r.tgt_subject is not None and r.tgt_object is not None
            ]
            data.pairs.extend(
                _pairs_of_side(
                    row.pair_id, row.tgt_lang, row.tgt_tokens, row.tgt_mentions, triples, "tgt"
                )
            )
            if row.tgt_mentions:
                spans = tuple((m.start, m.end, m.type) for m in row.tgt_mentions)
                data.tags.append(
                    TagInstance(row.pair_id, row.tgt_lang, tuple(row.tgt_tokens), spans)
                )
    return data


def read_shard_data(path: str, sides: Sequence[str] = ("src", "tgt")) -> RelationData:
    """Reads a shard directory (or glob) into instances of all languages."""
    data = instances_from_rows(read_shards(path), sides)
    logger.info(
        "read %d pair and %d tagging instances from %s %s",
        len(data.pairs),
        len(data.tags),
        path,
        dict(data.languages()),
    )
    return data


def read_relx_data(
    path: str, lang: str | None = None, ids: Iterable[str] | None = None
) -> RelationData:
    """Reads a KBP37/RELX file into pair instances (and the two marked mentions as tags).

    Args:
      path: the file.
      lang: its language (default: the ISO 639-1 code in the file name, else ``en``,
        as for KBP37's ``train.txt``).
      ids: keep only these record ids.
    """
    lang = lang or language_in_name(path) or "en"
    keep = None if ids is None else {str(i) for i in ids}
    data = RelationData()
    for rec in read_relx(path):
        if keep is not None and rec.id not in keep:
            continue
        relation, subject, _ = rec.subject_object()
        if relation == NA:
            l12, l21 = NA, NA
        elif subject == rec.e1:
            l12, l21 = relation, NA
        else:
            l12, l21 = NA, relation
        words, (w1, w2) = words_with_spans(rec.text, [rec.e1, rec.e2])
        if w1[0] < 0 or w2[0] < 0 or _overlap(w1, w2):
            data.skipped.append(SkippedPair(rec.id, lang, l12, l21))
            continue
        data.pairs.append(PairInstance(rec.id, lang, tuple(words), w1, w2, l12, l21, side="relx"))
        data.tags.append(
            TagInstance(rec.id, lang, tuple(words), ((*w1, ""), (*w2, "")), complete=False)
        )
    if data.skipped:
        logger.warning(
            "%s: skipped %d records whose entities map to no word or overlap (evaluation counts "
            "their relations as missed)",
            path,
            len(data.skipped),
        )
    return data


def read_data(
    path: str, data_format: str = "auto", lang: str | None = None, ids: Iterable[str] | None = None
) -> RelationData:
    """Reads shards (a directory/glob) or a KBP37/RELX file; ``auto`` picks by path."""
    if data_format == "auto":
        data_format = "relx" if os.path.isfile(path) and path.endswith(".txt") else "shards"
    if data_format == "relx":
        return read_relx_data(path, lang=lang, ids=ids)
    if data_format == "shards":
        if os.path.isfile(path) and not path.endswith(".parquet"):
            raise ValueError(
                f"{path}: not a Parquet shard; a KBP37/RELX file needs a .txt name or "
                "the relx format (--format relx)"
            )
        data = read_shard_data(path)
        return data.filter(ids, lang) if ids is not None or lang else data
    raise ValueError(f"unknown data format {data_format!r} (shards or relx)")


# ---------------------------------------------------------------------- bags


@dataclass(frozen=True)
class Bag:
    """Ordered pairs sharing (subject KB id, object KB id).

    ``members`` are ``(pair index, direction)``: direction 0 reads the pair as
    e1->e2, direction 1 as e2->e1.
    """

    key: tuple[str, str]
    label: str
    members: tuple[tuple[int, int], ...]


def make_bags(pairs: Sequence[PairInstance]) -> list[Bag]:
    """Groups ordered pairs with known KB ids and labels into bags, across sentences and languages.

    The bag label is the most frequent member label (ties: non-NA first, then by name).
    """
    groups: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    for i, p in enumerate(pairs):
        if not (p.e1_kb and p.e2_kb):
            continue
        if p.label_12 is not None:
            groups[(p.e1_kb, p.e2_kb)].append((i, 0, p.label_12))
        if p.label_21 is not None:
            groups[(p.e2_kb, p.e1_kb)].append((i, 1, p.label_21))
    bags = []
    for key in sorted(groups):
        members = groups[key]
        counts = Counter(lab for _, _, lab in members)
        label = min(counts, key=lambda lab: (-counts[lab], lab == NA, lab))
        bags.append(Bag(key, label, tuple((i, d) for i, d, _ in members)))
    return bags


def bag_scope(
    bags: Sequence[Bag], max_bag_size: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Flattens bags into a member list and OpenNRE ``scope`` row ranges.

    Args:
      bags: the bags.
      max_bag_size: keep at most this many members per bag (0: all).

    Returns:
      ``(members, scope)``: members as ``(pair index, direction)`` and one
      ``(start, end)`` range into members per bag.
    """
    members, scope = [], []
    for bag in bags:
        kept = bag.members[:max_bag_size] if max_bag_size > 0 else bag.members
        scope.append((len(members), len(members) + len(kept)))
        members.extend(kept)
    return members, scope


# ---------------------------------------------------------------------- sampling


class LanguageBalancedSampler:
    """Temperature sampling over languages (as in multilingual BERT/XLM-R pre-training).

    Language l with ``n_l`` instances is drawn with probability proportional to
    ``n_l ** (1 / temperature)``: temperature 1 keeps the natural proportions,
    larger temperatures move towards uniform. Within a language, instances are
    taken from a shuffled cycle, so each is seen before any repeats. An epoch has
    ``num_samples`` draws (default: all instances). The order depends only on
    (seed, epoch), so a resumed run regenerates it and skips what it has done.

    Args:
      languages: the language of each instance.
      temperature: >= 1 recommended (1-5); must be > 0.
      seed: base seed.
      num_samples: draws per epoch.
    """

    def __init__(
        self,
        languages: Sequence[str],
        temperature: float = 1.0,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not languages:
            raise ValueError("no instances to sample")
        self.by_lang: dict[str, list[int]] = defaultdict(list)
        for i, lang in enumerate(languages):
            self.by_lang[lang].append(i)
        self.langs = sorted(self.by_lang)
        self.temperature = temperature
        self.seed = seed
        self.num_samples = num_samples or len(languages)

    def probabilities(self) -> dict[str, float]:
        weights = {lang: len(self.by_lang[lang]) ** (1.0 / self.temperature) for lang in self.langs}
        total = sum(weights.values())
        return {lang: w / total for lang, w in weights.items()}

    def order(self, epoch: int) -> list[int]:
        """The instance indices of one epoch."""
        rng = random.Random(f"{self.seed}:{epoch}")
        probs = self.probabilities()
        weights = [probs[lang] for lang in self.langs]
        cycles = {lang: [] for lang in self.langs}
        out = []
        for lang in rng.choices(self.langs, weights=weights, k=self.num_samples):
            if not cycles[lang]:
                cycles[lang] = list(self.by_lang[lang])
                rng.shuffle(cycles[lang])
            out.append(cycles[lang].pop())
        return out

    def __len__(self) -> int:
        return self.num_samples


def hash_fraction(key: str, seed: int = 0) -> float:
    """A stable pseudo-random number in [0, 1) for a key (for splitting by id)."""
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
