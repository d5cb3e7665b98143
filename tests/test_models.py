"""RelationExtractor and the data readers: overfit + save/load, batching, bags, sampler, shards."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)

from relbridge.data_specs import SHARD_SCHEMA, Mention, ProjectedMention, RelationInstance, ShardRow
from relbridge.models.data import (
    LanguageBalancedSampler,
    PairInstance,
    bag_scope,
    make_bags,
    read_relx_data,
    read_shard_data,
)
from relbridge.models.evaluate import predict_pairs
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig

# (en tokens, de tokens, subject span, object span (en), same spans (de), label, subject kb, object kb)
FACTS = [
    ("Angela Merkel was born in Berlin", "Angela Merkel wurde in Berlin geboren", (0, 2), (5, 6), (0, 2), (4, 5), "per:born_in", "Q1", "Q2"),
    ("Emmanuel Macron was born in Paris", "Emmanuel Macron wurde in Paris geboren", (0, 2), (5, 6), (0, 2), (4, 5), "per:born_in", "Q3", "Q4"),
    ("Siemens was founded in Munich", "Siemens wurde in Munich von", (0, 1), (4, 5), (0, 1), (3, 4), "org:founded_in", "Q5", "Q6"),
    ("the president of France is Macron", "der president von France ist Macron", (5, 6), (3, 4), (5, 6), (3, 4), "per:president_of", "Q3", "Q7"),
    ("Merkel was born in Berlin", "Merkel wurde in Berlin geboren", (0, 1), (4, 5), (0, 1), (3, 4), "per:born_in", "Q1", "Q2"),
]  # fmt: skip


def toy_rows() -> list[ShardRow]:
    rows = []
    for i, (en, de, s, o, ts, to, label, skb, okb) in enumerate(FACTS):
        en_t, de_t = tuple(en.split()), tuple(de.split())
        src = (
            Mention(s[0], s[1], skb, "PER", " ".join(en_t[s[0] : s[1]])),
            Mention(o[0], o[1], okb, "LOC", en_t[o[0]]),
        )
        tgt = (
            ProjectedMention(ts[0], ts[1], skb, "PER", " ".join(de_t[ts[0] : ts[1]]), 0, 1.0),
            ProjectedMention(to[0], to[1], okb, "LOC", de_t[to[0]], 1, 1.0),
        )
        rels = (
            RelationInstance(0, 1, label, 0, 1, True, True),
            RelationInstance(1, 0, "NA", 1, 0, False, True),
        )
        rows.append(
            ShardRow(
                f"toy:{i}",
                "toy",
                "toy.tsv",
                i + 1,
                "en",
                "de",
                en,
                de,
                en_t,
                de_t,
                (),
                src,
                tgt,
                rels,
            )
        )
    return rows


def write_toy_shards(directory) -> str:
    os.makedirs(directory, exist_ok=True)
    table = pa.Table.from_pylist([r.to_row() for r in toy_rows()], schema=SHARD_SCHEMA)
    pq.write_table(table, os.path.join(directory, "part-0.parquet"))
    return str(directory)


RELX_TEXT = (
    '1\t" <e1> Angela Merkel </e1> was born in <e2> Berlin </e2> . "\nper:cities_of_residence(e1,e2)\n\n\n'
    '2\t" <e1> Siemens </e1> is a company in <e2> Munich </e2> . "\norg:city_of_headquarters(e1,e2)\n\n\n'
    '3\t" the city of <e1> Paris </e1> and <e2> Emmanuel Macron </e2> . "\nper:cities_of_residence(e2,e1)\n\n\n'
    '4\t" <e1> Berlin </e1> and <e2> Paris </e2> . "\nno_relation\n'
)


def test_shard_reader_gives_both_sides_and_directions(tmp_path):
    data = read_shard_data(write_toy_shards(tmp_path / "shards"))
    assert len(data.pairs) == 2 * len(FACTS) and len(data.tags) == 2 * len(FACTS)
    assert data.languages() == {"en": 5, "de": 5}
    first = data.pairs[0]
    assert (first.lang, first.e1, first.e2, first.label_12, first.label_21) == (
        "en",
        (0, 2),
        (5, 6),
        "per:born_in",
        "NA",
    )
    # "the president of France is Macron": the subject (Macron) comes second, so it is e2.
    president = next(p for p in data.pairs if p.id == "toy:3" and p.lang == "de")
    assert (president.e1, president.e2, president.label_12, president.label_21) == (
        (3, 4),
        (5, 6),
        "NA",
        "per:president_of",
    )
    assert (president.e1_kb, president.e2_kb) == ("Q7", "Q3")
    assert data.relations() == {"NA", "per:born_in", "org:founded_in", "per:president_of"}
    assert data.entity_types() == {"PER", "LOC"}


def test_relx_reader_maps_direction_to_subject(tmp_path):
    path = tmp_path / "RELX_de.txt"
    path.write_text(RELX_TEXT, encoding="utf-8")
    data = read_relx_data(str(path))
    assert [p.lang for p in data.pairs] == ["de"] * 4
    p3 = data.pairs[2]
    assert p3.tokens[p3.e1[0] : p3.e1[1]] == ("Paris",) and (p3.label_12, p3.label_21) == (
        "NA",
        "per:cities_of_residence",
    )
    assert p3.directed_label() == "per:cities_of_residence(e2,e1)"
    assert (data.pairs[3].label_12, data.pairs[3].label_21) == ("NA", "NA")
    assert [p.id for p in read_relx_data(str(path), lang="xx", ids={"2"}).pairs] == ["2"]


def test_bags_group_ordered_pairs_across_sentences_and_languages(tmp_path):
    data = read_shard_data(write_toy_shards(tmp_path / "shards"))
    bags = {b.key: b for b in make_bags(data.pairs)}
    # Merkel->Berlin occurs in two sentences, each in en and de: one bag of 4.
    born = bags[("Q1", "Q2")]
    assert born.label == "per:born_in" and len(born.members) == 4
    assert {data.pairs[i].lang for i, _ in born.members} == {"en", "de"}
    assert bags[("Q2", "Q1")].label == "NA" and all(d == 1 for _, d in bags[("Q2", "Q1")].members)
    members, scope = bag_scope([born, bags[("Q3", "Q4")]], max_bag_size=3)
    assert scope == [(0, 3), (3, 5)] and len(members) == 5


def test_bag_attention_follows_scope(tiny_encoder):
    torch.manual_seed(0)
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "r1", "r2"))
    ).eval()
    reps = torch.randn(5, model.rel_head.in_features)
    scope = [(0, 2), (2, 5)]
    logits = model.aggregate_bags(reps, scope, "attention")
    assert logits.shape == (2, 3)
    # A bag's logits depend on its own members only.
    changed = reps.clone()
    changed[3] += 5.0
    after = model.aggregate_bags(changed, scope, "attention")
    assert torch.allclose(after[0], logits[0]) and not torch.allclose(after[1], logits[1])
    # A one-member bag is that instance, whatever the attention weights.
    single = model.aggregate_bags(reps[:1], [(0, 1)], "attention")
    assert torch.allclose(single[0], model.rel_head(reps[0]), atol=1e-5)
    # Training mode queries with the gold label; averaging is the plain mean.
    avg = model.aggregate_bags(reps, scope, "average")
    assert torch.allclose(avg[1], model.rel_head(reps[2:5].mean(0)), atol=1e-5)
    trained = model.aggregate_bags(reps, scope, "attention", torch.tensor([1, 2]))
    assert trained.shape == (2, 3)


def test_sampler_temperature_flattens_language_shares():
    langs = ["en"] * 90 + ["de"] * 10
    natural = LanguageBalancedSampler(langs, temperature=1.0, seed=0).probabilities()
    assert natural["en"] == pytest.approx(0.9)
    flat = LanguageBalancedSampler(langs, temperature=1e6, seed=0).probabilities()
    assert flat["de"] == pytest.approx(0.5, abs=1e-3)
    t2 = LanguageBalancedSampler(langs, temperature=2.0, seed=0)
    assert t2.probabilities()["de"] == pytest.approx(10**0.5 / (90**0.5 + 10**0.5))
    order = t2.order(0)
    assert len(order) == 100 and order == t2.order(0) and order != t2.order(1)
    share_de = sum(1 for i in order if langs[i] == "de") / len(order)
    assert 0.12 < share_de < 0.4
    # Within a language the cycle covers every instance before repeating.
    de_draws = [i for i in order if langs[i] == "de"][:10]
    assert sorted(de_draws) == list(range(90, 100))
    with pytest.raises(ValueError):
        LanguageBalancedSampler(langs, temperature=0)


def _toy_pairs() -> list[PairInstance]:
    rows = toy_rows()
    return [
        PairInstance(
            "a",
            "en",
            rows[0].src_tokens,
            (0, 2),
            (5, 6),
            "per:born_in",
            "NA",
            e1_type="PER",
            e2_type="LOC",
        ),
        PairInstance(
            "b",
            "de",
            rows[2].tgt_tokens,
            (0, 1),
            (3, 4),
            "NA",
            "org:founded_in",
            e1_type="PER",
            e2_type="LOC",
        ),
    ]


def test_overfit_two_examples_then_save_load_predicts_identically(tiny_encoder, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder=tiny_encoder,
        relations=("NA", "org:founded_in", "per:born_in"),
        entity_types=("LOC", "PER"),
        marker_style="typed",
        dropout=0.0,
    )
    model = RelationExtractor(cfg)
    pairs = _toy_pairs()
    items = [
        model.encode_pair(p.tokens, p.e1, p.e2, p.label_12, p.label_21, p.e1_type, p.e2_type)
        for p in pairs
    ]
    items.append(model.encode_tags(pairs[0].tokens, [(0, 2, "PER"), (5, 6, "LOC")]))
    batch = model.collate(items)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(120):
        loss = model(batch, labels=True)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.02
    model.eval()
    probs = predict_pairs(model, pairs)
    names = model.inventory.names
    assert [names[i] for i in probs.argmax(-1)[0]] == ["per:born_in", "NA"]
    assert [names[i] for i in probs.argmax(-1)[1]] == ["NA", "org:founded_in"]
    model.save_pretrained(str(tmp_path / "m"))
    for name in ("extractor_config.json", "relations.json", "heads.pt", "encoder"):
        assert os.path.exists(tmp_path / "m" / name)
    loaded = RelationExtractor.from_pretrained(str(tmp_path / "m"))
    assert loaded.cfg.marker_style == "typed" and loaded.inventory == model.inventory
    assert torch.allclose(
        torch.tensor(predict_pairs(loaded, pairs)), torch.tensor(probs), atol=1e-5
    )
    with torch.no_grad():
        tag_a = model(batch, labels=False)["tag_logits"]
        tag_b = loaded(loaded.collate(items), labels=False)["tag_logits"]
    assert torch.allclose(tag_a, tag_b, atol=1e-5)


def test_tagging_head_does_not_depend_on_the_encoders_output_scale(tiny_encoder, tmp_path):
    # e5-small's hidden states spread ~0.13 per dimension (scaled alike here); a bare linear tagger
    # then stayed at the all-O prior (the demo found 2 of 307 dev mentions)
    torch.manual_seed(0)
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, entity_types=("PER",))).eval()
    batch = model.collate([model.encode_tags(["Angela", "Merkel", "spoke"], [(0, 2, "PER")])])
    with torch.no_grad():
        before = model(batch, labels=False)["tag_logits"]
        last_norm = model.encoder.encoder.layer[-1].output.LayerNorm
        last_norm.weight.mul_(0.1)
        last_norm.bias.mul_(0.1)
        after = model(batch, labels=False)["tag_logits"]
    assert torch.allclose(before, after, atol=1e-3)  # up to LayerNorm's eps
    # a model saved before the tagger had its norm loads as it was trained
    model.save_pretrained(str(tmp_path / "old"))
    heads = torch.load(tmp_path / "old" / "heads.pt", weights_only=True)
    torch.save({k: v for k, v in heads.items() if not k.startswith("tag_norm.")},
               tmp_path / "old" / "heads.pt")  # fmt: skip
    old = RelationExtractor.from_pretrained(str(tmp_path / "old"))
    assert isinstance(old.tag_norm, torch.nn.Identity)
    assert torch.equal(old.tag_head.weight, model.tag_head.weight)


def test_batched_and_one_by_one_predictions_agree(tiny_encoder):
    torch.manual_seed(1)
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "org:founded_in", "per:born_in"))
    )
    pairs = _toy_pairs() + [
        PairInstance(
            "c",
            "en",
            ("the", "city", "of", "Paris", "and", "the", "company", "Siemens"),
            (3, 4),
            (7, 8),
            None,
            None,
        )
    ]
    batched = predict_pairs(model, pairs, batch_size=8)
    single = [predict_pairs(model, [p], batch_size=1)[0] for p in pairs]
    assert torch.allclose(torch.tensor(batched), torch.tensor(np.array(single)), atol=1e-5)


def test_long_sentences_are_windowed_around_both_entities(tiny_encoder):
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "r"), max_seq_len=24)
    )
    words = ["Paris"] * 40 + ["Merkel", "in", "Berlin"] + ["Paris"] * 40
    enc = model.encode_pair(words, (40, 41), (42, 43), "r", "NA")
    assert len(enc.input_ids) <= 24
    tokens = model.tokenizer.convert_ids_to_tokens(enc.input_ids)
    assert tokens[enc.e1_pos] == "[E1]" and tokens[enc.e2_pos] == "[E2]" and "[/E2]" in tokens
    with pytest.raises(ValueError):
        model.encode_pair(words, (40, 42), (41, 43))  # overlapping spans


def test_entities_far_apart_keep_both_and_the_words_beside_them(tiny_encoder):
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "r"), max_seq_len=24)
    )
    words = ["Merkel", "said"] + ["Paris"] * 60 + ["in", "Berlin"]
    enc = model.encode_pair(words, (0, 1), (63, 64), "r", "NA")
    assert len(enc.input_ids) <= 24
    text = model.tokenizer.decode(enc.input_ids)
    assert "Merkel" in text and "Berlin" in text and "said" in text and "in" in text
    tokens = model.tokenizer.convert_ids_to_tokens(enc.input_ids)
    assert tokens[enc.e1_pos] == "[E1]" and tokens[enc.e2_pos] == "[E2]" and "[/E2]" in tokens
    with pytest.raises(ValueError, match="entities span"):
        model.encode_pair(["Paris"] * 60, (0, 30), (30, 60))  # the entities alone are too long


def test_model_config_is_validated(tiny_encoder):
    with pytest.raises(ValueError):
        ModelConfig(encoder=tiny_encoder, relations=("per:x", "NA"))
    with pytest.raises(ValueError):
        ModelConfig(encoder=tiny_encoder, marker_style="fancy")
    with pytest.raises(ValueError):
        ModelConfig(encoder=tiny_encoder, relation_weight=0, tagging_weight=0)


def test_markers_start_as_the_encoders_punctuation(tiny_encoder):
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=("NA", "r")))
    words = model.encoder.get_input_embeddings().weight
    at, hash_ = (model.tokenizer.convert_tokens_to_ids(s) for s in ("@", "#"))
    markers = model.marker_embeddings.weight  # [E1], [/E1], [E2], [/E2]
    for row, symbol in zip(markers, (at, at, hash_, hash_)):
        assert torch.nn.functional.cosine_similarity(row, words[symbol], dim=0) > 0.99
    assert not torch.equal(markers[0], markers[1])


def test_tagging_shards_add_only_projected_names_untyped_to_labelled_data(tmp_path):
    import dataclasses

    from relbridge.models.train_config import TrainConfig
    from relbridge.models.units import load_training_data

    relx = tmp_path / "RELX_en.txt"
    relx.write_text(RELX_TEXT, encoding="utf-8")
    rows = toy_rows()
    # toy:1's object matched a lowercase alias: "paris" is no name, so its projection trains nothing
    paris = dataclasses.replace(rows[1].src_mentions[1], text="paris")
    rows[1] = dataclasses.replace(rows[1], src_mentions=(rows[1].src_mentions[0], paris))
    os.makedirs(tmp_path / "shards")
    table = pa.Table.from_pylist([r.to_row() for r in rows], schema=SHARD_SCHEMA)
    pq.write_table(table, tmp_path / "shards" / "part-0.parquet")
    cfg = TrainConfig.from_flat(
        output=str(tmp_path / "o"), relx_train=(str(relx),), dev_fraction=0,
        tagging_shards=str(tmp_path / "shards"),
    )  # fmt: skip
    train, _ = load_training_data(cfg)
    labelled = read_relx_data(str(relx))
    assert train.pairs == labelled.pairs  # no relation pair comes from the tagging shards
    projected = {t.id: t for t in train.tags[len(labelled.tags) :]}
    assert {t.lang for t in projected.values()} == {"de"} and len(projected) == len(FACTS)
    assert projected["toy:0"].tokens[0:2] == ("Angela", "Merkel")
    assert projected["toy:0"].mentions == ((0, 2, ""), (4, 5, ""))
    assert projected["toy:1"].mentions == ((0, 2, ""),)
    assert train.entity_types() == set()  # KBP37's untyped tagger stays untyped
