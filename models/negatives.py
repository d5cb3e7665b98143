"""Unannotated-pair negatives: teaching the relation head that most name pairs are unrelated.

KBP37 and RELX annotate one pair per sentence, and 87% of those pairs hold a
relation. Trained on them alone, the relation head learns that a pair it is
shown almost always holds one. On raw text the tagger finds about four names
per sentence and every pair is scored, so the KBP37 model gave 5.2 triples per
RELX sentence against 0.87 true facts (precision lower bound 5.5% on RELX en,
`relbridge benchmark relx`, raw_text): it had never seen a pair that the
annotators did not choose.

This module draws, for each annotated sentence, pairs of name spans that the
annotation does not relate (an annotated argument with another name, or two
other names) and labels them ``NA`` in both directions: the closed-world
assumption of distant supervision, applied inside the sentence. Some of those
pairs do hold an unannotated relation; KBP37's own ``no_relation`` class has the
same noise, and the trade is what makes raw-text output precise.

Measured (`relbridge benchmark relx --preset cpu --unannotated-negatives 0.5
--epochs 2` against the preset, 2 quiet CPU cores): raw-text triples per
sentence fell from 5.2 to 3.2 and the precision lower bound rose from 5.5 to
8.1% (en), but raw-text relx_f1 fell from 37.5 to 33.3 and the marked RELX
score from 62.4 to 60.2 (with the marked prior below), so it is opt-in, off
in the presets. Name spans are found without a model, since the tagger trains in the same run:
maximal runs of capitalised words or numbers, with a lowercase connector
(``of``, ``de``, ``von``...) inside a run when a capitalised word follows. They
are only used to draw training negatives, never as tagging labels.

`boundary_negatives` are the other kind: an annotated related pair with one
argument cut a word short, labelled NA (``train --boundary-negatives``). Raw
text is scored on exact spans, and they teach the relation head to relate the
whole name, not its parts, so that extraction can pair every reading the tagger
finds plausible and let the head choose (``lattice`` readings,
`relbridge.models.thresholds.READINGS`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from relbridge.data_specs.relations import NA
from relbridge.models.data import PairInstance, Span, hash_fraction

CONNECTORS = frozenset({"of", "the", "and", "&", "for", "de", "du", "des", "la", "le", "von", "der"})
"""Lowercase words that may join two capitalised words of one name (Bank of America)."""


def _is_name_word(word: str) -> bool:
    return word[:1].isupper() or word.isdigit()


def name_spans(words: Sequence[str]) -> list[Span]:
    """Word spans ``[start, end)`` of capitalised runs and numbers (see the module docstring).

    >>> name_spans("The Bank of America said on Monday that 2019 was good".split())
    [(0, 4), (6, 7), (8, 9)]
    """
    spans, i, n = [], 0, len(words)
    while i < n:
        if not _is_name_word(words[i]):
            i += 1
            continue
        end = i + 1
        while end < n:
            if _is_name_word(words[end]):
                end += 1
            elif words[end] in CONNECTORS and end + 1 < n and words[end + 1][:1].isupper():
                end += 2
            else:
                break
        spans.append((i, end))
        i = end
    return spans


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def unannotated_negatives(
    pairs: Sequence[PairInstance], rate: float, seed: int = 0
) -> list[PairInstance]:
    """About ``rate`` NA pairs per annotated sentence, drawn once by ``seed`` (see the module docstring).

    Each sentence gets ``floor(rate)`` negatives plus one more with probability
    ``rate - floor(rate)`` (by a hash of its id), drawn from the pairs of its
    name spans that are not its annotated pair; spans overlapping an annotated
    argument are the argument, so they are left out. A negative's id is the
    sentence's with ``~neg<k>``; its arguments are in word order.
    """
    out: list[PairInstance] = []
    whole, part = math.floor(rate), rate - math.floor(rate)
    for p in pairs:
        want = whole + (hash_fraction(f"{p.id}~neg", seed) < part)
        if not want:
            continue
        args = (p.e1, p.e2)
        others = [s for s in name_spans(p.tokens) if not any(_overlaps(s, a) for a in args)]
        candidates = [tuple(sorted((a, s))) for a in args for s in others]
        candidates += [(s, t) for i, s in enumerate(others) for t in others[i + 1 :]]
        rng = random.Random(f"{seed}:{p.id}")
        for k, (a, b) in enumerate(rng.sample(candidates, min(want, len(candidates)))):
            out.append(
                PairInstance(f"{p.id}~neg{k}", p.lang, p.tokens, a, b, NA, NA, side=p.side)
            )
    return out


def boundary_negatives(
    pairs: Sequence[PairInstance], rate: float, seed: int = 0
) -> list[PairInstance]:
    """About ``rate`` NA pairs per related annotated pair: the same pair with one argument
    of several words cut short by a word at either end.

    Raw-text output counts a triple only when both its spans are exact, yet a
    relation head trained on exact spans alone relates ``Carolina`` as readily as
    ``North Carolina``. These teach it that a pair with a part of a name holds no
    relation, so that among overlapping readings the whole name wins. Names are
    not lengthened: KBP37 often marks part of a name (``Democratic`` of
    ``Democratic Party``), and the longer reading would then be taught wrong. Their ids
    carry ``~negb`` (`is_boundary_negative`); their teacher targets are NA only.
    """
    out: list[PairInstance] = []
    for p in pairs:
        if p.label_12 == NA and p.label_21 == NA:
            continue
        if hash_fraction(f"{p.id}~negb", seed) >= rate:
            continue
        rng = random.Random(f"{seed}:{p.id}:b")
        args = [p.e1, p.e2]
        options = [
            (k, cut)
            for k, (s, e) in enumerate(args)
            if e - s > 1
            for cut in ((s + 1, e), (s, e - 1))
        ]
        if not options:
            continue
        which, cut = rng.choice(options)
        args[which] = cut
        out.append(PairInstance(f"{p.id}~negb", p.lang, p.tokens, args[0], args[1], NA, NA,
                                side=p.side))  # fmt: skip
    return out


def is_boundary_negative(pair: PairInstance) -> bool:
    """Whether ``pair`` is one of `boundary_negatives`' (by its id)."""
    return "~negb" in pair.id


def marked_na_bias(pairs: Sequence[PairInstance]) -> float:
    """Log-odds of NA per direction among annotated pairs minus among all ``pairs``.

    0 when no pair is a negative of this module. The model keeps it (its
    ``marked_na_bias``) so that a marked pair is decoded under the annotators'
    NA prior, not the one the negatives taught (`relbridge.models.evaluate.marked_prior`).
    """

    def na_share(ps: Sequence[PairInstance]) -> float:
        labels = [x for p in ps for x in (p.label_12, p.label_21) if x is not None]
        return sum(x == NA for x in labels) / len(labels) if labels else 0.0

    annotated = [p for p in pairs if "~neg" not in p.id]
    if len(annotated) == len(pairs):
        return 0.0
    ann, everything = na_share(annotated), na_share(pairs)
    if not 0.0 < ann < 1.0 or not 0.0 < everything < 1.0:
        return 0.0
    return math.log(ann / (1 - ann)) - math.log(everything / (1 - everything))
