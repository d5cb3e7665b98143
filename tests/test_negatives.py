"""Unannotated-pair negatives: NA pairs of the names an annotated sentence does not relate."""

from __future__ import annotations

from relbridge.data_specs.relations import NA
from relbridge.models.data import PairInstance
from relbridge.models.negatives import name_spans, unannotated_negatives

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
