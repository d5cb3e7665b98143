"""Word classes and the link rules of label projection: what a span's links become before the search.

`relbridge.projection.projection.project_span` rewrites a source span's word
links in this order before it searches for the target span
(`relbridge.projection.span_search`); each function here is one rule:

* `verbatim_occurrences` / `choose_occurrence` / `translated_here`: a name
  or number copied unchanged into the target (step 1 of `project_span`);
* `disputed_links`: main links that the second link set contradicts;
* `anchor_links`: name words found verbatim in the target (step 2);
* `fallback_links`: the second, denser link set for unlinked words (step 3);
* `spelled_links` / `spelling_anchors`: names adapted rather than translated.

Links are ``(src_idx, tgt_idx)`` word pairs and spans word offsets ``[start, end)``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from relbridge.data_specs.languages import has_digit, lexicon

Link = tuple[int, int]
Span = tuple[int, int]


def is_punctuation(token: str) -> bool:
    """True for a token made only of punctuation or symbols (hyphens, quotes, commas)."""
    return bool(token) and all(unicodedata.category(c)[0] in "PSZ" for c in token)


def fold(token: str) -> str:
    """Case-folded token without accents' combining marks, for verbatim comparison."""
    text = unicodedata.normalize("NFKD", token.casefold())
    return "".join(c for c in text if not unicodedata.combining(c))


def _name_like(token: str) -> bool:
    """A word that is worth matching verbatim: has a capital or a digit, 2+ word characters."""
    return sum(c.isalnum() for c in token) >= 2 and any(c.isupper() or c.isdigit() for c in token)


def _key(tokens: Sequence[str]) -> str:
    """Tokenisation-insensitive key: folded word characters only (``Al-Qaida`` == ``Al Qaida``)."""
    return "".join(c for t in tokens for c in fold(t) if c.isalnum())


@dataclass(frozen=True)
class FunctionWords:
    """Both languages' function words and number tests, for rule 6 (`trim_function_words`)."""

    src: frozenset[str] = frozenset()
    tgt: frozenset[str] = frozenset()
    src_number: Callable[[str], bool] = has_digit
    tgt_number: Callable[[str], bool] = has_digit

    @classmethod
    def for_pair(cls, src_lang: str | None, tgt_lang: str | None) -> FunctionWords:
        (src, src_number), (tgt, tgt_number) = lexicon(src_lang), lexicon(tgt_lang)
        return cls(src, tgt, src_number, tgt_number)


NO_FUNCTION_WORDS = FunctionWords()
"""No function words on either side: the function-word rules are off."""


def verbatim_occurrences(
    src_words: Sequence[str], tgt_tokens: Sequence[str], max_words: int
) -> list[Span]:
    """Target spans whose tokenisation-insensitive key equals the source words'.

    Only names and numbers count (some word must be `_name_like`), so common
    words shared by two languages do not anchor anything.
    """
    if not any(_name_like(w) for w in src_words):
        return []
    key = _key(src_words)
    if len(key) < 2:
        return []
    found = []
    for start in range(len(tgt_tokens)):
        if is_punctuation(tgt_tokens[start]):
            continue
        so_far = ""
        for end in range(start + 1, min(len(tgt_tokens), start + max_words) + 1):
            so_far += _key(tgt_tokens[end - 1 : end])
            if not key.startswith(so_far):
                break
            if so_far == key and not is_punctuation(tgt_tokens[end - 1]):
                found.append((start, end))
                break
    return found


def choose_occurrence(
    rank: int,
    n_source_occurrences: int,
    candidates: Sequence[Span],
    centre: float | None,
    relative_position: float,
    n_tgt: int,
) -> Span:
    """Picks the target occurrence of a repeated name.

    When the name occurs as often in the target as in the source, the one
    with the same rank (the k-th for the k-th); otherwise the one nearest to
    the span's links (``centre``), or without links the one nearest to the
    source span's relative position in its sentence.
    """
    if len(candidates) == n_source_occurrences:
        return candidates[rank]
    target = centre if centre is not None else relative_position * n_tgt

    def distance(span: Span) -> tuple[float, int]:
        return abs((span[0] + span[1] - 1) / 2 - target), span[0]

    return min(candidates, key=distance)


def link_centre(span: Span, links: Iterable[Link]) -> float | None:
    linked = [t for s, t in links if span[0] <= s < span[1]]
    return sum(linked) / len(linked) if linked else None


def anchor_links(
    span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
) -> set[Link]:
    """Links from name-like source words in ``span`` to identical target words.

    A repeated word is linked to one target occurrence (see `choose_occurrence`).
    """
    links = list(links)
    folded_src = [fold(t) for t in src_tokens]
    folded_tgt = [fold(t) for t in tgt_tokens]
    out: set[Link] = set()
    for s in range(*span):
        if not _name_like(src_tokens[s]):
            continue
        hits = [(t, t + 1) for t, w in enumerate(folded_tgt) if w == folded_src[s]]
        if not hits:
            continue
        same = [i for i, w in enumerate(folded_src) if w == folded_src[s]]
        centre = link_centre((s, s + 1), links)
        if centre is None:
            centre = link_centre(span, links)
        chosen = choose_occurrence(
            same.index(s), len(same), hits, centre, (s + 0.5) / len(src_tokens), len(tgt_tokens)
        )
        if not translated_here(chosen, len(hits), len(same), (s, s + 1), links):
            out.add((s, chosen[0]))
    return out


def translated_here(
    chosen: Span, n_copies: int, n_occurrences: int, span: Span, links: Iterable[Link]
) -> bool:
    """Whether this occurrence of a repeated name was translated, not copied.

    True when the target has fewer copies than the source has occurrences and
    the span has links, none of them into the chosen copy: the links then
    decide (``Times of India`` -> ``Times de l'Inde`` beside ``India Today``).
    """
    if n_copies >= n_occurrences:
        return False
    linked = [t for s, t in links if span[0] <= s < span[1]]
    return bool(linked) and not any(chosen[0] <= t < chosen[1] for t in linked)


def fallback_links(
    span: Span,
    links: Iterable[Link],
    extra_links: Iterable[Link],
    src_tokens: Sequence[str] = (),
    tgt_tokens: Sequence[str] = (),
    function: FunctionWords = NO_FUNCTION_WORDS,
) -> set[Link]:
    """Links of ``extra_links`` from ``span`` that touch a word ``links`` leave unlinked.

    A source word of the span without a main link borrows all its extra
    links; a linked source word borrows only links to target words without a
    main link (``United`` -> ``Vereinigten`` by argmax, ``Staaten`` by itermax),
    and only between content words (see `is_function_word`; needs the tokens):
    a pronoun or article translates to one word, so the second link of one
    that already has its translation is spill onto a neighbour (``his`` ->
    ``seine``, not also ``er``; ``He`` -> ``Il``, not also ``a``), and so is a
    second link of a content word to an article (``Defence`` ->
    ``Verteidigung``, not also the sentence's ``Der``). Such a link stays when
    its target word lies between the name's other linked words (``Committee
    on Budgets`` for ``Haushaltsausschuß``). Links between two words that
    both have main links are never added.

    >>> sorted(fallback_links((0, 2), [(0, 0), (2, 2)], [(0, 0), (0, 2), (0, 3), (1, 1), (2, 2)]))
    [(0, 3), (1, 1)]
    """
    links = list(links)
    src_linked, tgt_linked = {s for s, _ in links}, {t for _, t in links}
    src_first, tgt_first = _first_word(src_tokens), _first_word(tgt_tokens)

    def spill(s: int, t: int) -> bool:  # a second link from or to a function word
        return is_function_word(src_tokens[s], function.src, s == src_first) or is_function_word(
            tgt_tokens[t], function.tgt, t == tgt_first
        )

    borrowed = {
        (s, t)
        for s, t in extra_links
        if span[0] <= s < span[1] and (s not in src_linked or t not in tgt_linked)
    }
    if not (src_tokens and tgt_tokens):
        return borrowed
    spilt = {(s, t) for s, t in borrowed if s in src_linked and spill(s, t)}
    reached = [t for s, t in [*links, *(borrowed - spilt)] if span[0] <= s < span[1]]
    if reached:  # a function word between the name's other words is part of it
        inner = range(min(reached) + 1, max(reached))
        spilt = {(s, t) for s, t in spilt if t not in inner}
    return borrowed - spilt


def _first_word(tokens: Sequence[str]) -> int:
    """Index of a sentence's first word, past opening quotes and other punctuation."""
    return next((k for k, w in enumerate(tokens) if not is_punctuation(w)), 0)


def in_stop_list(word: str, words: frozenset[str]) -> bool:
    """Whether ``word`` (case-folded) is in the stop list, also when its elision mark is split off.

    Stop lists spell elided articles and prepositions with their apostrophe
    (Italian ``l'``, ``dell'``; French ``d'``), while tokenizers that split
    the apostrophe off leave ``l`` ``'`` ``Unione``.

    >>> in_stop_list("l", frozenset({"l'"})), in_stop_list("L'", frozenset({"l'"}))
    (True, True)
    """
    folded = word.casefold()
    return folded in words or (
        folded.isalpha() and (folded + "'" in words or folded + "’" in words)
    )


def is_function_word(word: str, words: frozenset[str], first: bool) -> bool:
    """A stop-list word written as one: lowercase, or capitalised only as a sentence's first word.

    Capitalised stop-list words elsewhere are names (Spanish ``Estados`` of
    ``Estados Unidos``).
    """
    return in_stop_list(word, words) and (first or word == word.lower())


def disputed_links(span: Span, links: Iterable[Link], extra_links: Iterable[Link]) -> set[Link]:
    """Main links from ``span`` that ``extra_links`` contradict.

    A link ``(s, t)`` of the span is disputed when ``extra_links`` lack it
    and link ``t`` only to source words outside the span, one of which has
    no main link: the second aligner explains the target word by a word the
    first left unaligned (``thank`` -> ``bedanken``, which the main links
    gave to ``Party``).

    >>> sorted(disputed_links((1, 2), [(0, 0), (1, 1), (1, 2)], [(0, 0), (1, 1), (3, 2)]))
    [(1, 2)]
    """
    links, extra = list(links), set(extra_links)
    main_src = {s for s, _ in links}
    claims: dict[int, set[int]] = {}
    for s, t in extra:
        claims.setdefault(t, set()).add(s)
    return {
        (s, t)
        for s, t in links
        if span[0] <= s < span[1]
        and (s, t) not in extra
        and claims.get(t)
        and not any(span[0] <= o < span[1] for o in claims[t])
        and any(o not in main_src for o in claims[t])
    }


def spelling_ratio(a: str, b: str) -> float:
    """`difflib` similarity of two words, case and accents folded (0-1)."""
    from difflib import SequenceMatcher

    return SequenceMatcher(None, fold(a), fold(b)).ratio()


def spelled_links(
    span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    min_ratio: float,
) -> list[Link]:
    """``links`` without the others of a name word that is linked to its own spelling.

    When a name-like word of ``span`` is linked to several target words and
    some of them are spelled like it (ratio >= ``min_ratio``), only those
    links are kept: the aligner found the name's adapted form, and its other
    links are the usual spill onto a neighbour (``Pakistani`` -> ``chaîne``
    and ``pakistanaise``). A word none of whose links is spelled alike keeps
    them all.

    >>> spelled_links((1, 2), [(0, 0), (1, 1), (1, 3)], ["a", "Pakistani", "station"],
    ...               ["une", "chaîne", "de", "pakistanaise"], 0.8)
    [(0, 0), (1, 3)]
    """
    links = sorted(set(links))
    drop = set()
    for s in range(*span):
        if not _name_like(src_tokens[s]):
            continue
        own = [(s2, t) for s2, t in links if s2 == s]
        alike = {
            link for link in own if spelling_ratio(src_tokens[s], tgt_tokens[link[1]]) >= min_ratio
        }
        if alike and len(alike) < len(own):
            drop |= set(own) - alike
    return [link for link in links if link not in drop]


def spelling_anchors(
    span: Span,
    links: Iterable[Link],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    min_ratio: float,
) -> set[Link]:
    """Links from still unlinked name-like words of ``span`` to their nearest spelling.

    A name word that no link reaches (``Lebanon``) is linked to the target
    word spelled most alike (``Libanon``: `difflib` ratio 0.86), when that
    ratio is at least ``min_ratio`` and no source word outside the span that
    is linked to the target word is spelled as much like it: aligners give an
    adapted name to a neighbour of a similar meaning (``Lebanese`` ->
    ``Libanon``, ratio 0.53) while the name itself stays unlinked. Catches
    names that are adapted rather than translated, which subword encoders
    often fail to align.

    >>> spelling_anchors((1, 2), [], ["in", "Lebanon"], ["im", "Libanon"], 0.7)
    {(1, 1)}
    """
    links = list(links)
    linked = {s for s, _ in links}
    claims: dict[int, list[int]] = {}  # target word -> linked source words outside the span
    for s, t in links:
        if not span[0] <= s < span[1]:
            claims.setdefault(t, []).append(s)
    out = set()
    for s in range(*span):
        if s in linked or not _name_like(src_tokens[s]):
            continue
        scored = []
        for t, w in enumerate(tgt_tokens):
            ratio = 0.0 if is_punctuation(w) else spelling_ratio(src_tokens[s], w)
            if ratio >= min_ratio and all(
                spelling_ratio(src_tokens[o], w) < ratio for o in claims.get(t, ())
            ):
                scored.append((ratio, -abs(t - s), t))
        if scored:
            out.add((s, max(scored)[2]))
    return out
