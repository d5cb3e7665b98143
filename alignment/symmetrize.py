"""Combining two sets of word links: intersection, union, grow-diag-final(-and), fill.

Used to symmetrise a statistical aligner's two directions and to combine
neural and statistical links. Links are ``(src_idx, tgt_idx)`` word pairs; every
function returns a sorted list.

grow-diag-final(-and) follows Koehn et al. (2003) / Moses: start from the
intersection, repeatedly add neighbouring union links (including diagonal
neighbours) that cover a still-unaligned source or target word, then (final)
add remaining union links for unaligned words; ``-and`` requires both words to
be unaligned in that last step, which favours precision.

``fill`` is asymmetric: all of ``a`` plus the links of ``b`` whose source and
target words ``a`` left both unaligned. It suits a precise first set (neural
mutual-argmax links) completed by a second one (eflomal's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Links = Iterable[tuple[int, int]]

_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def intersection(a: Links, b: Links) -> list[tuple[int, int]]:
    return sorted(set(a) & set(b))


def union(a: Links, b: Links) -> list[tuple[int, int]]:
    return sorted(set(a) | set(b))


def grow_diag_final(a: Links, b: Links, final_and: bool = True) -> list[tuple[int, int]]:
    """Symmetrises two link sets (e.g. forward and reverse directions)."""
    a, b = set(a), set(b)
    alignment = a & b
    candidates = a | b
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}

    def add(link: tuple[int, int]) -> None:
        alignment.add(link)
        src_aligned.add(link[0])
        tgt_aligned.add(link[1])

    grew = True
    while grew:
        grew = False
        for i, j in sorted(alignment):
            for di, dj in _NEIGHBOURS:
                link = (i + di, j + dj)
                if (
                    link in candidates
                    and link not in alignment
                    and (link[0] not in src_aligned or link[1] not in tgt_aligned)
                ):
                    add(link)
                    grew = True
    for direction in (a, b):
        for i, j in sorted(direction):
            if (i, j) in alignment:
                continue
            src_free, tgt_free = i not in src_aligned, j not in tgt_aligned
            if (src_free and tgt_free) if final_and else (src_free or tgt_free):
                add((i, j))
    return sorted(alignment)


def grow_diag_final_and(a: Links, b: Links) -> list[tuple[int, int]]:
    return grow_diag_final(a, b, final_and=True)


def fill(a: Links, b: Links) -> list[tuple[int, int]]:
    """``a`` plus the links of ``b`` between words that ``a`` leaves unaligned on both sides."""
    a = set(a)
    src_aligned = {i for i, _ in a}
    tgt_aligned = {j for _, j in a}
    return sorted(a | {(i, j) for i, j in b if i not in src_aligned and j not in tgt_aligned})


COMBINERS: dict[str, Callable[[Links, Links], list[tuple[int, int]]]] = {
    "intersection": intersection,
    "union": union,
    "grow-diag-final": lambda a, b: grow_diag_final(a, b, final_and=False),
    "grow-diag-final-and": grow_diag_final_and,
    "fill": fill,
}
"""Link combiners by name (used for symmetrisation and neural+statistical links)."""


def combine(a: Links, b: Links, how: str) -> list[tuple[int, int]]:
    """Combines two link sets with the named rule (see `COMBINERS`)."""
    try:
        return COMBINERS[how](a, b)
    except KeyError:
        raise ValueError(f"unknown combination {how!r}; choose from {sorted(COMBINERS)}") from None
