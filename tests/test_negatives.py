"""Unannotated-pair negatives: NA pairs of the names an annotated sentence does not relate."""

from __future__ import annotations

import pytest

from relbridge.data_specs.relations import NA
from relbridge.models.data import PairInstance
from relbridge.models.negatives import (
    boundary_negatives,
    is_boundary_negative,
    marked_na_bias,
    name_spans,
    unannotated_negatives,
)

WORDS = tuple("Ada Lovelace worked with Charles Babbage in London for the University of London .".split())
GOLD = PairInstance("s1", "en", WORDS, (0, 2), (4, 6), "per:employee_of", NA, side="relx")


def test_name_spans_are_capitalised_runs_joined_by_connectors():
    assert name_spans(WORDS) == [(0, 2), (4, 6), (7, 8), (10, 13)]
    assert name_spans("founded in 1998 by the Bank of America".split()) == [(2, 3), (5, 8)]
    assert name_spans("in the city of london".split()) == []


def test_negatives_pair_other_names_never_the_annotated_pair_and_are_na_both_ways():
    negatives = unannotated_negatives([GOLD], rate=3, seed=0)
    assert len(negatives) == 3
    annotated = {GOLD.e1, GOLD.e2}
    for k, n in enumerate(negatives):
        assert n.id == f"s1~neg{k}" and n.tokens == WORDS and n.side == "relx"
        assert (n.label_12, n.label_21) == (NA, NA)
        assert n.e1 < n.e2  # word order, as extraction builds its pairs
        assert {n.e1, n.e2} != annotated
        assert {n.e1, n.e2} <= {(0, 2), (4, 6), (7, 8), (10, 13)}


def test_the_rate_is_met_on_average_and_the_draw_is_stable():
    pairs = [
        PairInstance(f"s{i}", "en", WORDS, (0, 2), (4, 6), "per:employee_of", NA) for i in range(400)
    ]
    drawn = unannotated_negatives(pairs, rate=0.5, seed=3)
    assert 150 <= len(drawn) <= 250
    assert drawn == unannotated_negatives(pairs, rate=0.5, seed=3)
    assert unannotated_negatives(pairs, rate=0.0) == []


def test_a_sentence_without_other_names_gives_no_negative():
    words = tuple("Ada met Charles .".split())
    only = PairInstance("s", "en", words, (0, 1), (2, 3), NA, NA)
    assert unannotated_negatives([only], rate=2) == []


def test_the_marked_prior_undoes_the_na_share_the_negatives_added():
    import math

    import numpy as np
    import torch

    from relbridge.models.evaluate import marked_prior

    related = [PairInstance(f"r{i}", "en", WORDS, (0, 2), (4, 6), "per:title", NA) for i in range(3)]
    unrelated = [PairInstance("u", "en", WORDS, (0, 2), (4, 6), NA, NA)]
    assert marked_na_bias(related + unrelated) == 0.0  # no negatives: nothing to undo
    negatives = unannotated_negatives(related + unrelated, rate=1, seed=0)
    bias = marked_na_bias(related + unrelated + negatives)
    # NA per direction: annotated 5 of 8; with the 4 negatives 13 of 16.
    assert bias == math.log(5 / 3) - math.log(13 / 3)

    class Model(torch.nn.Module):
        def __init__(self, b):
            super().__init__()
            self.register_buffer("marked_na_bias", torch.tensor(b))

    probs = np.array([[[0.6, 0.3, 0.1], [0.8, 0.1, 0.1]]])  # (pairs, directions, relations)
    shifted = marked_prior(probs, Model(bias))
    np.testing.assert_allclose(shifted.sum(-1), 1.0, rtol=1e-6)
    assert shifted[0, 0, 0] < 0.6
    assert shifted[0, 0, 1] / shifted[0, 0, 2] == pytest.approx(3.0)  # relations keep their odds
    np.testing.assert_array_equal(marked_prior(probs, Model(0.0)), probs)


def test_boundary_negatives_cut_one_argument_of_a_related_pair_by_a_word():
    pairs = [
        PairInstance(f"s{i}", "en", WORDS, (0, 2), (4, 6), "per:employee_of", NA, side="relx")
        for i in range(40)
    ]
    drawn = boundary_negatives(pairs, rate=1.0, seed=0)
    assert len(drawn) == 40 and drawn == boundary_negatives(pairs, rate=1.0, seed=0)
    cuts = set()
    for n in drawn:
        assert is_boundary_negative(n) and n.id.endswith("~negb") and n.side == "relx"
        assert (n.label_12, n.label_21) == (NA, NA) and n.tokens == WORDS
        (kept, cut), = [(g, c) for g, c in ((GOLD.e1, n.e1), (GOLD.e2, n.e2)) if g != c]
        assert cut in ((kept[0] + 1, kept[1]), (kept[0], kept[1] - 1))  # a word off one end
        cuts.add(cut)
    assert cuts == {(1, 2), (0, 1), (5, 6), (4, 5)}  # either argument, either end
    assert 10 <= len(boundary_negatives(pairs, rate=0.5, seed=1)) <= 30


def test_boundary_negatives_skip_unrelated_pairs_and_one_word_names():
    unrelated = PairInstance("u", "en", WORDS, (0, 2), (4, 6), NA, NA)
    single = PairInstance("w", "en", WORDS, (7, 8), (9, 10), "per:title", NA)
    assert boundary_negatives([unrelated, single], rate=1.0) == []
    # they are negatives for the marked prior too
    cut = boundary_negatives([GOLD], rate=1.0)
    assert marked_na_bias([GOLD, *cut]) < 0.0  # the annotated pairs' NA share is lower
