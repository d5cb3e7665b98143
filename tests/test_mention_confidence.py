"""Mention-weighted confidence: a record's confidence carries its arguments' span probabilities."""

import math

import numpy as np
import pytest
import torch

from relbridge.models import extract as extract_mod
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.models.tagging import Tagged

TEXT = "Angela Merkel was born in Berlin and Macron in Paris"
# word spans and the tagger's posterior of each being one mention
TAGGED = [(0, 2, "PER", 0.9), (5, 6, "LOC", 0.4), (7, 8, "PER", 0.1), (9, 10, "LOC", 0.8)]
P = {(0, 13): 0.9, (26, 32): 0.4, (37, 43): 0.1, (47, 52): 0.8}  # the same, by character span
# the tagger's posterior of other word spans being one name, of any type
NAMES = {(s, e): p for s, e, _, p in TAGGED} | {(7, 10): 0.3, (3, 4): 0.01}
RELATION_P = 0.6  # every pair: relation "r" from the first to the second argument


@pytest.fixture()
def model(tiny_encoder, monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(encoder=tiny_encoder, relations=("NA", "r", "s"), dropout=0.0)
    model = RelationExtractor(cfg).eval()
    model.span_threshold = 0.1
    model.scored = []

    def tag(model, sentences, batch_size=16, precision="auto", with_probability=False):
        if with_probability:
            return [Tagged(list(TAGGED), dict(NAMES)) for _ in sentences]
        return [[m[:3] for m in TAGGED] for _ in sentences]

    def score(model, sentences, cfg, passes=None):
        out = []
        for _, pairs in sentences:
            model.scored += [(p.e1, p.e2) for p in pairs]
            probs = np.zeros((len(pairs), 2, 3), np.float32)
            probs[:, 0] = [0.3, RELATION_P, 0.1]
            probs[:, 1] = [0.9, 0.05, 0.05]
            out.append(probs)
        return out, len(out)

    monkeypatch.setattr(extract_mod, "tag_mentions", tag)
    monkeypatch.setattr(extract_mod, "score_pairs", score)
    return model


def _confidences(records):
    return {(tuple(r["subject_span"]), tuple(r["object_span"])): r["confidence"] for r in records}


def test_confidence_is_the_relation_probability_times_the_mentions_geometric_mean(model):
    model.confidence = "relation"
    plain = _confidences(extract_mod.extract(model, [TEXT], threshold=0.0))
    assert len(plain) == 6 and all(c == pytest.approx(RELATION_P) for c in plain.values())
    model.confidence = "relation_x_names"
    weighted = _confidences(extract_mod.extract(model, [TEXT], threshold=0.0))
    assert weighted == {
        (s, o): pytest.approx(RELATION_P * math.sqrt(P[s] * P[o]), abs=1e-5) for s, o in plain
    }


def test_pairs_whose_mentions_keep_them_below_the_threshold_are_never_scored(model):
    model.confidence = "relation_x_names"
    stats: dict[str, int] = {}
    records = extract_mod.extract(model, [TEXT], threshold=0.35, stats=stats)
    # mention factors: Merkel-Berlin .6, Merkel-Macron .3, Merkel-Paris .85, Berlin-Macron .2,
    # Berlin-Paris .57, Macron-Paris .28: three reach 0.35, and only those are scored
    assert stats["candidate_pairs_before"] == 6 and stats["candidate_pairs"] == 3
    assert sorted(model.scored) == [((0, 2), (5, 6)), ((0, 2), (9, 10)), ((5, 6), (9, 10))]
    # of those, the records whose weighted confidence (0.6 x factor) reaches 0.35: not Berlin-Paris
    assert set(_confidences(records)) == {((0, 13), (26, 32)), ((0, 13), (47, 52))}


def _kb(text):
    # "Macron in Paris" (0.3 as one name) and "born" (0.01): KB aliases that the tagger doubts
    return text.split(), [(7, 10, "ORG"), (3, 4, "MISC")]


def test_a_kb_mention_weighs_as_the_tagger_reads_its_words_as_one_name(model):
    model.confidence = "relation_x_names"
    confidences = _confidences(extract_mod.extract(model, [TEXT], threshold=0.0, mentions_of=_kb))
    merkel, born, macron_in_paris = (0, 13), (18, 22), (37, 52)
    assert confidences[merkel, macron_in_paris] == pytest.approx(
        RELATION_P * math.sqrt(0.9 * 0.3), abs=1e-5
    )
    assert confidences[merkel, born] == pytest.approx(RELATION_P * math.sqrt(0.9 * 0.01), abs=1e-5)


def test_a_kb_mention_counts_as_certain_under_the_earlier_confidence(model):
    model.confidence = "relation_x_mentions"  # as calibrated before relation_x_names
    confidences = _confidences(extract_mod.extract(model, [TEXT], threshold=0.0, mentions_of=_kb))
    assert confidences[(0, 13), (37, 52)] == pytest.approx(RELATION_P * math.sqrt(0.9), abs=1e-5)


def test_span_probabilities():
    tagged = Tagged([(0, 2, "PER", 0.9)], {(0, 2): 0.95, (3, 4): 0.2})
    kb = [(3, 4, "LOC"), (5, 7, "ORG")]  # the tagger never scored (5, 7): 0
    assert extract_mod.span_probabilities(tagged, kb, "relation_x_names") == {
        (0, 2): 0.9, (3, 4): 0.2, (5, 7): 0.0,
    }  # fmt: skip
    assert extract_mod.span_probabilities(tagged, kb, "relation_x_mentions") == {
        (0, 2): 0.9, (3, 4): 1.0, (5, 7): 1.0,
    }  # fmt: skip


def test_a_model_without_a_span_threshold_keeps_the_relation_probability(model):
    model.confidence = "relation_x_names"
    model.span_threshold = None  # marginal decoding has no span probabilities
    confidences = _confidences(extract_mod.extract(model, [TEXT], threshold=0.0))
    assert len(confidences) == 6
    assert all(c == pytest.approx(RELATION_P) for c in confidences.values())


def test_mention_factor():
    assert extract_mod.mention_factor(0.25, 1.0) == pytest.approx(0.5)
    assert extract_mod.mention_factor(-0.1, 1.0) == 0.0


def test_lattice_readings_pair_the_other_spans_read_as_one_name_never_overlapping(model):
    model.confidence = "relation_x_names"
    model.readings = "lattice"  # "Macron in Paris" (0.3) beside the decoded Macron and Paris
    records, mentions = extract_mod.extract_with_mentions(model, [TEXT], threshold=0.0)
    confidences = _confidences(records)
    merkel, berlin, macron_in_paris = (0, 13), (26, 32), (37, 52)
    assert len(confidences) == 8  # the 6 pairs of decoded mentions, and the reading's 2
    assert confidences[merkel, macron_in_paris] == pytest.approx(
        RELATION_P * math.sqrt(0.9 * 0.3), abs=1e-5
    )
    assert (berlin, macron_in_paris) in confidences
    assert ((7, 8), (7, 10)) not in model.scored and ((7, 10), (9, 10)) not in model.scored
    assert (*macron_in_paris, "", False) in mentions[0]
    model.readings = "decoded"
    assert len(extract_mod.extract(model, [TEXT], threshold=0.0)) == 6
