"""The batched word aligner against stock simalign, on a tiny random encoder."""

import itertools
from dataclasses import replace

import numpy as np
import pytest

from relbridge.alignment.aligner import (
    ALIGNERS,
    DEFAULT_PRESET,
    AlignConfig,
    AlignResult,
    WordAligner,
    aligner_config,
    merge_links,
    register_preset,
    with_statistical,
)
from relbridge.alignment.embed import (
    context_only_markers,
    marker_ids,
    plan_batches,
    stitch_windows,
    window_starts,
)
from relbridge.alignment.methods import (
    METHODS,
    MethodParams,
    PairScores,
    Registry,
    match_links,
    softmax_links,
)
from relbridge.alignment.statistical import EflomalConfig

# Words the tiny tokenizer knows whole, plus some it spells out in characters.
PAIRS = [
    (
        ["the", "city", "of", "Berlin", "was", "founded", "in", "Germany"],
        ["die", "Stadt", "Berlin", "ist", "in", "Germany", "geboren"],
    ),
    (["Angela", "Merkel", "is", "president"], ["Angela", "Merkel", "ist", "von", "Firma", "und"]),
    (
        ["Siemens", "is", "a", "company", "in", "Munich"],
        ["Siemens", "ist", "eine", "Firma", "in", "Munich"],
    ),
    (["a", "b"], ["c"]),
    (["Emmanuel", "Macron"], ["Macron", "Emmanuel", ",", "president", "of", "France"]),
]
STOCK_KEYS = {"argmax": "inter", "itermax": "itermax", "match": "mwmf"}


@pytest.fixture(scope="module")
def aligners(tiny_encoder):
    """Our aligner (all three methods) per (token_type, layer, distortion)."""
    cache = {}

    def get(token_type="word", layer=1, distortion=0.0, **kw):
        key = (token_type, layer, distortion, tuple(sorted(kw.items())))
        if key not in cache:
            cfg = AlignConfig(
                model=tiny_encoder,
                layer=layer,
                method="argmax",
                also=("itermax", "match"),
                token_type=token_type,
                distortion=distortion,
                device="cpu",
                **kw,
            )
            cache[key] = WordAligner(cfg)
        return cache[key]

    return get


@pytest.mark.parametrize(
    "token_type,layer,distortion", [("word", 1, 0.0), ("bpe", 1, 0.0), ("bpe", 2, 0.5)]
)
def test_same_links_as_stock_simalign(tiny_encoder, aligners, token_type, layer, distortion):
    from simalign import SentenceAligner

    stock = SentenceAligner(
        model=tiny_encoder,
        token_type=token_type,
        matching_methods="mai",
        device="cpu",
        layer=layer,
        distortion=distortion,
    )
    results = aligners(token_type, layer, distortion).align_batch(PAIRS)
    for (src, tgt), result in zip(PAIRS, results):
        expected = stock.get_word_aligns(src, tgt)
        for ours, theirs in STOCK_KEYS.items():
            assert list(result.by_method[ours]) == expected[theirs], (ours, src, tgt)
        assert result.links == result.by_method["argmax"]


def test_batched_equals_one_at_a_time(aligners):
    aligner = aligners()
    batched = aligner.align_batch(PAIRS)
    assert batched == [aligner.align(src, tgt) for src, tgt in PAIRS]


def test_small_forward_batches_give_the_same_links(aligners):
    assert aligners(max_tokens=16).align_batch(PAIRS) == aligners().align_batch(PAIRS)


def test_compiled_encoder_gives_the_same_links(aligners):
    compiled = aligners(compile=True)
    assert hasattr(compiled.embedder.model, "_orig_mod")  # torch.compile wrapped it
    assert compiled.align_batch(PAIRS) == aligners().align_batch(PAIRS)
    assert compiled.align_batch(PAIRS[:1]) == aligners().align_batch(PAIRS[:1])  # other shapes


def test_simalign_helpers_are_computed_alike_without_importing_simalign():
    """argmax, itermax and distortion equal simalign's helpers, ties and tiny sides included."""
    import subprocess
    import sys

    from simalign import SentenceAligner

    from relbridge.alignment.methods import apply_distortion, best_of_rows_and_columns, iter_max

    rng = np.random.default_rng(1)
    for m, n in [(1, 1), (1, 4), (2, 3), (3, 3), (5, 8), (9, 4), (12, 12)]:
        for sim in (rng.random((m, n)), rng.integers(0, 3, (m, n)) / 2.0):  # the second has ties
            assert all(map(np.array_equal, best_of_rows_and_columns(sim),
                           SentenceAligner.get_alignment_matrix(sim)))  # fmt: skip
            for rounds in (1, 2, 3, 5):
                assert np.array_equal(iter_max(sim, rounds), SentenceAligner.iter_max(sim, rounds))
            for ratio in (0.0, 0.5, 1.0):
                expected = SentenceAligner.apply_distortion(sim, ratio).astype(sim.dtype)
                assert np.array_equal(apply_distortion(sim, ratio), expected)
    code = (
        "import sys, numpy as np\n"
        "from relbridge.alignment import methods as m\n"
        "s = np.random.rand(4, 5)\n"
        "for f in (m.argmax_links, m.itermax_links):\n"
        "    f(m.PairScores(sim=m.apply_distortion(s, 0.5), dot=s), m.MethodParams())\n"
        "print('simalign' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_match_equals_networkx_matching():
    from simalign import SentenceAligner

    rng = np.random.default_rng(0)
    for m, n in [(1, 1), (3, 5), (6, 4), (7, 7)]:
        sim = rng.random((m, n))
        ours = match_links(PairScores(sim=sim, dot=sim), MethodParams())
        assert (ours == (SentenceAligner.get_max_weight_match(sim) > 0)).all()


def test_softmax_method_keeps_mutual_confident_links():
    dot = np.array([[9.0, 0.0, 0.0], [0.0, 9.0, 8.9], [0.0, 0.0, 0.0]])
    links = softmax_links(PairScores(sim=dot, dot=dot), MethodParams(softmax_threshold=0.1))
    # source 1 splits its mass between targets 1 and 2, both above 0.1, and both
    # targets prefer source 1; source 2 is flat (1/3 each), but no target wants it
    assert links.tolist() == [[True, False, False], [False, True, True], [False, False, False]]


def _padded_cost(lengths, spans, overhead):
    return sum((j - i) * lengths[i] + overhead for i, j in spans)


def test_plan_batches_cuts_where_padding_costs_more_than_a_pass():
    lengths = [50, 50, 48, 10, 10, 9, 9]
    spans = plan_batches(lengths, max_tokens=1000, overhead=20)
    assert spans == [(0, 3), (3, 7)]  # one pass for the long, one for the short
    # the plan covers every sequence once, in order
    assert [k for i, j in spans for k in range(i, j)] == list(range(len(lengths)))
    # a huge overhead puts everything in one pass; with none, nothing is padded
    assert plan_batches(lengths, 1000, overhead=10**6) == [(0, 7)]
    assert _padded_cost(lengths, plan_batches(lengths, 1000, overhead=0), 0) == sum(lengths)


def test_plan_batches_is_optimal_and_respects_max_tokens():
    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = sorted(rng.integers(1, 40, size=9).tolist(), reverse=True)
        spans = plan_batches(lengths, max_tokens=80, overhead=15)
        assert all(j - i == 1 or (j - i) * lengths[i] <= 80 for i, j in spans)
        best = float("inf")  # brute force over all 2^8 cut sets
        for cuts in itertools.product((0, 1), repeat=len(lengths) - 1):
            bounds = [0, *(k + 1 for k, c in enumerate(cuts) if c), len(lengths)]
            parts = list(itertools.pairwise(bounds))
            if all(j - i == 1 or (j - i) * lengths[i] <= 80 for i, j in parts):
                best = min(best, _padded_cost(lengths, parts, 15))
        assert _padded_cost(lengths, spans, 15) == best


def test_plan_batches_allows_a_single_overlong_sequence():
    assert plan_batches([500, 3, 2], max_tokens=100, overhead=5) == [(0, 1), (1, 3)]
    assert plan_batches([], 100, 1) == []
    with pytest.raises(ValueError, match="sorted"):
        plan_batches([1, 2], 100, 1)


def test_window_starts_cover_and_overlap():
    assert window_starts(5, 10, 4) == [0]
    starts = window_starts(25, 10, 4)
    assert starts[0] == 0 and starts[-1] == 15
    assert all(b - a <= 6 for a, b in itertools.pairwise(starts))


def test_stitch_takes_each_position_from_its_most_central_window():
    starts = window_starts(12, 8, 4)  # [0, 4]
    windows = [np.full((8, 1), float(k)) for k in range(len(starts))]
    out = stitch_windows(starts, 8, 12, windows)[:, 0]
    # positions 0-5 are more central in window 0 (0-7), 6-11 in window 1 (4-11)
    assert out.tolist() == [0.0] * 6 + [1.0] * 6


def test_long_sentences_are_windowed_not_truncated(aligners, tiny_encoder):
    long_src = ("the city of Berlin was founded in Germany and " * 12).split()  # > 64 subwords
    long_tgt = ("die Stadt Berlin ist in Germany geboren und " * 12).split()
    aligner = aligners(max_length=24, window_overlap=8)
    result = aligner.align(long_src, long_tgt)
    assert result.error is None
    assert max(i for i, _ in result.links) >= len(long_src) - 5  # links reach the end
    emb = aligner.embedder
    ids, _word_of = emb.tokenize([long_src])[0]
    assert len(ids) > emb.content
    (vectors,) = emb.embed_ids([ids])
    assert vectors.shape[0] == len(ids) and np.isfinite(vectors).all()
    # a sentence that fits one window is embedded exactly as without windows
    short = PAIRS[0][0]
    (a,) = aligners().embedder.embed_ids([emb.tokenize([short])[0][0]])
    (b,) = emb.embed_ids([emb.tokenize([short])[0][0]])
    assert np.allclose(a, b, atol=1e-5)


def test_full_encoder_window_is_used_by_default(aligners):
    emb = aligners().embedder
    assert emb.content == 62  # tiny model: 64 positions minus [CLS] and [SEP]


def test_bad_pairs_become_dead_letters(aligners):
    aligner = aligners()
    good = PAIRS[1]
    results = aligner.align_batch(
        [
            ([], ["Paris"]),
            (["Paris"], []),
            (["\u3000"], ["Paris"]),  # a word with no subwords, alone on its side
            "the city",
            ("the city", ["Stadt"]),
            good,
        ]
    )
    errors = [r.error for r in results]
    assert errors[0] == "empty source side"
    assert errors[1] == "empty target side"
    assert errors[2] == "no subwords on the source side"
    assert errors[3] == "not a (source words, target words) pair"
    assert errors[4] == "source side is a string, not a word list"
    assert all(r.links is None for r in results[:5])
    assert results[5] == aligner.align(*good)


def test_word_without_subwords_gets_no_link_but_pair_aligns(aligners):
    src = ["Angela", "\u3000", "Merkel"]
    result = aligners().align(src, ["Angela", "Merkel"])
    assert result.error is None
    assert all(i != 1 for i, _ in result.links)
    assert {i for i, _ in result.links} <= {0, 2}


def test_too_many_subwords_is_a_dead_letter(aligners):
    result = aligners(max_subwords=5).align(["Berlin"] * 6, ["Berlin"])
    assert result.links is None and "max_subwords" in result.error


def test_config_validation():
    with pytest.raises(ValueError, match="unknown extraction method"):
        AlignConfig(method="viterbi")
    with pytest.raises(ValueError, match="token_type"):
        AlignConfig(token_type="char")
    with pytest.raises(ValueError, match="distortion"):
        AlignConfig(distortion=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        AlignConfig(batch_size=0)
    cfg = AlignConfig(method="simalign.itermax.v1", also=["match"], extra_layers=[5, 6])
    assert cfg.methods == ("simalign.itermax.v1", "match") and cfg.layers == (6, 5)
    hash(cfg)  # frozen and hashable: pickles to workers, keys run ids


def test_registries_refuse_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_preset("simalign.argmax.v1", method="argmax")
    with pytest.raises(ValueError, match="already registered"):
        METHODS.register("simalign.match.v1")(match_links)
    reg = Registry("thing")
    reg.register("a.v1")(1)
    assert reg.get("a.v1") == 1 and reg.names() == ["a.v1"]
    with pytest.raises(ValueError, match="unknown thing"):
        reg.get("a.v2")


def test_presets_by_versioned_name():
    assert "simalign.itermax.v1" in ALIGNERS.names()
    cfg = aligner_config("simalign.mai.v1", layer=4)
    assert cfg.methods == ("argmax", "itermax", "match") and cfg.layer == 4
    assert aligner_config("simalign.match.v1") == replace(AlignConfig(), method="match")
    assert aligner_config(DEFAULT_PRESET) == replace(
        aligner_config("relbridge.default.v2"), skip_markers=True
    )
    assert not AlignConfig().skip_markers  # stock simalign aligns every piece
    default = aligner_config("relbridge.default.v2")
    assert (default.statistical, default.token_type, default.text_prefix) == (
        "grow-diag-final-and",
        "bpe",
        "passage: ",
    )
    assert (
        default.eflomal.neural_priors
        and not aligner_config("relbridge.default.v1").eflomal.neural_priors
    )


def test_lone_markers_are_context_only_unless_all_their_word_has():
    # ids: 6 is the lone marker; words 0 and 2 have other pieces, word 1 has only it
    word_of = np.array([0, 0, 1, 2, 2, 2])
    out = context_only_markers([6, 100, 6, 6, 200, 201], word_of, frozenset({6}))
    assert out.tolist() == [-1, 0, 1, -1, 2, 2]
    assert context_only_markers([100, 200], np.array([0, 1]), frozenset({6})).tolist() == [0, 1]


def test_skip_markers_embeds_lone_markers_but_never_links_them(metaspace_encoder):
    from transformers import AutoTokenizer

    from relbridge.alignment.aligner import extract_links

    tokenizer = AutoTokenizer.from_pretrained(metaspace_encoder)
    (marker,) = marker_ids(tokenizer)  # the lone "▁"; "▁the" etc. are words, not markers
    assert tokenizer.convert_ids_to_tokens(marker) == "▁"
    pair = (["the", "city", "Berlin", "(", "Xy"], ["科学家", "一直", "Berlin", "Stadt"])
    cfg = AlignConfig(model=metaspace_encoder, layer=1, token_type="bpe", device="cpu")
    plain, skipping = WordAligner(cfg), WordAligner(replace(cfg, skip_markers=True))

    (src_ids, src_all), (tgt_ids, tgt_all) = plain.embedder.tokenize(pair)
    (src_ids2, src_w), (tgt_ids2, tgt_w) = skipping.embedder.tokenize(pair)
    assert (src_ids2, tgt_ids2) == (src_ids, tgt_ids)  # the encoder input is unchanged
    for ids, all_w, w in ((src_ids, src_all, src_w), (tgt_ids, tgt_all, tgt_w)):
        dropped = [k for k in range(len(ids)) if w[k] == -1]
        assert dropped and all(ids[k] == marker for k in dropped)
        assert (w[w >= 0] == all_w[w >= 0]).all() and set(w[w >= 0]) == set(all_w)

    src_v, tgt_v = plain.embedder.embed_ids([src_ids, tgt_ids])
    by_hand = extract_links(src_v, src_w, tgt_v, tgt_w, 5, 4, cfg)["argmax"]
    assert skipping.align(*pair).links == by_hand
    # embed() leaves the context-only rows out of its output
    src_emb = skipping.embedder.embed([pair[0]])[0]
    assert len(src_emb.vectors) == len(src_emb.word_of) == int((src_w >= 0).sum())


def test_failed_result_shape():
    r = AlignResult.failed("why")
    assert r.links is None and r.error == "why" and dict(r.by_method) == {}


NEURAL = ((0, 0), (1, 1), (2, 3))
STATISTICAL_LINKS = [(0, 0), (1, 2), (3, 4), (5, 0)]


@pytest.mark.parametrize(
    "how,expected",
    [
        ("off", NEURAL),
        ("only", ((0, 0), (1, 2), (3, 4), (5, 0))),
        ("intersection", ((0, 0),)),
        ("union", ((0, 0), (1, 1), (1, 2), (2, 3), (3, 4), (5, 0))),
        # grown from (0, 0) along the diagonal; (5, 0) only has a free source word
        ("grow-diag-final", ((0, 0), (1, 1), (1, 2), (2, 3), (3, 4), (5, 0))),
        ("grow-diag-final-and", ((0, 0), (1, 1), (1, 2), (2, 3), (3, 4))),
        ("fill", ((0, 0), (1, 1), (2, 3), (3, 4))),
    ],
)
def test_merge_links_by_each_rule(how, expected):
    assert merge_links(NEURAL, STATISTICAL_LINKS, how) == expected
    merged = with_statistical(
        AlignResult(NEURAL, by_method={"argmax": NEURAL}), STATISTICAL_LINKS, how
    )
    assert merged.links == expected
    assert merged.by_method["argmax"] == NEURAL and merged.by_method["eflomal"] == tuple(
        sorted(STATISTICAL_LINKS)
    )


def test_statistical_config():
    with pytest.raises(ValueError, match="statistical"):
        AlignConfig(statistical="average")
    cfg = AlignConfig(statistical="fill", eflomal={"n_samplers": 1, "extra_corpus": "x.src-tgt"})
    assert cfg.eflomal == EflomalConfig(n_samplers=1, extra_corpus="x.src-tgt")
    hash(cfg)


@pytest.mark.parametrize("how,priors", [("only", False), ("union", False), ("fill", True)])
def test_align_corpus_merges_eflomal_links(tiny_encoder, how, priors):
    pairs = [*PAIRS, ([], ["x"])] * 4  # eflomal trains only on the pairs the neural step accepts
    cfg = AlignConfig(
        model=tiny_encoder,
        layer=1,
        device="cpu",
        statistical=how,
        batch_size=3,
        eflomal=EflomalConfig(n_samplers=1, neural_priors=priors),
    )
    results = WordAligner(cfg).align_corpus(pairs)
    assert len(results) == len(pairs)
    for (src, tgt), r in zip(pairs, results):
        if not src:
            assert r.links is None and "empty" in r.error
            continue
        assert r.links == merge_links(r.by_method["argmax"], r.by_method["eflomal"], how)
        assert all(0 <= i < len(src) and 0 <= j < len(tgt) for i, j in r.links)
    off = WordAligner(replace(cfg, statistical="off")).align_corpus(pairs)
    assert [r.links for r in off] == [r.by_method.get("argmax") for r in results]
