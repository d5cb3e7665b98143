"""Alignment fine-tuning (awesome-align self-training) on a tiny random encoder."""

import json
import os

import pytest
import torch

from relbridge.alignment.aligner import (
    DEFAULT_PRESET,
    AlignConfig,
    WordAligner,
    aligner_config,
    warn_if_trained_elsewhere,
)
from relbridge.alignment.finetune import (
    SUMMARY_FILE,
    FinetuneConfig,
    Side,
    consistency_loss,
    corpus_loss,
    finetune_aligner,
    pad_side,
    read_corpus,
    self_training_loss,
    word_guide,
)
from relbridge.data_specs.formats import InputError

PAIRS = [
    (["the", "city", "of", "Berlin"], ["die", "Stadt", "von", "Berlin"]),
    (["Merkel", "was", "born", "in", "Munich"], ["Merkel", "wurde", "in", "Munich", "geboren"]),
    (["Siemens", "is", "a", "company"], ["Siemens", "ist", "eine", "Firma"]),
    (["Macron", "and", "Merkel"], ["Macron", "und", "Merkel"]),
]


def _cfg(tiny_encoder, tmp_path, **kw):
    args = {
        "corpus": ("unused",),
        "output": str(tmp_path / "out"),
        "model": tiny_encoder,
        "layer": 2,
        "softmax_threshold": 0.1,
        "learning_rate": 1e-3,
        "batch_size": 4,
        "epochs": 8,
        "seed": 0,
        "device": "cpu",
    }
    return FinetuneConfig(**{**args, **kw})


# --- config -----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"objectives": ("co",)},
        {"objectives": ("so", "tlm")},
        {"softmax_threshold": 0.0},
        {"softmax_threshold": 1.0},
        {"batch_size": 0},
        {"epochs": 0},
        {"max_steps": 0},
        {"learning_rate": 0.0},
        {"warmup_ratio": 1.0},
        {"layer": -1},
        {"max_length": 3},
        {"device": "tpu"},
        {"corpus": ()},
        {"output": ""},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        FinetuneConfig(**{"corpus": ("c.src-tgt",), "output": "out", **bad})


def test_config_normalises_corpus_and_objectives():
    cfg = FinetuneConfig(corpus="c.src-tgt", output="out", objectives=["so", "co", "so"])
    assert cfg.corpus == ("c.src-tgt",)
    assert cfg.objectives == ("so", "co")
    assert cfg.layer == AlignConfig().layer  # trains the layer the aligner uses by default


# --- corpus -----------------------------------------------------------------


def test_read_corpus_formats(tmp_path):
    (tmp_path / "a.src-tgt").write_text("a house ||| une maison\nthe  cat ||| le chat\n")
    (tmp_path / "a.tsv").write_text("1\ta house\tune maison\n")
    (tmp_path / "a.jsonl").write_text('{"src": "a house", "tgt": "une maison"}\n')
    (tmp_path / "a.en").write_text("a house\n\nthe cat\n")
    (tmp_path / "a.fr").write_text("une maison\nvide\nle chat\n")
    assert read_corpus(str(tmp_path / "a.src-tgt")) == [
        (["a", "house"], ["une", "maison"]),
        (["the", "", "cat"], ["le", "chat"]),  # single-space split, as the gold files
    ]
    expected = [(["a", "house"], ["une", "maison"])]
    assert read_corpus(str(tmp_path / "a.tsv")) == expected
    assert read_corpus(str(tmp_path / "a.jsonl")) == expected
    pair_spec = f"{tmp_path / 'a.en'},{tmp_path / 'a.fr'}"
    assert read_corpus(pair_spec) == expected + [(["the", "cat"], ["le", "chat"])]
    chars = read_corpus(pair_spec, src_split=list, tgt_split=str.split)
    assert chars[0] == (list("a house"), ["une", "maison"])


def test_read_corpus_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.src-tgt"
    bad.write_text("a ||| b\nno separator\n")
    with pytest.raises(InputError, match="bad.src-tgt:2"):
        read_corpus(str(bad))
    (tmp_path / "s.txt").write_text("one\ntwo\n")
    (tmp_path / "t.txt").write_text("eins\n")
    with pytest.raises(InputError, match="fewer lines"):
        read_corpus(f"{tmp_path / 's.txt'},{tmp_path / 't.txt'}")


# --- targets and losses -----------------------------------------------------


def _side(word_of):
    word_of = torch.tensor([word_of])
    content = word_of >= 0
    return Side(torch.zeros_like(word_of), content.long(), content, word_of)


def test_word_guide_spreads_links_to_all_subwords_of_linked_words():
    # source: [CLS] w0 w0 w1 [SEP]; target: [CLS] v0 v1 v1 [SEP]
    src, tgt = _side([-1, 0, 0, 1, -1]), _side([-1, 0, 1, 1, -1])
    p = torch.zeros(1, 5, 5)
    p[0, 1, 1] = 1.0  # w0 <-> v0 through its first subword only
    p[0, 3, 3] = 1.0  # w1 <-> v1 through its last subword only
    p[0, 0, 0] = 1.0  # a special token: never a target
    guide = word_guide(p, p, 0.5, src, tgt)[0]
    expected = torch.zeros(5, 5)
    expected[1:3, 1] = 1.0
    expected[3, 2:4] = 1.0
    assert torch.equal(guide, expected)


def test_losses_reward_mass_on_the_guide():
    guide = torch.eye(3)[None]  # (1, 3, 3)
    length = torch.tensor([3.0])
    assert self_training_loss(guide, guide, guide, length, length).item() == pytest.approx(-2.0)
    uniform = torch.full((1, 3, 3), 1 / 3)
    assert self_training_loss(uniform, uniform, guide, length, length).item() == pytest.approx(
        -2 / 3
    )
    assert consistency_loss(guide, guide, length, length).item() == pytest.approx(-1.0)
    assert consistency_loss(uniform, uniform, length, length).item() == pytest.approx(-1 / 3)


def test_context_only_pieces_are_input_but_not_content():
    side = pad_side([([5, 6, 7], [0, -1, 1]), ([8], [0])], [1], [2], max_length=10, pad_id=0)
    assert side.ids.tolist() == [[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]]
    assert side.attention.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert side.content.tolist() == [[False, True, False, True, False], [False, True] + [False] * 3]
    assert side.word_of.tolist() == [[-1, 0, -1, 1, -1], [-1, 0, -1, -1, -1]]


# --- training ---------------------------------------------------------------


def test_finetuning_lowers_the_self_training_loss(tiny_encoder, tmp_path):
    cfg = _cfg(tiny_encoder, tmp_path, objectives=("so", "co"))
    before = corpus_loss(cfg, PAIRS)
    summary = finetune_aligner(cfg, PAIRS, progress=False)
    after = corpus_loss(FinetuneConfig(**{**vars(cfg), "model": cfg.output}), PAIRS)
    assert summary["steps"] == 8  # one step per epoch: 4 pairs, batch 4
    assert after < before - 0.05, (before, after)
    assert summary["history"][-1]["step"] == 8


def test_finetuning_with_skip_markers_trains_and_records_it(metaspace_encoder, tmp_path):
    pairs = [(s + ["(", "Xy"], t + ["(", "Xy"]) for s, t in PAIRS]  # words with a lone "▁"
    cfg = _cfg(metaspace_encoder, tmp_path, skip_markers=True, epochs=4)
    before = corpus_loss(cfg, pairs)
    finetune_aligner(cfg, pairs, progress=False)
    after = corpus_loss(FinetuneConfig(**{**vars(cfg), "model": cfg.output}), pairs)
    assert after < before, (before, after)
    assert warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=2))  # trained with markers off
    assert not warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=2, skip_markers=True))


def test_output_loads_in_the_aligner_and_keeps_upper_layers(tiny_encoder, tmp_path):
    from transformers import AutoModel

    cfg = _cfg(tiny_encoder, tmp_path, layer=1, epochs=2, save_every=1, log_every=1)
    finetune_aligner(cfg, PAIRS, progress=False)
    base, tuned = AutoModel.from_pretrained(tiny_encoder), AutoModel.from_pretrained(cfg.output)
    assert tuned.config.num_hidden_layers == 2
    assert not torch.equal(
        base.encoder.layer[0].output.dense.weight, tuned.encoder.layer[0].output.dense.weight
    )
    assert torch.equal(
        base.encoder.layer[1].output.dense.weight, tuned.encoder.layer[1].output.dense.weight
    )
    summary = json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())
    assert summary["config"]["layer"] == 1 and len(summary["history"]) == 2
    assert os.path.isfile(tmp_path / "out" / "checkpoint-1" / "config.json")
    assert os.stat(tmp_path / "out" / "model.safetensors").st_mode & 0o044 == 0o044

    aligner = WordAligner(AlignConfig(model=cfg.output, layer=1, device="cpu"))
    result = aligner.align(["the", "city", "of", "Berlin"], ["die", "Stadt", "von", "Berlin"])
    assert result.links and all(0 <= i < 4 and 0 <= j < 4 for i, j in result.links)
    # another layer or prefix than the one fine-tuned is allowed, with a warning
    assert not warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=1))
    assert warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=2))
    assert warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=1, text_prefix="passage: "))
    assert warn_if_trained_elsewhere(cfg.output, AlignConfig(layer=1, skip_markers=True))
    assert not warn_if_trained_elsewhere(tiny_encoder, AlignConfig(layer=2))  # not fine-tuned


def test_refuses_existing_output_and_missing_layer(tiny_encoder, tmp_path):
    cfg = _cfg(tiny_encoder, tmp_path, max_steps=1)
    finetune_aligner(cfg, PAIRS, progress=False)
    with pytest.raises(FileExistsError):
        finetune_aligner(cfg, PAIRS, progress=False)
    with pytest.raises(ValueError, match="layer 5"):
        finetune_aligner(_cfg(tiny_encoder, tmp_path / "b", layer=5), PAIRS, progress=False)
    with pytest.raises(ValueError, match="no sentence pairs"):
        finetune_aligner(_cfg(tiny_encoder, tmp_path / "c"), [], progress=False)


def test_pairs_without_subwords_are_skipped(tiny_encoder, tmp_path):
    # U+3000 is whitespace to the tokenizer: that side has words but no subwords
    cfg = _cfg(tiny_encoder, tmp_path, max_steps=1)
    summary = finetune_aligner(cfg, [*PAIRS, (["\u3000"], ["Berlin"])], progress=False)
    assert summary["pairs"] == len(PAIRS)


def test_same_seed_same_model(tiny_encoder, tmp_path):
    from transformers import AutoModel

    weights = []
    for run in ("a", "b"):
        cfg = _cfg(tiny_encoder, tmp_path / run, epochs=2)
        finetune_aligner(cfg, PAIRS, progress=False)
        weights.append(AutoModel.from_pretrained(cfg.output).encoder.layer[0].output.dense.weight)
    assert torch.equal(weights[0], weights[1])


# --- command line -----------------------------------------------------------


def test_cli_parses_flags_into_the_config():
    from relbridge.cli.finetune import config_from_args
    from relbridge.cli.main import build_parser

    args = build_parser().parse_args(
        ["finetune-aligner", "--corpus", "a.src-tgt", "b.en,b.fr", "--output", "out",
         "--layer", "8", "--objectives", "so,co", "--learning-rate", "5e-5",
         "--max-steps", "100", "--train-embeddings", "--no-bf16", "--threads", "2"]
    )  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.corpus == ("a.src-tgt", "b.en,b.fr") and cfg.output == "out"
    assert (cfg.layer, cfg.objectives, cfg.learning_rate) == (8, ("so", "co"), 5e-5)
    assert (cfg.max_steps, cfg.freeze_embeddings, cfg.bf16, cfg.num_threads) == (
        100, False, False, 2
    )  # fmt: skip
    default = config_from_args(build_parser().parse_args(
        ["finetune-aligner", "--corpus", "a", "--output", "o"]
    ))  # fmt: skip
    assert default.softmax_threshold == 1e-3
    # layer and prefix default to the aligner preset the model is for
    pipeline = aligner_config(DEFAULT_PRESET)
    assert (default.layer, default.text_prefix, default.skip_markers) == (
        pipeline.layer, pipeline.text_prefix, pipeline.skip_markers
    )  # fmt: skip
    stock = config_from_args(build_parser().parse_args(
        ["finetune-aligner", "--corpus", "a", "--output", "o", "--aligner", "simalign.argmax.v1"]
    ))  # fmt: skip
    assert (stock.layer, stock.text_prefix, stock.skip_markers) == (6, "", False)


def test_cli_trains_and_prints_a_summary(tiny_encoder, tmp_path, capsys):
    from relbridge.cli.main import main

    corpus = tmp_path / "train.src-tgt"
    corpus.write_text("".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in PAIRS))
    out = tmp_path / "cli-out"
    argv = ["finetune-aligner", "--corpus", str(corpus), "--output", str(out), "--model",
            tiny_encoder, "--layer", "2", "--max-steps", "2", "--batch-size", "2",
            "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 2 and report["pairs"] == 4
    assert os.path.isfile(out / "model.safetensors")
