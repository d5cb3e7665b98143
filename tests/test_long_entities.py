"""Pairs whose entities alone exceed max_seq_len: skipped in training, certain NA in prediction."""

import dataclasses

from single_thread import one_torch_thread  # noqa: F401 (autouse)

from relbridge.models.data import PairInstance, RelationData
from relbridge.models.evaluate import predict_pairs
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.models.trainer import TrainConfig
from relbridge.models.units import build_units as _build_units

LONG = PairInstance("long", "en", ("Paris",) * 60, (0, 30), (30, 60), "r", "NA")
SHORT = PairInstance("short", "en", ("Merkel", "in", "Berlin"), (0, 1), (2, 3), "r", "NA")


def _model(tiny_encoder):
    return RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "r"), max_seq_len=24)
    )


def test_prediction_of_an_unencodable_pair_is_certain_na(tiny_encoder):
    model = _model(tiny_encoder)
    probs = predict_pairs(model, [LONG, SHORT])
    assert probs.shape == (2, 2, 2)
    assert probs[0, :, 0].tolist() == [1.0, 1.0]
    assert abs(probs[1].sum() - 2.0) < 1e-5 and probs[1, 0, 0] < 1.0


def test_training_skips_unencodable_pairs(tiny_encoder, tmp_path):
    data = RelationData([LONG, SHORT], [])
    cfg = TrainConfig.from_flat(output=str(tmp_path), shards="unused", max_seq_len=24, tagging_weight=0.0)
    units, pair_enc, _, _, kept = _build_units(_model(tiny_encoder), data, cfg)
    assert [p.id for p in data.pairs] == ["long", "short"]  # the caller's data is untouched
    assert len(pair_enc) == 1 and [u.index for u in units if u.kind == "pair"] == [0]
    assert [p.id for p in kept] == ["short"]  # the pair each encoding was made from
    with_kb = RelationData([dataclasses.replace(p, e1_kb="Q1", e2_kb="Q2") for p in data.pairs], [])
    _, bag_enc, _, bags, _ = _build_units(
        _model(tiny_encoder), with_kb, cfg.replace(aggregation="attention")
    )
    assert len(bag_enc) == 1 and [i for b in bags for i, _ in b.members] == [0, 0]  # both ways
