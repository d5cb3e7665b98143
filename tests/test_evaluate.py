"""Metrics: the RELX metric on hand-made labels, P/R/F1 without NA, held-out AUC and its PR
curve, joint decoding."""

import numpy as np
import pytest

from relbridge.data_specs.relations import KBP37_RELATIONS, NA
from relbridge.models.evaluate import (
    decode_joint,
    held_out_auc,
    pr_curve,
    prf_without_na,
    relx_f1,
)

EMP12, EMP21 = "per:employee_of(e1,e2)", "per:employee_of(e2,e1)"
CITY12 = "org:city_of_headquarters(e1,e2)"


def test_relx_metric_by_hand():
    gold = [EMP12, EMP12, EMP21, CITY12, "no_relation", "no_relation"]
    pred = [EMP12, EMP21, EMP21, "no_relation", CITY12, "no_relation"]
    # employee_of: labels {EMP12, EMP21}: tp = 2 (rows 0, 2); predicted 3; gold 3 -> F1 = 2/3.
    # city_of_headquarters: tp = 0 -> F1 = 0. The other 16 relations: F1 = 0 (never seen).
    expected = 100 * (2 / 3) / 18
    assert relx_f1(gold, pred) == pytest.approx(expected)
    # Only two relations in the inventory: the mean is over those two.
    assert relx_f1(gold, pred, ["per:employee_of", "org:city_of_headquarters"]) == pytest.approx(
        100 * (2 / 3) / 2
    )


def test_relx_metric_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = ["no_relation"] + [f"{r}({d})" for r in KBP37_RELATIONS for d in ("e1,e2", "e2,e1")]
    gold = list(rng.choice(labels, 300))
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    expected = np.mean(
        [
            sklearn.f1_score(
                gold, pred, labels=[f"{r}(e1,e2)", f"{r}(e2,e1)"], average="micro", zero_division=0
            )
            for r in KBP37_RELATIONS
        ]
    )
    assert relx_f1(gold, pred) == pytest.approx(100 * expected)


def test_micro_and_macro_without_na():
    gold = ["a", "a", "b", NA, NA]
    pred = ["a", NA, "a", "b", NA]
    m = prf_without_na(gold, pred)
    # tp 1 ("a" row 0); predicted non-NA 3; gold non-NA 3.
    assert m["micro_p"] == pytest.approx(100 / 3) and m["micro_r"] == pytest.approx(100 / 3)
    assert m["micro_f1"] == pytest.approx(100 / 3)
    # a: p 1/2, r 1/2 -> 0.5; b: 0 -> macro 25.
    assert m["macro_f1"] == pytest.approx(25.0)


def test_held_out_auc():
    # Perfect ranking: both facts ranked first -> precision 1 at every recall -> AUC 100.
    scores = np.array([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8], [0.9, 0.05, 0.05]])
    assert held_out_auc(scores, [1, 2, 0]) == pytest.approx(100.0)
    # Worst ranking for one fact: the only fact is ranked last of 6 candidates.
    scores = np.array([[0.5, 0.1, 0.4], [0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
    auc = held_out_auc(scores, [1, 0, 0])
    assert 0.0 < auc < 30.0
    assert held_out_auc(scores, [0, 0, 0]) == 0.0


def test_joint_decoding_picks_one_direction():
    names = (NA, "r", "s")
    assert decode_joint(np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1]]), names)[:2] == (NA, NA)
    assert decode_joint(np.array([[0.3, 0.6, 0.1], [0.2, 0.1, 0.7]]), names)[:2] == (NA, "s")
    label_12, label_21, conf = decode_joint(np.array([[0.3, 0.6, 0.1], [0.9, 0.05, 0.05]]), names)
    assert (label_12, label_21) == ("r", NA) and conf == pytest.approx(0.6)


def test_pr_curve_ranks_every_relation_of_every_row():
    scores = np.array([[0.1, 0.9, 0.0], [0.2, 0.0, 0.8], [0.6, 0.3, 0.1]])
    recall, precision = pr_curve(scores, [1, 0, 0])
    # Ranked: row0/r1 (hit), row1/r2, row2/r1, ... -> one fact found first.
    assert recall[0] == 1.0 and precision[0] == 1.0 and precision[1] == 0.5
    assert len(recall) == 6 and pr_curve(scores, [0, 0, 0])[0].size == 0


def test_skipped_records_count_as_missed(tmp_path):
    from relbridge.models.data import PairInstance, SkippedPair, read_relx_data
    from relbridge.models.evaluate import score

    names = (NA, "per:spouse")
    pairs = [
        PairInstance(
            "1", "en", ("Ann", "and", "Bob"), (0, 1), (2, 3), "per:spouse", NA, side="relx"
        )
    ]
    probs = np.array([[[0.1, 0.9], [0.9, 0.1]]])
    alone = score(pairs, probs, names)
    assert alone["micro_r"] == 100.0 and alone["relx_f1"] == pytest.approx(100 / 18)
    missed = score(pairs, probs, names, [SkippedPair("2", "en", NA, "per:spouse")])
    assert missed["skipped"] == 1 and missed["micro_r"] == 50.0 and missed["micro_p"] == 100.0
    assert missed["relx_f1"] == pytest.approx(100 * (2 / 3) / 18)
    # The reader keeps an empty entity's record as skipped, with its directed gold label.
    path = tmp_path / "RELX_en.txt"
    path.write_text(
        '7\t" the <e1> </e1> Prize at <e2> Basel </e2> . "\nper:spouse(e2,e1)\n\n\n',
        encoding="utf-8",
    )
    data = read_relx_data(str(path))
    assert not data.pairs and data.skipped == [SkippedPair("7", "en", NA, "per:spouse")]


def test_tagging_scores_by_hand():
    from relbridge.models.data import TagInstance
    from relbridge.models.tagging import tagging_scores

    words = ("a", "b", "c", "d", "e", "f")
    complete = TagInstance("1", "en", words, ((0, 2, "PER"), (3, 4, "LOC")))
    partial = TagInstance("2", "en", words, ((1, 2, ""), (4, 6, "")), complete=False)
    found = [
        [(0, 2, "PER"), (3, 4, "ORG"), (5, 6, "LOC")],  # one exact, one wrong type, one extra
        [(1, 2, "PER"), (0, 1, "LOC")],  # a partial gold: the extra mention is no error
    ]
    scores = tagging_scores(found, [complete, partial])
    assert scores["gold_mentions"] == 4 and scores["found_mentions"] == 5
    assert scores["recall"] == pytest.approx(50.0)  # typed gold: only the complete sentence's
    assert scores["span_recall"] == pytest.approx(75.0)  # 3 of 4 spans
    # precision only where every mention is annotated: 1 of 3 typed, 2 of 3 spans
    assert scores["precision"] == pytest.approx(100 / 3)
    assert scores["span_precision"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(2 * (100 / 3) * 50 / (100 / 3 + 50))
    only_partial = tagging_scores(found[1:], [partial])
    assert "precision" not in only_partial and "recall" not in only_partial
    assert only_partial["span_recall"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        tagging_scores(found, [complete])


def test_span_decoding_takes_the_likeliest_whole_spans_above_the_threshold():
    from relbridge.models.tagging import decode_spans

    spans = [
        (0.45, 0, 2, "ORG"),  # Basic Channel, the whole name
        (0.35, 0, 1, "ORG"),  # Basic alone: overlaps the likelier reading
        (0.30, 4, 5, "PER"),
        (0.28, 5, 7, "PER"),  # a different reading overlapping nothing taken
        (0.10, 8, 9, "PER"),  # below the threshold
    ]
    assert decode_spans(spans, 0.25) == [(0, 2, "ORG"), (4, 5, "PER"), (5, 7, "PER")]
    assert decode_spans(spans, 0.4) == [(0, 2, "ORG")]
    assert decode_spans([], 0.25) == []


def test_marginal_tag_decoding_keeps_names_whole():
    from relbridge.models.tagging import decode_tags

    tags = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    probs = np.array(
        [
            [0.06, 0.63, 0.11, 0.10, 0.10],  # Billy: B-PER
            [0.25, 0.22, 0.22, 0.16, 0.15],  # Hughes: O is the argmax, yet 0.75 is inside a name
            [0.90, 0.02, 0.02, 0.03, 0.03],  # in
            [0.10, 0.05, 0.05, 0.70, 0.10],  # Sydney: B-LOC
            [0.20, 0.10, 0.10, 0.50, 0.10],  # Perth: B beats I, so a second LOC
            [0.30, 0.05, 0.40, 0.05, 0.20],  # a PER word after a LOC starts a PER
        ]
    )
    assert decode_tags(probs, tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 6, "PER")]
    assert decode_tags(probs, tags, "argmax") == [
        (0, 1, "PER"),
        (3, 4, "LOC"),
        (4, 5, "LOC"),
        (5, 6, "PER"),
    ]
    assert (
        decode_tags(np.array([[0.5, 0.3, 0.2, 0.0, 0.0]]), tags) == []
    )  # O at one half is outside


def test_data_with_no_pair_to_evaluate_is_one_error_naming_it(tmp_path):
    from test_models import RELX_TEXT

    from relbridge.models.evaluate import evaluate

    relx = tmp_path / "RELX_en.txt"
    relx.write_text(RELX_TEXT, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{relx}: no pairs to evaluate with the given ids$"):
        evaluate(str(tmp_path / "no-model"), str(relx), ids={"99"})  # before the model loads
    (tmp_path / "empty_en.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty_en.txt: no pairs to evaluate$"):
        evaluate(str(tmp_path / "no-model"), str(tmp_path / "empty_en.txt"))
