"""Raw-text scores (models/raw_text.py): the metric definitions on tiny in-code sentences."""

import json

import pytest

from relbridge.models.raw_text import GoldSentence, gold_sentences, pair_prediction, raw_text_scores

TEXT = "Billy Hughes led Australia ."
BILLY, AUSTRALIA, LED = (0, 12), (17, 26), (13, 16)


def _record(i, subj, rel, obj, conf=0.9):
    return {"sentence": i, "subject_span": list(subj), "relation": rel, "object_span": list(obj),
            "confidence": conf}  # fmt: skip


GOLD = [
    GoldSentence("1", TEXT, BILLY, AUSTRALIA, "per:employee_of(e1,e2)"),
    GoldSentence("2", TEXT, BILLY, AUSTRALIA, "per:employee_of(e2,e1)"),
    GoldSentence("3", TEXT, BILLY, AUSTRALIA, "no_relation"),
]


def test_a_found_pair_is_scored_by_the_systems_own_output():
    mentions = [
        [(*BILLY, "", False), (*AUSTRALIA, "", True)],  # both found
        [(0, 5, "", False), (*AUSTRALIA, "", False)],  # "Billy" only: the pair is not found
        [(*BILLY, "", False), (*AUSTRALIA, "", False)],
    ]
    records = [
        _record(0, BILLY, "per:employee_of", AUSTRALIA),  # right
        _record(0, BILLY, "per:title", LED, 0.5),  # not the gold pair: wrong for the bound
        _record(1, AUSTRALIA, "per:employee_of", (0, 5)),  # the right relation on a cut span
        _record(2, AUSTRALIA, "org:founded", BILLY),  # a false positive on a no_relation pair
    ]
    s = raw_text_scores(GOLD, records, mentions, with_kb=True)
    assert s["mention_recall"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert s["pair_recall"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert s["triple_recall"] == 50.0  # 1 of the 2 gold facts
    assert s["precision_lower_bound"] == 25.0  # 1 of 4 records
    assert s["triples_per_sentence"] == pytest.approx(4 / 3, abs=1e-3)
    assert s["gold_facts_per_sentence"] == pytest.approx(2 / 3, abs=1e-3)
    assert s["linked_share"] == 12.5  # Australia of the first record is a KB match: 1 of 8
    # relx_f1: employee_of has one gold (e1,e2) hit and one miss (the pair not found) -> F1 2/3;
    # org:founded is predicted once and never gold -> 0; the other 16 relations: 0.
    assert s["relx_f1"] == pytest.approx(100 * (2 / 3) / 18, abs=0.01)


def test_pair_prediction_takes_the_most_confident_record_and_its_direction():
    g = GOLD[0]
    records = [
        _record(0, AUSTRALIA, "org:top_members/employees", BILLY, 0.6),
        _record(0, BILLY, "per:employee_of", AUSTRALIA, 0.4),
    ]
    assert pair_prediction(g, records) == "org:top_members/employees(e2,e1)"
    assert pair_prediction(g, records[1:]) == "per:employee_of(e1,e2)"
    assert pair_prediction(g, []) == "no_relation"


def test_without_any_output_every_pair_is_no_relation():
    s = raw_text_scores(GOLD, [], [[] for _ in GOLD])
    assert s["relx_f1"] == 0.0 and s["mention_recall"] == 0.0 and s["precision_lower_bound"] == 0.0
    assert "linked_share" not in s


def test_gold_sentences_strip_markers_and_trim_spans(tmp_path):
    path = tmp_path / "RELX_en.txt"
    path.write_text(
        '1\t" <e1> Billy Hughes </e1> led <e2> Australia </e2> . "\nper:employee_of(e1,e2)\n',
        encoding="utf-8",
    )
    (g,) = gold_sentences(str(path))
    assert g.text[slice(*g.e1)] == "Billy Hughes" and g.text[slice(*g.e2)] == "Australia"
    assert g.fact == (g.e1, "per:employee_of", g.e2)


def test_calibration_ties_go_to_the_triple_count_nearest_the_true_facts(monkeypatch, tmp_path):
    import relbridge.models.raw_text as raw_text

    gold = [GOLD[2], GOLD[2]]  # no fact: every threshold scores relx_f1 0
    records = [_record(0, BILLY, "per:title", LED, 0.3), _record(1, BILLY, "per:title", LED, 0.6)]
    monkeypatch.setattr(raw_text, "gold_sentences", lambda path, ids=None: gold)
    found = [[(*BILLY, "", False), (*LED, "", False)]] * 2
    sure = {(i, span): 0.9 for i in (0, 1) for span in (BILLY, LED)}
    monkeypatch.setattr(raw_text, "_dev_output", lambda *a, **k: (records, found, sure, set()))
    result = raw_text.calibrate(
        str(tmp_path), "dev.txt", thresholds=(0.0, 0.5, 0.9), save=True, span_thresholds=(0.3,)
    )
    assert result["threshold"] == 0.9  # no triple is nearest to no fact
    assert result["span_threshold"] is None  # a model that finds nothing keeps marginal decoding
    gold = [GOLD[0], GOLD[2]]  # one fact in two sentences: 0.5 triples per sentence
    result = raw_text.calibrate(
        str(tmp_path), "dev.txt", thresholds=(0.0, 0.5, 0.9), save=True, span_thresholds=(0.3,)
    )
    assert result["threshold"] == 0.5 and result["gold_facts_per_sentence"] == 0.5
    assert (tmp_path / "threshold.json").exists()


def test_calibration_takes_the_highest_threshold_that_keeps_the_comparable_score(
    monkeypatch, tmp_path
):
    import relbridge.models.raw_text as raw_text

    # The gold fact at 0.8 and two triples about another pair at 0.2 and 0.6:
    # relx_f1 is the same at 0, 0.5 and 0.7 (only the gold pair counts), so the
    # highest of them wins, keeping one triple instead of three.
    records = [
        _record(0, BILLY, "per:employee_of", AUSTRALIA, 0.8),
        _record(0, BILLY, "per:title", LED, 0.2),
        _record(0, LED, "per:title", AUSTRALIA, 0.6),
    ]
    mentions = [[(*BILLY, "", False), (*AUSTRALIA, "", False), (*LED, "", False)]]
    monkeypatch.setattr(raw_text, "gold_sentences", lambda path, ids=None: [GOLD[0]])
    sure = {(0, span): 0.9 for span in (BILLY, AUSTRALIA, LED)}
    monkeypatch.setattr(raw_text, "_dev_output", lambda *a, **k: (records, mentions, sure, set()))
    result = raw_text.calibrate(
        str(tmp_path), "dev.txt", thresholds=(0.0, 0.5, 0.7, 0.9), save=False,
        span_thresholds=(0.3,), confidences=("relation",), readings=("decoded",),
    )  # fmt: skip
    assert [c["relx_f1"] > 0 for c in result["curve"]] == [True, True, True, False]
    assert result["threshold"] == 0.7
    assert [c["triples_per_sentence"] for c in result["curve"]] == [3, 2, 1, 0]


def test_calibration_takes_the_highest_span_threshold_that_keeps_the_gold_arguments(
    monkeypatch, tmp_path
):
    import relbridge.models.raw_text as raw_text

    records = [
        _record(0, BILLY, "per:employee_of", AUSTRALIA, 0.8),
        _record(0, BILLY, "per:title", LED, 0.9),
    ]
    mentions = [[(*BILLY, "", False), (*AUSTRALIA, "", False), (*LED, "", False)]]
    for australia, expected in ((0.2, 0.1), (0.5, 0.3)):
        probs = {(0, BILLY): 0.9, (0, AUSTRALIA): australia, (0, LED): 0.25}
        monkeypatch.setattr(raw_text, "gold_sentences", lambda path, ids=None: [GOLD[0]])
        monkeypatch.setattr(raw_text, "_dev_output", lambda *a, **k: (records, mentions, probs, set()))
        result = raw_text.calibrate(
            str(tmp_path), "dev.txt", thresholds=(0.0, 0.85), save=False, span_thresholds=(0.1, 0.3)
        )
        assert result["span_threshold"] == expected
        at = {(c["span_threshold"], c["threshold"]): c for c in result["curve"]}
        # at 0.3 the LED mention is gone, and with it the triple about the unannotated pair
        assert at[0.3, 0.0]["triples_per_sentence"] == (0 if australia < 0.3 else 1)
        assert at[0.1, 0.0]["triples_per_sentence"] == 2


def test_calibration_weights_each_record_by_its_mentions(monkeypatch, tmp_path):
    import relbridge.models.raw_text as raw_text

    # The gold fact between two sure names, and a likelier relation between a sure
    # name and a doubtful one (span probability 0.2, still above the span threshold).
    records = [
        _record(0, BILLY, "per:employee_of", AUSTRALIA, 0.8),
        _record(0, BILLY, "per:title", LED, 0.9),
    ]
    mentions = [[(*BILLY, "", False), (*AUSTRALIA, "", False), (*LED, "", False)]]
    probs = {(0, BILLY): 0.9, (0, AUSTRALIA): 0.9, (0, LED): 0.2}
    monkeypatch.setattr(raw_text, "gold_sentences", lambda path, ids=None: [GOLD[0]])
    monkeypatch.setattr(raw_text, "_dev_output", lambda *a, **k: (records, mentions, probs, set()))
    triples = {}
    for confidence in ("relation", "relation_x_names"):
        result = raw_text.calibrate(
            str(tmp_path), "dev.txt", thresholds=(0.5,), save=True, span_thresholds=(0.1,),
            confidences=(confidence,),
        )  # fmt: skip
        triples[confidence] = result["curve"][0]["triples_per_sentence"]
        assert result["confidence"] == confidence
        assert json.loads((tmp_path / "threshold.json").read_text())["confidence"] == confidence
    # weighted, the doubtful pair falls to 0.9 x sqrt(0.9 x 0.2) = 0.38, below 0.5
    assert triples == {"relation": 2, "relation_x_names": 1}
    # offered both, calibration takes the weighted one: the same relx_f1 with one triple less
    result = raw_text.calibrate(
        str(tmp_path), "dev.txt", thresholds=(0.5,), save=False, span_thresholds=(0.1,),
        readings=("decoded",),
    )  # fmt: skip
    assert result["confidence"] == "relation_x_names" and len(result["curve"]) == 2
    with pytest.raises(ValueError, match="confidences"):
        raw_text.calibrate(str(tmp_path), "dev.txt", confidences=("other",))


def test_untagged_words_split_off_what_a_marked_boundary_would():
    from relbridge.data_specs.relx import raw_words, words_with_spans
    from relbridge.models.extract import prepare_sentence

    text = "Il a rejoint l'Université de Montréal, puis Obama's team."
    assert "l'Université" in words_with_spans(text)[0]  # the word pattern alone: one word
    words = prepare_sentence(0, text).words
    assert words[3:5] == ("l'", "Université") and words[9:11] == ("Obama", "'s")
    # a name's inner apostrophe stays, as do contractions and lowercase stems
    assert raw_words("O'Brien don't aujourd'hui") == ["O'Brien", "don't", "aujourd'hui"]
    assert raw_words("Ankara'da 2019'da ABD'nin") == ["Ankara", "'da", "2019", "'da", "ABD", "'nin"]


def test_calibration_chooses_the_lattice_when_a_whole_name_beside_its_parts_pays(
    monkeypatch, tmp_path
):
    import relbridge.models.raw_text as raw_text

    # decoding kept "Billy" (0, 5); the whole "Billy Hughes" is another reading of the same words
    part = (0, 5)
    mentions = [[(*part, "", False), (*BILLY, "", False), (*AUSTRALIA, "", False)]]
    probs = {(0, part): 0.6, (0, BILLY): 0.4, (0, AUSTRALIA): 0.9}
    others = {(0, BILLY)}
    monkeypatch.setattr(raw_text, "gold_sentences", lambda path, ids=None: [GOLD[0]])

    def calibrate(records):
        monkeypatch.setattr(raw_text, "_dev_output", lambda *a, **k: (records, mentions, probs,
                                                                       others))  # fmt: skip
        return raw_text.calibrate(
            str(tmp_path), "dev.txt", thresholds=(0.0,), span_thresholds=(0.1,),
            confidences=("relation",),
        )  # fmt: skip

    whole = _record(0, BILLY, "per:employee_of", AUSTRALIA, 0.7)
    result = calibrate([_record(0, part, "per:employee_of", AUSTRALIA, 0.8), whole])
    at = {c["readings"]: c for c in result["curve"]}
    assert at["decoded"]["relx_f1"] == 0.0 and at["decoded"]["triples_per_sentence"] == 1
    assert at["lattice"]["relx_f1"] > 0.0 and at["lattice"]["triples_per_sentence"] == 2
    assert result["readings"] == "lattice"
    assert json.loads((tmp_path / "threshold.json").read_text())["readings"] == "lattice"
    # when no record needs another reading, the two score alike and the decoded mentions win
    result = calibrate([_record(0, part, "per:employee_of", AUSTRALIA, 0.8)])
    assert result["readings"] == "decoded"
    with pytest.raises(ValueError, match="readings must be some of"):
        raw_text.calibrate(str(tmp_path), "dev.txt", readings=("all",))
