"""NA subsampling of distantly supervised training pairs (TrainConfig.max_na_ratio)."""

from relbridge.models.data import PairInstance
from relbridge.models.units import subsample_na


def _pair(n: int, label: str | None) -> PairInstance:
    return PairInstance(str(n), "en", ("a", "b"), (0, 1), (1, 2), label, "NA")


def test_keeps_every_relation_and_ratio_times_as_many_na_pairs():
    pairs = [_pair(n, "per:spouse" if n % 10 == 0 else "NA") for n in range(100)]
    kept = subsample_na(pairs, 2.0, seed=1)
    assert sum(p.label_12 == "per:spouse" for p in kept) == 10
    assert sum(p.label_12 == "NA" for p in kept) == 20
    assert [int(p.id) for p in kept] == sorted(int(p.id) for p in kept)  # order kept
    assert subsample_na(pairs, 2.0, seed=1) == kept  # seeded
    assert subsample_na(pairs, 2.0, seed=2) != kept


def test_unknown_labels_count_as_na_and_small_na_sets_stay_whole():
    pairs = [_pair(0, "per:spouse"), _pair(1, None), _pair(2, "NA")]
    assert subsample_na(pairs, 5.0, seed=0) == pairs
    assert [p.id for p in subsample_na(pairs, 1.0, seed=0)] in (["0", "1"], ["0", "2"])
