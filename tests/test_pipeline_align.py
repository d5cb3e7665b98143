"""AlignWords: batched alignment in Beam, one encoder per process, dead letters."""

import argparse
from dataclasses import replace

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.shared import Shared
from test_statistical import toy_corpus

from relbridge.alignment.aligner import AlignConfig, AlignResult, WordAligner
from relbridge.alignment.statistical import EflomalConfig
from relbridge.data_specs import ShardRow
from relbridge.pipeline.align import (
    AlignBatchFn,
    AlignWords,
    EflomalFn,
    MergeLinksFn,
    chunk_of,
)
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG


def row(i: int, src: str, tgt: str) -> ShardRow:
    return ShardRow(
        f"c:{i}", "c", "c.tsv", i, "en", "de", src, tgt, tuple(src.split()), tuple(tgt.split())
    )


ROWS = [
    row(1, "the city", "die Stadt"),
    row(2, "Paris is a city", "Paris ist eine Stadt"),
    row(3, "x", "y z"),
]


def test_align_words_transform_adds_links(tiny_encoder):
    cfg = AlignConfig(model=tiny_encoder, layer=1, batch_size=2)
    with TestPipeline() as p:
        out = p | beam.Create(ROWS) | AlignWords(cfg)
        assert_that(
            out.rows
            | beam.Map(
                lambda r: (
                    r.pair_id,
                    bool(r.alignment),
                    all(
                        0 <= s < len(r.src_tokens) and 0 <= t < len(r.tgt_tokens)
                        for s, t in r.alignment
                    ),
                )
            ),
            equal_to([("c:1", True, True), ("c:2", True, True), ("c:3", True, True)]),
            label="Rows",
        )
        assert_that(out[DEAD_LETTER_TAG], equal_to([]), label="NoDead")


def test_align_words_carries_fallback_links_for_projection(tiny_encoder):
    """With a fallback method, rows also carry that method's links, computed in the same pass."""
    cfg = AlignConfig(model=tiny_encoder, layer=1, batch_size=2)
    expected = {
        f"c:{i + 1}": tuple(sorted(r.by_method["itermax"]))
        for i, r in enumerate(
            WordAligner(replace(cfg, also=("itermax",))).align_batch(
                [(r.src_tokens, r.tgt_tokens) for r in ROWS]
            )
        )
    }
    with TestPipeline() as p:
        out = p | beam.Create(ROWS) | AlignWords(cfg, fallback_method="itermax")
        assert_that(
            out.rows | beam.Map(lambda r: (r.pair_id, r.fallback_alignment)),
            equal_to(list(expected.items())),
        )
    assert all(expected.values())


class FakeAligner:
    """Stands in for WordAligner: fails pairs whose source starts with 'bad'."""

    def align_batch(self, pairs):
        return [
            AlignResult(None, "cannot align") if src[0] == "bad" else AlignResult(((0, 0),), None)
            for src, _ in pairs
        ]


def test_align_batch_fn_lifecycle_with_a_fake_aligner(monkeypatch):
    import relbridge.pipeline.align as align_module

    monkeypatch.setattr(align_module, "WordAligner", lambda cfg: FakeAligner())
    fn = AlignBatchFn(AlignConfig(), Shared())
    fn.setup()
    out = list(fn.process([row(1, "good one", "gut"), row(2, "bad one", "schlecht")]))
    fn.teardown()
    assert out[0].alignment == ((0, 0),)
    assert out[1].tag == DEAD_LETTER_TAG
    assert out[1].value["reason"] == "cannot align" and out[1].value["line"] == 2


def toy_rows() -> list[ShardRow]:
    """Rows whose two nouns swap places in the target: only eflomal's lexicon can tell."""
    return [row(k, " ".join(src), " ".join(tgt)) for k, (src, tgt) in enumerate(toy_corpus())]


def test_align_words_runs_eflomal_once_over_the_corpus(tiny_encoder):
    rows = toy_rows()
    cfg = AlignConfig(
        model=tiny_encoder,
        layer=1,
        batch_size=8,
        statistical="only",
        eflomal=EflomalConfig(n_samplers=2),
    )

    def learned_the_lexicon(out):
        assert len(out) == len(rows)
        crossed = sum((1, 4) in r.alignment and (4, 1) in r.alignment for r in out)
        assert crossed >= 0.7 * len(rows), crossed  # unseeded sampling: see test_statistical

    with TestPipeline() as p:
        out = p | beam.Create(rows) | AlignWords(cfg)
        assert_that(out.rows, learned_the_lexicon, label="Rows")
        assert_that(out[DEAD_LETTER_TAG], equal_to([]), label="NoDead")


def test_align_words_merges_statistical_links_by_pair_id(tiny_encoder, monkeypatch):
    import relbridge.pipeline.align as align_module

    # a deterministic stand-in for eflomal: each pair gets one link, last word to last word
    monkeypatch.setattr(
        align_module,
        "eflomal_align",
        lambda pairs, cfg, priors: [[(len(s) - 1, len(t) - 1)] for s, t in pairs],
    )
    cfg = AlignConfig(model=tiny_encoder, layer=1, batch_size=2, statistical="union")
    neural = WordAligner(cfg).align_batch([(r.src_tokens, r.tgt_tokens) for r in ROWS])
    no_subwords = replace(row(9, "x", "y"), src_tokens=("\u3000",))  # fails the neural step
    expected = [
        (r.pair_id, tuple(sorted({*n.links, (len(r.src_tokens) - 1, len(r.tgt_tokens) - 1)})))
        for r, n in zip(ROWS, neural)
    ]
    with TestPipeline() as p:
        out = p | beam.Create([*ROWS, no_subwords]) | AlignWords(cfg)
        assert_that(
            out.rows | beam.Map(lambda r: (r.pair_id, r.alignment)),
            equal_to(expected),
            label="Rows",
        )
        assert_that(
            out[DEAD_LETTER_TAG] | beam.Map(lambda d: (d["line"], d["reason"])),
            equal_to([(9, "no subwords on the source side")]),
            label="Dead",
        )


def test_merge_links_fn_merges_by_pair_id_and_passes_dead_letters_through():
    fn = MergeLinksFn("intersection")
    aligned = replace(row(1, "good one", "gut"), alignment=((0, 0), (1, 0)))
    letter = {"stage": "AlignWords", "reason": "empty"}
    joined = [  # what CoGroupByKey hands over
        ("c:1", {"row": [aligned], "links": [[[0, 0]]], "dead": []}),
        ("c:2", {"row": [row(2, "x", "y")], "links": [], "dead": []}),
        ("dead:1", {"row": [], "links": [], "dead": [letter]}),
    ]
    out = [x for e in joined for x in fn.process(e)]
    assert out[0].alignment == ((0, 0),)
    assert (
        out[1].tag == DEAD_LETTER_TAG
        and "eflomal" in out[1].value["reason"]
        and out[1].value["line"] == 2
    )
    assert out[2].tag == DEAD_LETTER_TAG and out[2].value == letter


def test_merge_links_fn_never_gives_one_pair_s_links_to_another():
    fn = MergeLinksFn("union")
    two = [row(1, "a b", "x y"), replace(row(5, "a b c d e", "v w x y z"), pair_id="c:1")]
    out = list(fn.process(("c:1", {"row": two, "links": [[[4, 4]]], "dead": []})))
    assert [o.tag for o in out] == [DEAD_LETTER_TAG] * 2
    assert sorted(o.value["line"] for o in out) == [1, 5]
    assert "shared by 2 rows" in out[0].value["reason"]


def test_eflomal_fn_skips_one_sided_pairs_and_keys_links_by_pair_id():
    pairs = [(f"p{k}", ("a", "b"), ("x", "y"), ((0, 0),)) for k in range(30)] + [
        ("empty", ("a",), (), ())
    ]
    for priors in (False, True):
        fn = EflomalFn(EflomalConfig(n_samplers=1, neural_priors=priors))
        out = dict(fn.process((0, pairs)))
        assert sorted(out) == sorted(f"p{k}" for k in range(30))
        assert all(0 <= i < 2 and 0 <= j < 2 for links in out.values() for i, j in links)


def test_chunks_are_stable_and_cover_the_corpus():
    ids = [f"corpus:{k}" for k in range(1000)]
    assert {chunk_of(i, 1000, 0) for i in ids} == {0}  # 0 = one chunk
    assert {chunk_of(i, 1000, 5000) for i in ids} == {0}  # fits in one
    chunks = [chunk_of(i, 1000, 250) for i in ids]
    assert set(chunks) == {0, 1, 2, 3}
    assert all(150 < chunks.count(c) < 350 for c in range(4))  # about 250 each
    assert chunks == [chunk_of(i, 1000, 250) for i in ids]  # the same on every worker


def test_large_corpora_train_eflomal_in_chunks(tiny_encoder, monkeypatch):
    import relbridge.pipeline.align as align_module

    calls = []

    def fake_eflomal(pairs, cfg, priors):  # records each chunk; links last word to last word
        calls.append(len(pairs))
        return [[(len(s) - 1, len(t) - 1)] for s, t in pairs]

    monkeypatch.setattr(align_module, "eflomal_align", fake_eflomal)
    rows = [row(k, f"w{k} a b", f"v{k} c") for k in range(12)]
    cfg = AlignConfig(
        model=tiny_encoder,
        layer=1,
        statistical="only",
        eflomal=EflomalConfig(chunk_pairs=4),
    )
    with TestPipeline() as p:
        out = p | beam.Create(rows) | AlignWords(cfg)
        assert_that(
            out.rows | beam.Map(lambda r: (r.pair_id, r.alignment)),
            equal_to([(r.pair_id, ((2, 1),)) for r in rows]),
        )
    expected = {chunk_of(r.pair_id, 12, 4) for r in rows}
    assert len(calls) == len(expected) > 1 and sum(calls) == 12


def test_run_flags_pick_the_default_preset_and_override_it():
    from relbridge.alignment.aligner import DEFAULT_PRESET, aligner_config
    from relbridge.pipeline.options import add_arguments, align_config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    required = [
        "--corpus",
        "c.tsv",
        "--kb",
        "kb",
        "--src-lang",
        "en",
        "--tgt-lang",
        "de",
        "--output",
        "out",
    ]
    assert align_config_from_args(parser.parse_args(required)) == aligner_config(DEFAULT_PRESET)
    args = parser.parse_args(
        [
            *required,
            "--align-layer",
            "5",
            "--align-statistical",
            "off",
            "--align-statistical-extra-corpus",
            "more.src-tgt",
            "--model",
            "m",
        ]
    )
    cfg = align_config_from_args(args)
    assert (cfg.layer, cfg.statistical, cfg.model) == (5, "off", "m")
    assert cfg.eflomal.extra_corpus == "more.src-tgt"
    assert (
        cfg.text_prefix == aligner_config(DEFAULT_PRESET).text_prefix
    )  # the rest stays the preset's


@pytest.mark.parametrize(
    "beam_args,expected",
    [
        ([], None),
        (["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"], "cores/2"),
        (["--direct_running_mode", "multi_processing", "--direct_num_workers", "0"], 1),
        (["--direct_running_mode", "multi_threading", "--direct_num_workers", "2"], None),
        (["--runner", "DataflowRunner"], 1),
        (["--runner", "DataflowRunner", "--experiments", "no_use_multiple_sdk_containers"], None),
    ],
)
def test_threads_per_worker_avoid_oversubscribing_the_cores(beam_args, expected, monkeypatch):
    from relbridge.pipeline import options

    monkeypatch.setattr(options.os, "cpu_count", lambda: 8)
    assert options.threads_per_worker(beam_args) == (4 if expected == "cores/2" else expected)


def test_how_many_threads_or_compiling_does_not_change_the_run_id(tmp_path):
    from relbridge.pipeline.options import add_arguments, config_from_args

    corpus = tmp_path / "c.tsv"
    corpus.write_text("a\tb\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--corpus", str(corpus), "--kb", "kb", "--src-lang", "en", "--tgt-lang", "de"]
    argv += ["--output", str(tmp_path / "out")]
    plain = config_from_args(parser.parse_args(argv))
    multi = config_from_args(
        parser.parse_args([*argv, "--align-compile"]),
        ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
    )
    assert multi.align.num_threads is not None and multi.align.compile
    assert multi.write.run_id == plain.write.run_id
    other = config_from_args(parser.parse_args([*argv, "--align-layer", "5"]))
    assert other.write.run_id != plain.write.run_id


def test_the_saved_align_config_is_the_one_the_workers_run(tmp_path):
    """The projection's fallback method is in the align config that is saved and hashed."""
    import json

    from relbridge.pipeline.output import write_config
    from relbridge.pipeline.options import add_arguments, config_from_args

    corpus = tmp_path / "c.tsv"
    corpus.write_text("a\tb\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--corpus", str(corpus), "--kb", "kb", "--src-lang", "en", "--tgt-lang", "de"]
    argv += ["--output", str(tmp_path / "out"), "--aligner", "simalign.argmax.v1"]
    cfg = config_from_args(parser.parse_args(argv))
    assert cfg.project.fallback_method == "itermax" and "itermax" in cfg.align.methods
    assert AlignWords(cfg.align, cfg.project.fallback_method).cfg == cfg.align  # nothing added
    write_config(str(tmp_path / "out"), cfg)
    saved = json.loads((tmp_path / "out" / "pipeline_config.json").read_text())
    assert saved["align"]["method"] == "argmax" and saved["align"]["also"] == ["itermax"]
