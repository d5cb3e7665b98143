"""Knowledge distillation: soft targets, the KL term, teacher scoring, the trainer's wiring."""

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import write_toy_shards
from test_trainer import _cfg

from relbridge.models import trainer
from relbridge.models.data import PairInstance, RelationData
from relbridge.models.distill import (
    distillation_loss,
    soften,
    start_from_heads,
    tag_distillation_loss,
    teacher_tag_logits,
    teacher_targets,
)
from relbridge.models.evaluate import predict_pairs
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
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


def test_tag_distillation_reads_only_the_words_of_the_given_rows():
    labels = torch.tensor([[-100, 2, -100, 0, -100], [-100, 1, 1, -100, -100]])  # (2, 5)
    teacher = [torch.randn(4, 3), torch.randn(4, 3)]  # row 0 is 4 subwords long; row 1 too
    logits = torch.randn(2, 5, 3)
    logits[0, :4] = teacher[0]
    logits[1, :4] = teacher[1]
    logits[0, 0] = logits[0, 2] = logits[0, 4] = 9.0  # not words: they must not count
    assert tag_distillation_loss(logits, labels, [0, 1], teacher, 2.0).abs() < 1e-6
    moved = logits.clone()
    moved[1, 2] = torch.tensor([5.0, -5.0, 0.0])
    assert tag_distillation_loss(moved, labels, [0], teacher[:1], 2.0).abs() < 1e-6
    assert tag_distillation_loss(moved, labels, [1], teacher[1:], 2.0) > 0.1
    no_words = torch.full_like(labels, -100)
    assert tag_distillation_loss(moved, no_words, [0, 1], teacher, 2.0) == 0.0


def test_teacher_tag_logits_are_the_teachers_own_per_input(tiny_encoder, tmp_path):
    path = _saved(tiny_encoder, tmp_path / "teacher", ("NA", "born_in"))
    teacher = RelationExtractor.from_pretrained(path, inference=True)
    encoded = [teacher.encode_tags(t.split()) for t in ("Bach lived in Leipzig .", "Merkel")]
    got = teacher_tag_logits(path, encoded, teacher.cfg.tags, torch.device("cpu"))
    assert [g.shape for g in got] == [(len(e.input_ids), len(teacher.cfg.tags)) for e in encoded]
    with torch.inference_mode():
        alone = teacher(teacher.collate(encoded[1:]), labels=False)["tag_logits"][0].float()
    assert torch.allclose(got[1], alone, atol=5e-2)  # bf16 autocast where the CPU has it
    torch.manual_seed(7)
    teacher_tag_logits(path, encoded, teacher.cfg.tags, torch.device("cpu"))
    teacher_targets(path, PAIRS[:1], ("NA", "born_in"), torch.device("cpu"), 1.0)
    drawn = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(3))  # a resumed run draws what the first run drew
    with pytest.raises(ValueError, match="the teacher tags"):
        teacher_tag_logits(path, encoded, ("O", "B-PER", "I-PER"), torch.device("cpu"))


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
    cut = PairInstance("a~negb", "en", PAIRS[0].tokens, (0, 1), (4, 5), "NA", "NA")
    na_only = teacher_targets(path, [*PAIRS, cut], student_order, torch.device("cpu"), 1.0)
    assert torch.allclose(na_only[:3], got)  # a boundary negative changes no other target
    assert na_only[3].tolist() == [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]  # NA alone, both directions
    with pytest.raises(ValueError, match="only the data: \\['org:founded'\\]"):
        teacher_targets(path, PAIRS, ("NA", "born_in", "org:founded"), torch.device("cpu"), 1.0)


def test_start_from_heads_copies_the_heads_that_mean_the_same(tiny_encoder, tmp_path):
    path = _saved(tiny_encoder, tmp_path / "teacher", ("NA", "born_in", "lived_in"))
    teacher = RelationExtractor.from_pretrained(path)

    def student(relations):
        cfg = ModelConfig(encoder=tiny_encoder, relations=relations, marker_mode="levitated")
        return RelationExtractor(cfg)

    same = student(("NA", "born_in", "lived_in"))
    copied = start_from_heads(same, path)
    assert {"tag_head.weight", "tag_norm.weight", "rel_head.weight"} <= set(copied)
    for name in copied:
        assert torch.equal(same.state_dict()[name], teacher.state_dict()[name]), name
    other = student(("NA", "lived_in", "born_in"))  # same names, other order: no relation head
    fresh = other.rel_head.weight.clone()
    copied = start_from_heads(other, path)
    assert "tag_head.weight" in copied and not any(n.startswith("rel_") for n in copied)
    assert torch.equal(other.rel_head.weight, fresh)


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


def test_micro_batch_loss_adds_the_tag_kl_term_of_each_tag_row(tiny_encoder, tmp_path):
    cfg = _cfg(tiny_encoder, "unused", tmp_path / "run", tagging_weight=0.5, dropout=0.0,
               distill_tag_weight=2.0, distill_temperature=2.0)  # fmt: skip
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "born_in", "lived_in"),
                    dropout=0.0, tagging_weight=0.5)
    )  # fmt: skip
    tag_enc = [model.encode_tags(p.tokens, [(0, 1, "PER")]) for p in PAIRS]
    units = [Unit("tag", i, "en") for i in range(3)]
    teacher = [torch.randn(len(e.input_ids), len(model.cfg.tags)) for e in tag_enc]
    args = (model, units, [2, 0], [], tag_enc, [], cfg, torch.device("cpu"))
    plain = trainer._micro_batch_loss(*args)
    with_teacher = trainer._micro_batch_loss(*args, None, teacher)
    batch = model.collate([tag_enc[2], tag_enc[0]])
    logits = model(batch, labels=False)["tag_logits"]
    kl = tag_distillation_loss(logits, batch["tag_labels"], [0, 1], [teacher[2], teacher[0]], 2.0)
    assert kl > 0 and torch.allclose(with_teacher - plain, 0.5 * 2.0 * kl, atol=1e-5)


def test_training_with_a_teacher_runs_and_records_it(tiny_encoder, tmp_path, monkeypatch):
    shards = write_toy_shards(tmp_path / "shards")
    teacher = trainer.train(_cfg(tiny_encoder, shards, tmp_path / "teacher", epochs=1))["model_dir"]
    seen = []
    inner = trainer.distillation_loss
    monkeypatch.setattr(
        trainer, "distillation_loss", lambda *a: seen.append(a[1].shape) or inner(*a)
    )
    tag_rows = []
    inner_tags = trainer.tag_distillation_loss
    monkeypatch.setattr(
        trainer, "tag_distillation_loss", lambda *a: tag_rows.append(a[2]) or inner_tags(*a)
    )
    stats = trainer.train(
        _cfg(tiny_encoder, shards, tmp_path / "student", epochs=1, marker_mode="levitated",
             distill_from=teacher, distill_tag_weight=1.0)
    )  # fmt: skip
    assert stats["completed"] and seen and all(s[1:] == seen[0][1:] for s in seen)
    assert tag_rows and all(tag_rows)
    saved = (tmp_path / "student" / "model" / "train_config.json").read_text()
    assert f'"distill_from": "{teacher}"' in saved
    # A rerun of the finished run has nothing to do, and no teacher to score.
    monkeypatch.setattr(trainer, "teacher_targets", lambda *a, **k: pytest.fail("scored"))
    monkeypatch.setattr(trainer, "teacher_tag_logits", lambda *a, **k: pytest.fail("tagged"))
    again = trainer.train(
        _cfg(tiny_encoder, shards, tmp_path / "student", epochs=1, marker_mode="levitated",
             distill_from=teacher, distill_tag_weight=1.0)
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
