"""Metrics: the RELX metric on hand-made labels, P/R/F1 without NA, held-out AUC, joint decoding."""

import numpy as np
import pytest

from relbridge.data_specs.relations import KBP37_RELATIONS, NA
from relbridge.models.evaluate import decode_joint, held_out_auc, prf_without_na, relx_f1

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
