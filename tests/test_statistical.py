"""Link combination rules and the eflomal wrapper."""

import pytest

from relbridge.alignment.statistical import EflomalConfig, eflomal_align
from relbridge.alignment.symmetrize import combine, grow_diag_final, intersection, union

FWD = [(0, 0), (1, 1), (2, 3)]
REV = [(0, 0), (1, 1), (1, 2), (3, 3)]


def test_intersection_and_union():
    assert intersection(FWD, REV) == [(0, 0), (1, 1)]
    assert union(FWD, REV) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]


def test_grow_diag_final_adds_neighbours_of_the_intersection():
    # (1, 2) neighbours (1, 1) and covers unaligned target 2; (2, 3) is a
    # diagonal neighbour of (1, 2) covering unaligned source 2; (3, 3) then has
    # an aligned target, so only the non-"and" final step may add it.
    assert grow_diag_final(FWD, REV, final_and=True) == [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]
    assert grow_diag_final([(0, 0)], [(0, 0), (5, 5)], final_and=True) == [(0, 0), (5, 5)]
    assert grow_diag_final([(0, 0), (0, 5)], [(0, 0)], final_and=True) == [(0, 0)]
    assert grow_diag_final([(0, 0), (0, 5)], [(0, 0)], final_and=False) == [(0, 0), (0, 5)]


def test_unknown_combination_is_an_error():
    with pytest.raises(ValueError, match="unknown combination"):
        combine(FWD, REV, "average")


def test_eflomal_learns_a_toy_lexicon():
    words = [("house", "Haus"), ("cat", "Katze"), ("dog", "Hund"), ("tree", "Baum"), ("car", "Auto")]
    pairs = []
    for n in range(100):
        (s1, t1), (s2, t2) = words[n % 5], words[(n * 3 + 1) % 5]
        if s1 != s2:  # the nouns swap places: only the lexicon can tell
            pairs.append((["the", s1, "and", "the", s2], ["das", t2, "und", "das", t1]))
    links = eflomal_align(pairs, EflomalConfig(n_samplers=2))
    assert len(links) == len(pairs)
    crossed = sum((1, 4) in l and (4, 1) in l for l in links)
    assert crossed >= 0.9 * len(pairs)


def test_eflomal_rejects_empty_sides():
    with pytest.raises(ValueError, match="pair 1 has an empty side"):
        eflomal_align([(["a"], ["b"]), ([], ["c"])])
    with pytest.raises(ValueError):
        EflomalConfig(symmetrize="nope")
