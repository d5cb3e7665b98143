"""train(): runs end to end on toy shards, resumes exactly, trains bags; evaluate() and extract() on its output."""

import json

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import RELX_TEXT, write_toy_shards

from relbridge.models.checkpoint import config_diff as _config_diff
from relbridge.models.evaluate import evaluate
from relbridge.models.extract import extract
from relbridge.models.extractor import RelationExtractor
from relbridge.models.trainer import TrainConfig, train


def _cfg(tiny_encoder, shards, output, **kw) -> TrainConfig:
    base = {
        "shards": shards, "output": str(output), "model": tiny_encoder, "epochs": 3, "batch_size": 4, "lr": 1e-3, "head_lr": 3e-3,
        "dev_fraction": 0.0, "save_every": 1, "progress": False, "freeze_embeddings": False, "tagging_ratio": 1.0,
    }  # fmt: skip
    base.update(kw)
    return TrainConfig.from_flat(**base)


def _heads(model_dir):
    return {k: v for k, v in torch.load(f"{model_dir}/heads.pt", weights_only=True).items()}


def test_train_then_evaluate_and_extract(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    stats = train(_cfg(tiny_encoder, shards, tmp_path / "run", epochs=8, dev=(shards,)))
    assert stats["completed"] and stats["languages"] == {"en": 5, "de": 5}
    assert stats["best_dev"]["micro_f1"] > 50
    assert (
        json.loads((tmp_path / "run" / "train_stats.json").read_text())["global_step"]
        == stats["global_step"]
    )
    result = evaluate(stats["model_dir"], shards)
    assert set(result["per_language"]) == {"de", "en"} and result["overall"]["micro_f1"] > 50
    tagging = result["per_language"]["de"]["tagging"]  # shards annotate every mention they have
    assert tagging["gold_mentions"] > 0 and {"precision", "recall", "span_f1"} <= tagging.keys()
    assert evaluate(stats["model_dir"], shards, lang="de")["per_language"].keys() == {"de"}
    # RELX-format input with an id filter; relations the model never saw only count as misses.
    relx = tmp_path / "RELX_en.txt"
    relx.write_text(RELX_TEXT, encoding="utf-8")
    scored = evaluate(stats["model_dir"], str(relx), data_format="relx", ids={"1", "4"})
    assert scored["overall"]["pairs"] == 2 and "relx_f1" in scored["per_language"]["en"]
    records = extract(
        stats["model_dir"],
        ["<e1> Angela Merkel </e1> was born in <e2> Berlin </e2>", "Merkel was born in Paris"],
    )
    marked = [r for r in records if r["sentence"] == 0]
    assert len(marked) == 1 and {marked[0]["subject"], marked[0]["object"]} == {
        "Angela Merkel",
        "Berlin",
    }
    assert 0.0 <= marked[0]["confidence"] <= 1.0
    # untagged input with a KB mention finder: its words and mentions are used
    seen = []

    def kb_mentions(text):
        seen.append(text)
        words = text.split()
        return words, [(0, 2, "PER"), (5, 6, "LOC")]

    records = extract(
        stats["model_dir"], ["Angela Merkel was born in Berlin"], mentions_of=kb_mentions
    )
    assert seen == ["Angela Merkel was born in Berlin"]
    facts = {(r["subject"], r["relation"], r["object"]) for r in records}
    assert ("Angela Merkel", "per:born_in", "Berlin") in facts  # a training fact
    # a tagged part of a KB name gives way to the KB name
    assert not {"Angela", "Merkel"} & {a for r in records for a in (r["subject"], r["object"])}


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_matches_an_uninterrupted_run(tiny_encoder, tmp_path, ema_decay):
    shards = write_toy_shards(tmp_path / "shards")
    full = train(_cfg(tiny_encoder, shards, tmp_path / "full", ema_decay=ema_decay))
    part = train(
        _cfg(tiny_encoder, shards, tmp_path / "resumed", stop_after_steps=4, ema_decay=ema_decay)
    )
    assert not part["completed"] and part["global_step"] == 4
    resumed = train(_cfg(tiny_encoder, shards, tmp_path / "resumed", ema_decay=ema_decay))
    assert resumed["completed"] and resumed["global_step"] == full["global_step"]
    a, b = _heads(full["model_dir"]), _heads(resumed["model_dir"])
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError):
        train(
            _cfg(tiny_encoder, shards, tmp_path / "resumed", lr=5e-4, ema_decay=ema_decay)
        )  # different settings, same output


def test_resume_refuses_changed_training_data(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run")
    assert train(cfg.replace(stop_after_steps=1))["global_step"] == 1
    with open(tmp_path / "shards" / "notes.txt", "w") as f:  # not a shard: no change
        f.write("x\n")
    assert train(cfg)["completed"]  # same data: resumes
    write_toy_shards(tmp_path / "more")  # a refresh adds a shard file beside the others
    for path in (tmp_path / "more").iterdir():
        path.rename(tmp_path / "shards" / f"refresh-{path.name}")
    with pytest.raises(ValueError, match="other data"):
        train(cfg)


def test_checkpoints_from_before_a_setting_existed_still_resume():
    cfg = TrainConfig.from_flat(output="out", shards="s")
    saved = cfg.flat()  # checkpoints hold the settings under their flat names
    for added in ("ema_decay", "lora_targets"):  # settings newer than some checkpoints
        del saved[added]
    assert _config_diff(saved, cfg) == []  # the old run behaved as the defaults do
    assert _config_diff(saved, cfg.replace(ema_decay=0.9)) == ["ema_decay"]
    assert _config_diff(saved, cfg.replace(lr=cfg.optim.lr * 2)) == ["lr"]
    assert _config_diff(saved, cfg.replace(num_threads=1)) == []  # resumable change


def test_bag_attention_training_runs(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    stats = train(
        _cfg(
            tiny_encoder,
            shards,
            tmp_path / "bags",
            aggregation="attention",
            epochs=2,
            dev=(shards,),
        )
    )
    assert stats["train_bags"] > 0 and stats["completed"]
    assert RelationExtractor.from_pretrained(stats["model_dir"]).inventory.names[0] == "NA"


def test_train_config_is_validated(tmp_path):
    with pytest.raises(ValueError):
        TrainConfig.from_flat(output=str(tmp_path))  # no data
    with pytest.raises(ValueError):
        TrainConfig.from_flat(output=str(tmp_path), shards="x", aggregation="max")
    with pytest.raises(ValueError):
        TrainConfig.from_json({"output": "o", "shards": "x", "learning_rate": 1})


def main(argv: list[str]) -> int:
    """`relbridge` with only this command group registered (others may be mid-change)."""
    import argparse

    from relbridge.cli import train as train_cli

    parser = argparse.ArgumentParser(prog="relbridge")
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_train_evaluate_extract(tiny_encoder, tmp_path, capsys):
    shards = write_toy_shards(tmp_path / "shards")
    config = tmp_path / "run.json"
    config.write_text(
        json.dumps({"shards": shards, "model": tiny_encoder, "epochs": 1, "dev_fraction": 0.0})
    )
    out = tmp_path / "cli"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--output",
                str(out),
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((out / "train_config.json").read_text())["batch_size"] == 4
    assert json.loads((out / "model" / "train_config.json").read_text())["batch_size"] == 4
    capsys.readouterr()
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"test": ["toy:0", "toy:1"]}))
    curve = tmp_path / "pr.png"
    argv = ["evaluate", "--model", str(out / "model"), "--data", shards, "--ids", str(ids)]
    assert main([*argv, "--pr-curve", str(curve)]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["pairs"] == 4
    assert curve.read_bytes()[:4] == b"\x89PNG"
    sentences = tmp_path / "in.txt"
    sentences.write_text(
        "\n<e1> Merkel </e1> was born in <e2> Berlin </e2>\n"
        + json.dumps({"text": "<e1> Scholz </e1> lebt in <e2> Potsdam </e2>", "id": "doc-7"})
        + "\n",
        encoding="utf-8",
    )
    assert (
        main(
            [
                "extract",
                "--model",
                str(out / "model"),
                "--input",
                str(sentences),
                "--output",
                str(tmp_path / "o.jsonl"),
            ]
        )
        == 0
    )
    first, second = map(json.loads, (tmp_path / "o.jsonl").read_text().splitlines())
    assert first["subject"] in {"Merkel", "Berlin"} and second["subject"] in {"Scholz", "Potsdam"}
    # provenance: the input line (blank lines count), the JSON id, the model
    assert (first["line"], second["line"], second["id"]) == (2, 3, "doc-7") and "id" not in first
    assert first["source_file"] == str(sentences) and first["model"] == str(out / "model")
    # --kb: the KB's aliases are mentions of untagged sentences; it needs the input's language
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "entities.tsv").write_text("Q1\tPER\ten\tAngela Merkel\nQ2\tLOC\tde\tBerlin\n")
    (kb / "triples.tsv").write_text("Q1\tper:born_in\tQ2\n")
    (kb / "relations.json").write_text('{"relations": ["per:born_in"]}')
    plain = tmp_path / "plain.txt"
    plain.write_text("Angela Merkel wurde in Berlin geboren\n", encoding="utf-8")
    argv = ["extract", "--model", str(out / "model"), "--input", str(plain), "--kb", str(kb)]
    capsys.readouterr()
    with pytest.raises(ValueError, match="--kb needs --lang"):
        main([*argv, "--output", str(tmp_path / "k.jsonl")])
    with pytest.raises(ValueError, match="no aliases in fr"):
        main([*argv, "--lang", "de", "--kb-alias-langs", "en, fr", "--output", "x.jsonl"])
    argv_plain = argv[: argv.index("--kb")]
    with pytest.raises(ValueError, match="only act with --kb"):
        main([*argv_plain, "--lang", "de", "--output", str(tmp_path / "k.jsonl")])
    assert (
        main(
            [
                *argv,
                "--lang",
                "de",
                "--kb-alias-langs",
                "en, de",
                "--output",
                str(tmp_path / "k.jsonl"),
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["sentences"], summary["kb_mentions"]) == (
        1,
        2,
    )  # 'Angela Merkel' (en), 'Berlin' (de)
    records = [json.loads(line) for line in (tmp_path / "k.jsonl").read_text().splitlines()]
    assert not {"Angela", "Merkel"} & {a for r in records for a in (r["subject"], r["object"])}
    # --kb-aliases: names harvested by relbridge run; their language joins --kb-alias-langs
    harvested = tmp_path / "aliases.jsonl"
    harvested.write_text(json.dumps({"id": "Q2", "type": "LOC", "harvested": {"de": [
        {"alias": "Berlin", "count": 2, "confidence": 0.9, "pair_ids": ["p1", "p2"]}]}}) + "\n")  # fmt: skip
    for extra, found in (([], 1), (["--kb-aliases", str(harvested)], 2)):
        out_file = str(tmp_path / "h.jsonl")
        assert (
            main([*argv, "--lang", "de", "--kb-alias-langs", "en", *extra, "--output", out_file])
            == 0
        )
        assert json.loads(capsys.readouterr().out)["kb_mentions"] == found


@pytest.mark.parametrize(
    "content,where",
    [
        (b'Merkel lives in Berlin.\n{"txt": "x"}\n', "in.txt:2: expected a sentence or"),
        (b"Merkel lives in K\xf6ln.\n", "in.txt:1: not valid UTF-8"),
    ],
)
def test_extract_names_the_bad_input_line_before_loading_a_model(tmp_path, capsys, content, where):
    from relbridge.cli.main import main as relbridge_main

    sentences = tmp_path / "in.txt"
    sentences.write_bytes(content)
    argv = ["extract", "--model", str(tmp_path / "no-model"), "--input", str(sentences)]
    assert relbridge_main([*argv, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert where in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_evaluate_says_what_is_wrong_with_its_model_or_data(tmp_path, capsys):
    from relbridge.cli.main import main as relbridge_main

    relx = tmp_path / "RELX_de.txt"
    relx.write_text('1\t"<e1> A </e1> in <e2> B </e2>"\nno_relation\n\n', encoding="utf-8")
    assert relbridge_main(["evaluate", "--model", str(tmp_path), "--data", str(relx)]) == 2
    assert "is not a trained relbridge model: it has no" in capsys.readouterr().err
    tsv = tmp_path / "c.tsv"
    tsv.write_text("a\tb\n", encoding="utf-8")
    assert relbridge_main(["evaluate", "--model", str(tmp_path), "--data", str(tsv)]) == 2
    assert "c.tsv: not a Parquet shard" in capsys.readouterr().err


def test_lora_trains_adapters_only_and_saves_merged_weights(tiny_encoder, tmp_path):
    pytest.importorskip("peft", reason="LoRA needs the peft extra")
    from test_models import _toy_pairs

    from relbridge.models.evaluate import predict_pairs
    from relbridge.models.model_config import ModelConfig
    from relbridge.models.optim import apply_lora as _apply_lora

    torch.manual_seed(0)
    cfg = ModelConfig(encoder=tiny_encoder, relations=("NA", "org:founded_in", "per:born_in"))
    model = RelationExtractor(cfg)
    _apply_lora(model, TrainConfig.from_flat(output=str(tmp_path), shards="x", lora=True, lora_r=4).optim)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    encoder_trainable = {n for n in trainable if n.startswith("encoder.")}
    assert encoder_trainable and all("lora_" in n for n in encoder_trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in encoder_trainable} == {
        "query",
        "value",
    }
    keyed = RelationExtractor(cfg)
    _apply_lora(
        keyed,
        TrainConfig.from_flat(output=str(tmp_path), shards="x", lora=True, lora_targets=("key",)).optim,
    )
    adapted = {
        n.split(".lora_")[0].rsplit(".", 1)[-1]
        for n, p in keyed.named_parameters()
        if p.requires_grad and n.startswith("encoder.")
    }
    assert adapted == {"key"}
    with pytest.raises(ValueError, match="lora_targets"):
        TrainConfig.from_flat(output=str(tmp_path), shards="x", lora=True, lora_targets=())
    pairs = _toy_pairs()
    items = [model.encode_pair(p.tokens, p.e1, p.e2, p.label_12, p.label_21) for p in pairs]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(5):  # moves the LoRA B matrices away from zero
        loss = model(model.collate(items), labels=True)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    probs = predict_pairs(model, pairs)
    model.save_pretrained(str(tmp_path / "m"))
    loaded = RelationExtractor.from_pretrained(str(tmp_path / "m"))
    assert not any("lora_" in k for k in loaded.state_dict())
    assert torch.allclose(
        torch.tensor(predict_pairs(loaded, pairs)), torch.tensor(probs), atol=1e-5
    )


def test_layer_lr_decay_scales_lower_layers_down(tiny_encoder, tmp_path):
    from relbridge.models.model_config import ModelConfig
    from relbridge.models.optim import encoder_lr_scale
    from relbridge.models.optim import make_optimizer as _optimizer

    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=("NA", "r")))
    cfg = TrainConfig.from_flat(output=str(tmp_path), shards="s", lr=1e-3, head_lr=1e-2, layer_lr_decay=0.5)
    lr_of = {
        id(p): group["lr"] for group in _optimizer(model, cfg.optim).param_groups for p in group["params"]
    }
    named = dict(model.named_parameters())
    top = named["encoder.encoder.layer.1.attention.self.query.weight"]
    low = named["encoder.encoder.layer.0.attention.self.query.weight"]
    assert lr_of[id(top)] == pytest.approx(1e-3) and lr_of[id(low)] == pytest.approx(5e-4)
    heads = [p for n, p in named.items() if not n.startswith("encoder.") and p.requires_grad]
    assert heads and all(lr_of[id(p)] == pytest.approx(1e-2) for p in heads)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == set(lr_of)  # every trainable parameter, once
    assert encoder_lr_scale("encoder.encoder.layer.0.output.dense.weight", 2, 1.0) == 1.0
    with pytest.raises(ValueError, match="layer_lr_decay"):
        TrainConfig.from_flat(output=str(tmp_path), shards="s", layer_lr_decay=0.0)


def test_weight_average_follows_the_weights_and_swaps_them_in_and_out():
    from relbridge.models.optim import WeightAverage

    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # frozen weights are not averaged
    start = model.weight.detach().clone()
    average = WeightAverage(model, decay=0.9)
    assert set(average.shadow) == {"weight"}
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)  # d = min(0.9, 2 / 11): the early steps fade out fast
    d = 2 / 11
    assert torch.allclose(average.shadow["weight"], d * start + (1 - d) * (start + 1.0))
    for _ in range(200):
        average.update(model)
    assert torch.allclose(average.shadow["weight"], start + 1.0, atol=1e-5)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)  # late on the decay itself rules: 0.9 * old + 0.1 * new
    expected = start + 1.1
    assert torch.allclose(average.shadow["weight"], expected, atol=1e-5)
    with average.applied(model):
        assert torch.allclose(model.weight, expected, atol=1e-5)
    assert torch.allclose(model.weight, start + 2.0)  # the trained weights are back
    other = WeightAverage(model, decay=0.9)
    other.load_state_dict(average.state_dict())
    assert other.updates == average.updates
    assert torch.equal(other.shadow["weight"], average.shadow["weight"])
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig.from_flat(output="o", shards="s", ema_decay=1.0)


def test_ema_run_keeps_the_averaged_weights(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    stats = train(
        _cfg(tiny_encoder, shards, tmp_path / "ema", ema_decay=0.9, epochs=2, keep_checkpoint=True)
    )
    assert stats["ema_decay"] == 0.9
    ckpt = torch.load(tmp_path / "ema" / "checkpoint.pt", weights_only=True)
    shadow, trained = ckpt["average"]["shadow"], ckpt["model"]
    saved = _heads(stats["model_dir"])  # no dev: the final averaged weights are the model
    head = next(k for k in saved if k in shadow)
    assert torch.allclose(saved[head], shadow[head]) and not torch.allclose(
        saved[head], trained[head]
    )


def test_a_text_line_that_starts_with_a_brace_is_text_except_in_jsonl(tmp_path):
    from relbridge.data_specs.formats import InputError
    from relbridge.models.extract import read_sentences

    text = "{ B / R } , { T }: Erhöhe deinen Manavorrat .\n" + '{"text": "Ada lebt in Berlin.", "id": "a"}\n'
    plain = tmp_path / "in.txt"
    plain.write_text(text, encoding="utf-8")
    assert list(read_sentences(str(plain))) == [
        (1, None, "{ B / R } , { T }: Erhöhe deinen Manavorrat ."),
        (2, "a", "Ada lebt in Berlin."),
    ]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"in.jsonl:1: expected a sentence or"):
        list(read_sentences(str(jsonl)))


def test_a_resumed_run_has_the_training_curve_of_an_uninterrupted_one(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    kw = {"epochs": 2, "dev": (shards,), "patience": 0}
    full = train(_cfg(tiny_encoder, shards, tmp_path / "full", **kw))
    train(_cfg(tiny_encoder, shards, tmp_path / "resumed", stop_after_steps=3, **kw))
    resumed = train(_cfg(tiny_encoder, shards, tmp_path / "resumed", **kw))
    steps, losses = ([[h[k] for h in s["history"]] for s in (full, resumed)] for k in (
        "global_step", "train_loss"))  # fmt: skip
    assert steps[0] == steps[1] == [5, 10]
    # the first evaluation after the resume averaged only the steps since it
    assert losses[1] == pytest.approx(losses[0], abs=1e-4)
