"""The span search of label projection: which target words a source span becomes, and trimming.

After `relbridge.projection.link_rules` has rewritten a span's links,
`relbridge.projection.projection.project_span` takes the target span from
them: `bracketed_span` (a name that fills brackets), else `best_f1_span`
(source coverage x target purity, with `joining_words`) or the older
`best_contiguous_span` (summed weights); then `trim_span` (edge
punctuation) and `trim_function_words` (edge function words, sparing
`sole_translations`); `span_confidence` scores the result.

Links are ``(src_idx, tgt_idx)`` word pairs and spans word offsets ``[start, end)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from relbridge.projection.config import ProjectConfig
from relbridge.projection.link_rules import (
    FunctionWords,
    Link,
    Span,
    fold,
    in_stop_list,
    is_function_word,
    is_punctuation,
)


def trim_span(span: Span, tgt_tokens: Sequence[str], src_words: Sequence[str] = ()) -> Span | None:
    """Cuts punctuation/hyphen tokens off both edges; ``None`` if nothing is left.

    The source span's own edge punctuation belongs to the name: an edge token
    equal to it is kept, and when the trimmed span is directly followed
    (preceded) by it in the target, the span takes it (``Metro Inc .``,
    ``Comité Europeo de Normalización ( CEN )``), since aligners rarely link
    an abbreviation's period or a closing bracket.

    >>> trim_span((0, 2), ["Metro", "Inc", ".", "sagte"], ["Metro", "Inc", "."])
    (0, 3)
    """
    first = src_words[0] if src_words and is_punctuation(src_words[0]) else None
    last = src_words[-1] if src_words and is_punctuation(src_words[-1]) else None
    start, end = span
    while start < end and is_punctuation(tgt_tokens[start]) and tgt_tokens[start] != first:
        start += 1
    while end > start and is_punctuation(tgt_tokens[end - 1]) and tgt_tokens[end - 1] != last:
        end -= 1
    if start >= end:
        return None
    if first is not None and start > 0 and tgt_tokens[start - 1] == first != tgt_tokens[start]:
        start -= 1
    if (
        last is not None
        and end < len(tgt_tokens)
        and tgt_tokens[end] == last != tgt_tokens[end - 1]
    ):
        end += 1
    return start, end


def trim_function_words(
    span: Span,
    tgt_tokens: Sequence[str],
    src_words: Sequence[str],
    words: FunctionWords,
    keep: Iterable[int] = (),
) -> Span:
    """Cuts target function words off the span's start, and off its end where the name has none.

    An edge word goes when it is lowercase, in ``words.tgt``, not a number
    word (stop lists hold ``sechs``, ``cinco``) and not one of the name's own
    words, and when the name's edge word on the same side is not a number
    (``sixth periodic report`` keeps ``sechsten``) nor, at the end, a
    function word (``University of`` keeps ``von``). A source name's leading
    article licenses none in the target (``die Niederlande`` -> ``Pays-Bas``,
    not ``l' Pays-Bas``): whether an article is inside a name's annotation
    differs between languages and annotators, and most target annotations
    leave it out. Indices in ``keep`` (see `sole_translations`) are not cut
    unless the next word inwards is capitalised, and at least one word is
    always kept.

    >>> fw = FunctionWords(frozenset({"the"}), frozenset({"in", "der"}))
    >>> trim_function_words((0, 4), ["in", "der", "Bundesrepublik", "Deutschland"],
    ...                     ["Federal", "Republic", "of", "Germany"], fw)
    (2, 4)
    """
    if not words.tgt or not src_words:
        return span
    own = {fold(w) for w in src_words}

    def cut(word: str, src_edge: str, licensed: bool) -> bool:
        return (
            is_function_word(word, words.tgt, first=False)
            and not words.tgt_number(word)
            and fold(word) not in own
            and not (licensed and in_stop_list(src_edge, words.src))
            and not words.src_number(src_edge)
        )

    keep = set(keep)

    def kept(edge: int, inner: int) -> bool:  # beside a capitalised word it acts as an article
        return edge in keep and not tgt_tokens[inner][:1].isupper()

    start, end = span
    while (
        end - start > 1
        and not kept(start, start + 1)
        and cut(tgt_tokens[start], src_words[0], licensed=False)
    ):
        start += 1
    while (
        end - start > 1
        and not kept(end - 1, end - 2)
        and cut(tgt_tokens[end - 1], src_words[-1], licensed=True)
    ):
        end -= 1
    return start, end


def sole_translations(
    src_span: Span,
    tgt_span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    src_function: frozenset[str],
) -> set[int]:
    """Target words in ``tgt_span`` that are the only link of a source content word of the name.

    Such a word translates part of the name (``Government`` -> ``governo``,
    ``Agreement`` -> ``acuerdo``) even when a stop list calls it a function word.
    """
    targets: dict[int, set[int]] = {}
    for s, t in links:
        if src_span[0] <= s < src_span[1] and tgt_span[0] <= t < tgt_span[1]:
            targets.setdefault(s, set()).add(t)
    return {
        next(iter(ts))
        for s, ts in targets.items()
        if len(ts) == 1 and _content_word(src_tokens[s], src_function)
    }


def _content_word(word: str, function_words: frozenset[str]) -> bool:
    """A word of two or more letters that is not a function word (``'s`` splits into ``s``)."""
    return sum(c.isalpha() for c in word) > 1 and not in_stop_list(word, function_words)


_CLOSING = {
    "(": ")",
    "[": "]",
    "{": "}",
    "（": "）",
    "［": "］",
    "｛": "｝",
    "【": "】",
    "〔": "〕",
}
_BRACKETS = frozenset(_CLOSING) | frozenset(_CLOSING.values())


def _is_bracket(word: str) -> bool:
    return word in _BRACKETS


def bracketed_span(
    span: Span, links: Iterable[Link], src_tokens: Sequence[str], tgt_tokens: Sequence[str]
) -> Span | None:
    """The content of the target brackets linked to the brackets the source name fills.

    ``None`` unless the words just before and after ``span`` are a matching
    pair of brackets, each linked to the same kind of bracket in the target,
    in order and with no bracket between them, and one of the span's links
    lands inside the target pair.

    >>> bracketed_span((2, 4), [(1, 1), (2, 3), (3, 5), (4, 4)],
    ...                ["the", "(", "Italian", "Navy", ")", "yard"],
    ...                ["la", "(", "Marine", "italienne", ")", "naval"])
    (2, 4)
    """
    start, end = span
    if start < 1 or end >= len(src_tokens):
        return None
    opening, closing = src_tokens[start - 1], src_tokens[end]
    if _CLOSING.get(opening) != closing:
        return None
    links = list(links)
    opens = [t for s, t in links if s == start - 1 and tgt_tokens[t] == opening]
    closes = [t for s, t in links if s == end and tgt_tokens[t] == closing]
    inner = [t for s, t in links if start <= s < end]
    for a in opens:
        for b in closes:
            if (
                a + 1 < b
                and not any(_is_bracket(w) for w in tgt_tokens[a + 1 : b])
                and any(a < t < b for t in inner)
            ):
                return a + 1, b
    return None


def joining_words(
    span: Span, links: Iterable[Link], tgt_tokens: Sequence[str], tgt_function: frozenset[str]
) -> set[int]:
    """Unlinked function words that join two target words of one source word of ``span``.

    A one-to-many translation of one word often holds a preposition or
    conjunction that no link reaches (``Kohäsionsfonds`` -> ``Fondo de
    cohesión``, ``Letter Carriers`` -> ``facteurs et factrices``). Only a run
    of such words, lowercase and in ``tgt_function``, between two consecutive
    target words of the same source word counts.

    >>> sorted(joining_words((0, 1), [(0, 0), (0, 2)], ["Fondo", "de", "cohesión"], frozenset({"de"})))
    [1]
    """
    linked = {t for _, t in links}
    targets: dict[int, list[int]] = {}
    for s, t in links:
        if span[0] <= s < span[1] and 0 <= t < len(tgt_tokens):
            targets.setdefault(s, []).append(t)
    out: set[int] = set()
    for ts in targets.values():
        ts = sorted(set(ts))
        for a, b in itertools.pairwise(ts):
            gap = range(a + 1, b)
            if gap and all(
                t not in linked and is_function_word(tgt_tokens[t], tgt_function, False) for t in gap
            ):
                out.update(gap)
    return out


def best_f1_span(
    span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    cfg: ProjectConfig,
    blocked: Sequence[bool] = (),
    tgt_function: frozenset[str] = frozenset(),
) -> Span | None:
    """The candidate target span with the best source coverage / target purity F1.

    Candidates start and end on a (non-punctuation) target word linked into
    ``span`` and cross no run of more than ``cfg.max_gap`` words without such
    a link, nor a blocked word, nor a bracket when the source name has none.
    Coverage is the share of the source span's (non-punctuation) words with a
    link into the candidate; purity is the mean over its
    (non-punctuation) words of ``in/(in+out)`` (linked into / outside the
    source span), 1 (`joining_words`, given the target's ``tgt_function``),
    ``cfg.unlinked_credit`` (other unlinked words) or 0 (linked only
    outside). Ties go to the span with more target words linked into
    ``span`` (a one-to-many link: ``Reino Unido`` for ``UK`` when both words
    link to it), then the shorter, then the leftmost.

    >>> from relbridge.projection.config import ProjectConfig
    >>> src, tgt = ["European", "Union", "policy"], ["política", "de", "la", "Unión", "Europea"]
    >>> best_f1_span((0, 3), [(0, 4), (1, 3), (2, 0)], src, tgt, ProjectConfig())
    (0, 5)
    """
    n = len(tgt_tokens)
    inside, outside = [0] * n, [0] * n
    reaches: list[set[int]] = [set() for _ in range(n)]
    for s, t in links:
        if 0 <= t < n:
            if span[0] <= s < span[1]:
                inside[t] += 1
                reaches[t].add(s)
            else:
                outside[t] += 1
    src_words = {s for s in range(*span) if not is_punctuation(src_tokens[s])} or set(range(*span))
    purity_sum, words = [0.0], [0]  # prefix sums over non-punctuation target words
    joined = joining_words(span, links, tgt_tokens, tgt_function)
    for t in range(n):
        counted = not is_punctuation(tgt_tokens[t])
        if inside[t]:
            value = inside[t] / (inside[t] + outside[t])
        elif t in joined:
            value = 1.0
        else:
            value = 0.0 if outside[t] else cfg.unlinked_credit
        purity_sum.append(purity_sum[-1] + value * counted)
        words.append(words[-1] + counted)
    # brackets delimit what they enclose: a name without one never spans one
    if not any(_is_bracket(w) for w in src_tokens[span[0] : span[1]]):
        walls = [_is_bracket(w) for w in tgt_tokens]
        blocked = [b or w for b, w in zip(blocked or [False] * n, walls)]
    positions = [t for t in range(n) if inside[t] and not (blocked and blocked[t])]
    # a span never starts or ends on punctuation (trimming would cut it) unless only punctuation is linked
    positions = [t for t in positions if not is_punctuation(tgt_tokens[t])] or positions
    best_key, best_span = None, None
    for k, a in enumerate(positions):
        prev, covered = a, set()
        for n_linked, b in enumerate(positions[k:], start=1):
            if b - prev - 1 > cfg.max_gap or (blocked and any(blocked[prev + 1 : b])):
                break
            prev = b
            covered |= reaches[b] & src_words
            n_words = words[b + 1] - words[a]
            purity = (purity_sum[b + 1] - purity_sum[a]) / n_words if n_words else 1.0
            coverage = len(covered) / len(src_words)
            score = 2 * purity * coverage / (purity + coverage) if purity + coverage else 0.0
            key = (round(score, 9), n_linked, -(b - a), -a)
            if best_key is None or key > best_key:
                best_key, best_span = key, (a, b + 1)
    return best_span


def target_weights(
    span: Span, links: Iterable[Link], n_tgt: int, cfg: ProjectConfig
) -> tuple[list[float], list[int]]:
    """Per target word: its span-search weight and its number of links from ``span``.

    Returns:
      ``(weights, inside)``, both of length ``n_tgt``.
    """
    inside, outside = [0] * n_tgt, [0] * n_tgt
    for s, t in links:
        if 0 <= t < n_tgt:
            if span[0] <= s < span[1]:
                inside[t] += 1
            else:
                outside[t] += 1
    weights = []
    for i, o in zip(inside, outside):
        if i:
            weights.append(i / (i + o))
        elif o:
            weights.append(-cfg.outside_penalty)
        else:
            weights.append(-cfg.gap_penalty)
    return weights, inside


def best_contiguous_span(
    weights: Sequence[float], inside: Sequence[int], max_gap: int, blocked: Sequence[bool] = ()
) -> Span | None:
    """The span with the largest summed weight that starts and ends on a linked word.

    Runs of more than ``max_gap`` words without a link from the source span
    are never crossed, nor is a blocked word. Ties go to the shorter span,
    then the leftmost.
    """
    prefix = [0.0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    best_key: tuple[float, int, int] | None = None  # (score, -length, -start)
    best_span = None
    positions = [t for t, n in enumerate(inside) if n and not (blocked and blocked[t])]
    for k, a in enumerate(positions):
        prev = a
        for b in positions[k:]:
            if b - prev - 1 > max_gap or (blocked and any(blocked[prev + 1 : b])):
                break
            prev = b
            key = (prefix[b + 1] - prefix[a], -(b - a), -a)
            if best_key is None or key > best_key:
                best_key, best_span = key, (a, b + 1)
    return best_span


def span_confidence(
    span: Span,
    src_span: Span,
    links: Iterable[Link],
    weights: Sequence[float],
    inside: Sequence[int],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
) -> float:
    """Harmonic mean of link coverage, source coverage and target purity.

    * link coverage: share of the source span's links that land in ``span``;
    * source coverage: share of the source span's (non-punctuation) words with
      a link into ``span``;
    * target purity: mean weight (clipped at 0) of the target span's
      (non-punctuation) words, i.e. how exclusively they link to the source span.
    """
    total = sum(inside)
    if not total:
        return 0.0
    link_cov = sum(inside[span[0] : span[1]]) / total
    src_words = [s for s in range(*src_span) if not is_punctuation(src_tokens[s])] or list(
        range(*src_span)
    )
    reached = {s for s, t in links if span[0] <= t < span[1]}
    src_cov = sum(s in reached for s in src_words) / len(src_words)
    tgt_words = [t for t in range(*span) if not is_punctuation(tgt_tokens[t])] or list(range(*span))
    purity = sum(max(weights[t], 0.0) for t in tgt_words) / len(tgt_words)
    parts = (link_cov, src_cov, purity)
    if min(parts) <= 0:
        return 0.0
    return len(parts) / sum(1 / x for x in parts)
