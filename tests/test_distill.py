"""Knowledge distillation: soft targets, the KL term, teacher scoring, the trainer's wiring."""

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import write_toy_shards
from test_trainer import _cfg

from relbridge.models import trainer
from relbridge.models.data import PairInstance, RelationData
from relbridge.models.distill import distillation_loss, soften, teacher_targets
from relbridge.models.evaluate import predict_pairs
from relbridge.models.extractor import ModelConfig, RelationExtractor
from relbridge.models.units import Unit, build_units

PAIRS = [
    PairInstance(i, "en", tuple(text.split()), (0, 1), (e2, e2 + 1), label, "NA")
    for i, text, e2, label in [
        ("a", "Merkel was born in Hamburg", 4, "born_in"),
        ("b", "Siemens is based in Munich", 4, "NA"),
        ("c", "Bach lived in Leipzig .", 3, "lived_in"),
    ]
]


def test_soften_keeps_a_distribution_and_flattens_it_with_temperature():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    assert torch.allclose(soften(probs, 1.0), probs, atol=1e-6)
    hot = soften(probs, 4.0)
    assert torch.allclose(hot.sum(-1), torch.ones(1)) and hot.argmax() == 0
    assert hot[0, 0] < 0.7 and hot[0, 2] > 0.1  # flatter, same order
    assert soften(torch.tensor([[1.0, 0.0]]), 2.0)[0, 1] > 0  # no zero after softening


def test_distillation_loss_is_zero_at_the_targets_and_pulls_towards_them():
    targets = soften(torch.tensor([[[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]]), 2.0)  # (1, 2, 3)
    at_targets = torch.log(targets) * 2.0  # logits whose softmax at T=2 is the targets
    assert distillation_loss(at_targets, targets, 2.0).abs() < 1e-6
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    loss = distillation_loss(logits, targets, 2.0)
    loss.backward()
    assert loss > 0
    # descent raises the logit of each direction's most probable target class
    assert logits.grad[0, 0].argmin() == 0 and logits.grad[0, 1].argmin() == 2


def _saved(tiny_encoder, path, relations, **kw):
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=relations, **kw))
    model.save_pretrained(str(path))
    return str(path)


def test_teacher_targets_follow_the_students_relation_order(tiny_encoder, tmp_path):
    path = _saved(tiny_encoder, tmp_path / "teacher", ("NA", "born_in", "lived_in"))
    student_order = ("lived_in", "NA", "born_in")
    got = teacher_targets(path, PAIRS, student_order, torch.device("cpu"), temperature=1.0)
    teacher = RelationExtractor.from_pretrained(path, inference=True)
    with torch.inference_mode():
        want = torch.from_numpy(predict_pairs(teacher, PAIRS))[..., [2, 0, 1]]
    assert got.shape == (3, 2, 3)
    assert torch.allclose(got, want, atol=2e-2)  # bf16 autocast where the CPU has it
    with pytest.raises(ValueError, match="only the data: \\['org:founded'\\]"):
        teacher_targets(path, PAIRS, ("NA", "born_in", "org:founded"), torch.device("cpu"), 1.0)


def test_micro_batch_loss_adds_the_kl_term_of_each_rows_own_pair(tiny_encoder, tmp_path):
    cfg = _cfg(tiny_encoder, "unused", tmp_path / "run", tagging_weight=0.0, dropout=0.0,
               marker_mode="levitated", distill_weight=0.7, distill_temperature=2.0)  # fmt: skip
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "born_in", "lived_in"),
                    marker_mode="levitated", dropout=0.0, tagging_weight=0.0)
    )  # fmt: skip
    units, pair_enc, tag_enc, bags, kept = build_units(model, RelationData(PAIRS, []), cfg)
    assert [p.id for p in kept] == ["a", "b", "c"]
    teacher = soften(torch.softmax(torch.randn(3, 2, 3), -1), 2.0)
    batch_units = [2, 0]  # rows in another order than the pairs
    args = (model, units, batch_units, pair_enc, tag_enc, bags, cfg, torch.device("cpu"))
    torch.manual_seed(0)
    plain = trainer._micro_batch_loss(*args)
    with_teacher = trainer._micro_batch_loss(*args, teacher)
    batch = model.collate([pair_enc[2], pair_enc[0]])
    logits = model(batch, labels=False)["relation_logits"]
    want = 0.7 * distillation_loss(logits, teacher[[2, 0]], 2.0)
    assert want > 0 and torch.allclose(with_teacher - plain, want, atol=1e-5)
    assert all(u.kind == "pair" for u in units) and units[0] == Unit("pair", 0, "en")


def test_training_with_a_teacher_runs_and_records_it(tiny_encoder, tmp_path, monkeypatch):
    shards = write_toy_shards(tmp_path / "shards")
    teacher = trainer.train(_cfg(tiny_encoder, shards, tmp_path / "teacher", epochs=1))["model_dir"]
    seen = []
    inner = trainer.distillation_loss
    monkeypatch.setattr(
        trainer, "distillation_loss", lambda *a: seen.append(a[1].shape) or inner(*a)
    )
    stats = trainer.train(
        _cfg(tiny_encoder, shards, tmp_path / "student", epochs=1, marker_mode="levitated",
             distill_from=teacher)
    )  # fmt: skip
    assert stats["completed"] and seen and all(s[1:] == seen[0][1:] for s in seen)
    saved = (tmp_path / "student" / "model" / "train_config.json").read_text()
    assert f'"distill_from": "{teacher}"' in saved
    # A rerun of the finished run has nothing to do, and no teacher to score.
    monkeypatch.setattr(trainer, "teacher_targets", lambda *a, **k: pytest.fail("scored"))
    again = trainer.train(
        _cfg(tiny_encoder, shards, tmp_path / "student", epochs=1, marker_mode="levitated",
             distill_from=teacher)
    )  # fmt: skip
    assert again["global_step"] == stats["global_step"]


def test_distill_shards_add_unlabelled_target_pairs_after_the_dev_split(tiny_encoder, tmp_path):
    from relbridge.models.units import load_training_data

    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", dev_fraction=0.3, distill_shards=shards)
    with pytest.raises(ValueError, match="needs distill_from"):
        load_training_data(cfg)
    train, dev = load_training_data(cfg.replace(distill_from=str(tmp_path / "teacher")))
    plain, plain_dev = load_training_data(cfg.replace(distill_shards=""))
    added = train.pairs[len(plain.pairs) :]
    assert train.pairs[: len(plain.pairs)] == plain.pairs and dev.pairs == plain_dev.pairs
    assert added and {p.side for p in added} == {"tgt"} and {p.lang for p in added} == {"de"}
    assert all(p.label_12 is None and p.label_21 is None for p in added)
    assert train.relations() == plain.relations()  # unlabelled: no relation of their own
