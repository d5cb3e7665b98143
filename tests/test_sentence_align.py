"""The sentence-alignment DP on tiny hand-made documents, and vecalign's scoring."""

from __future__ import annotations

import numpy as np
import pytest

from relbridge.alignment.sentence_align import (
    Band,
    SentenceAlignConfig,
    align_sentences,
    block_vectors,
    path_band,
)
from relbridge.alignment.sentence_eval import (
    format_unit,
    parse_unit,
    read_alignment,
    score_alignments,
)
from relbridge.data_specs.formats import InputError

H = 24
PLAIN = SentenceAlignConfig(margin=False, center=False, length_weight=0.0, threshold=0.0)


def meanings(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random, nearly orthogonal "sentence meanings"."""
    return np.random.default_rng(seed).normal(size=(n, H))


def pairs(units) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(u.src, u.tgt) for u in units]


def covers_each_once(units, n: int, m: int) -> bool:
    src = [i for u in units for i in u.src]
    tgt = [j for u in units for j in u.tgt]
    return src == list(range(n)) and tgt == list(range(m))


@pytest.mark.parametrize("cfg", [PLAIN, SentenceAlignConfig()])
def test_one_to_one(cfg):
    x = meanings(5)
    units = align_sentences(x, x + 0.05 * meanings(5, seed=1), cfg=cfg)
    assert pairs(units) == [((i,), (i,)) for i in range(5)]
    assert all(u.score > 0 for u in units)


def test_one_to_two_and_two_to_one():
    x = meanings(6)
    # source 1 is split in two on the target side; source 3 + 4 are joined in one target
    src = x[[0, 1, 2, 3, 4, 5]]
    halves = np.random.default_rng(2).normal(size=(2, H))
    src[1] = halves.sum(0)
    tgt = np.stack([x[0], halves[0], halves[1], x[2], x[3] + x[4], x[5]])
    units = align_sentences(src, tgt, cfg=PLAIN)
    assert pairs(units) == [
        ((0,), (0,)),
        ((1,), (1, 2)),
        ((2,), (3,)),
        ((3, 4), (4,)),
        ((5,), (5,)),
    ]


def test_deletions_and_insertions():
    x = meanings(7)
    src = x[[0, 1, 2, 3, 4, 5]]  # source 2 has no translation
    tgt = np.stack([x[0], x[1], x[3], x[6], x[4], x[5]])  # target 3 is new
    units = align_sentences(src, tgt, cfg=PLAIN)
    assert pairs(units) == [
        ((0,), (0,)),
        ((1,), (1,)),
        ((2,), ()),
        ((3,), (2,)),
        ((), (3,)),
        ((4,), (4,)),
        ((5,), (5,)),
    ]
    assert [u.score for u in units if not (u.src and u.tgt)] == [0.0, 0.0]


def test_empty_side():
    x = meanings(3)
    empty = np.zeros((0, H))
    assert pairs(align_sentences(x, empty)) == [((0,), ()), ((1,), ()), ((2,), ())]
    assert pairs(align_sentences(empty, x)) == [((), (0,)), ((), (1,)), ((), (2,))]
    assert align_sentences(empty, empty) == []


def test_lengths_break_a_tie():
    """Two targets equally similar to a source: the one of matching length wins."""
    x = meanings(4)
    src, tgt = x, x[[0, 1, 1, 2, 3]]
    cfg = SentenceAlignConfig(margin=False, skip=-0.02)
    units = align_sentences(src, tgt, [100] * 4, [100, 100, 10, 100, 100], cfg=cfg)
    assert pairs(units)[1:3] == [((1,), (1,)), ((), (2,))]
    units = align_sentences(src, tgt, [100] * 4, [100, 10, 100, 100, 100], cfg=cfg)
    assert pairs(units)[1:3] == [((), (1,)), ((1,), (2,))]


def test_caller_blocks_are_used():
    """Joined-text embeddings replace the summed ones when given."""
    x = meanings(4)
    src, tgt = x[[0, 1, 2]], x[[0, 3]]  # target 1 means source 1-2 only read jointly
    blocks = block_vectors(src, 3)
    blocks[2] = blocks[2].copy()
    blocks[2][2] = x[3]  # the joined text of source 1-2 means x[3]
    units = align_sentences(
        src,
        tgt,
        cfg=SentenceAlignConfig(max_unit=4, margin=False, length_weight=0.0),
        src_blocks=blocks,
        tgt_blocks=block_vectors(tgt, 3),
    )
    assert pairs(units) == [((0,), (0,)), ((1, 2), (1,))]
    with pytest.raises(ValueError, match="blocks of 1..4"):
        align_sentences(src, tgt, src_blocks={1: src})


def test_coarse_to_fine_matches_exact_search():
    """A long document searched in a band finds what the whole table finds."""
    rng = np.random.default_rng(3)
    n = 400
    x = rng.normal(size=(n, H))
    keep = np.ones(n, bool)
    keep[rng.choice(n, 20, replace=False)] = False
    src = x + 0.4 * rng.normal(size=x.shape)
    tgt = (x + 0.4 * rng.normal(size=x.shape))[keep]
    lens = rng.integers(20, 200, size=n).astype(float)
    exact = align_sentences(src, tgt, lens, lens[keep], SentenceAlignConfig(exact_cells=10**7))
    banded = align_sentences(src, tgt, lens, lens[keep], SentenceAlignConfig(exact_cells=400))
    assert covers_each_once(banded, n, int(keep.sum()))
    assert pairs(banded) == pairs(exact)


def test_path_band_holds_the_path_and_stays_narrow():
    from relbridge.alignment.sentence_align import Unit

    coarse = [Unit((i,), (i,)) for i in range(50)]
    band = path_band(coarse, 100, 100, 2, window=3)
    assert band.lo[0] == 0 and band.hi[100] == 100
    assert all(band.lo[i] <= i <= band.hi[i] for i in range(101))
    assert band.cells < 101 * 16  # rows of about 4 x window + 2 cells, not 101
    assert Band.full(3, 4).cells == 4 * 5


def test_config_checks():
    with pytest.raises(ValueError):
        SentenceAlignConfig(max_unit=1)
    with pytest.raises(ValueError):
        SentenceAlignConfig(skip=0.5)
    assert SentenceAlignConfig(max_unit=3).unit_types() == [(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)]


# --------------------------------------------------------------------------- scoring


def test_parse_and_format_round_trip():
    assert parse_unit("[0, 1]:[2]:0.5") == ((0, 1), (2,), 0.5)
    assert parse_unit("[]:[3]") == ((), (3,), None)
    assert format_unit((0, 1), (2,), 0.5) == "[0, 1]:[2]:0.5000"
    with pytest.raises(InputError, match="f.txt:7"):
        parse_unit("[0, x]:[1]", "f.txt", 7)
    with pytest.raises(InputError):
        parse_unit("[0]", "f.txt", 1)


def test_read_alignment(tmp_path):
    path = tmp_path / "a.defr"
    path.write_text("[0]:[0]\n\n[1, 2]:[]:0.0\n")
    assert read_alignment(str(path)) == [((0,), (0,)), ((1, 2), ())]


def test_scores_as_vecalign_defines_them():
    gold = [((0,), (0,)), ((1,), (1, 2)), ((2,), ()), ((3,), (3,))]
    assert score_alignments([gold], [gold])["f1_strict"] == 1.0
    # 1-2 split into 1-1 + 0-1; source 2 wrongly aligned to target 3, source 3 deleted
    test = [((0,), (0,)), ((1,), (1,)), ((), (2,)), ((2,), (3,)), ((3,), ())]
    got = score_alignments([gold], [test])
    # precision: 5 test units, 1 exact; lax: (1)-(1) overlaps gold, the rest do not
    assert got["precision_strict"] == pytest.approx(1 / 5)
    assert got["precision_lax"] == pytest.approx(2 / 5)
    # recall over gold units with both sides (3): (0)-(0) exact; (1)-(1,2) overlaps (1)-(1)
    assert got["recall_strict"] == pytest.approx(1 / 3)
    assert got["recall_lax"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        score_alignments([gold], [])
