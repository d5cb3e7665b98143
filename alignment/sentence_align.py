"""Sentence alignment of two documents by dynamic programming over sentence embeddings.

Given one vector per sentence on each side (any multilingual sentence encoder;
`alignment.sentence_embed` gives the bundled e5's), `align_sentences` returns the
monotone sequence of alignment units (beads) that covers every sentence once:
1-1, 1-n, n-1 and n-m units up to ``max_unit`` sentences, and 1-0 / 0-1 units for
a sentence with no counterpart. The method follows Vecalign (Thompson & Koehn,
2019) and Bertalign (Liu & Zhu, 2022); the code is our own:

* **Unit score.** A unit of ``a`` source and ``b`` target sentences scores the
  cosine of its two block vectors (the normalised sum of the sentence vectors,
  or an embedding of the joined text when the caller passes ``*_blocks``), minus
  a margin (the block's mean similarity to the sentences just outside the other
  side's block, Bertalign's "modified cosine": a unit only scores well when its
  match beats its neighbours'), times a length agreement
  ``log2(1 + short / long)`` over character lengths scaled by the documents'
  length ratio (1 for equal lengths, 0.58 at 2:1). A unit of more than two
  sentences pays ``merge_penalty`` per extra sentence, so two good 1-1 units beat
  one 2-2 unit. A sentence left out (1-0, 0-1) scores ``skip``. The DP
  maximises the sum.
* **Linear time and memory (coarse-to-fine).** Below ``exact_cells`` DP cells the
  whole ``(n + 1) x (m + 1)`` table is searched. Above, both documents are
  halved (each two consecutive sentence vectors averaged, lengths summed), the
  half-size pair is aligned recursively, and the full-size search is confined to
  the cells the coarse path passes through, widened by ``window`` on each side.
  Each level costs O((n + m) * window * unit types), and the levels halve, so
  the whole search is linear in document length; the table is stored row by row,
  only over the band (`Band`).

    units = align_sentences(src_vecs, tgt_vecs, src_lens, tgt_lens, SentenceAlignConfig())
    units[0]  # Unit(src=(0,), tgt=(0,), score=0.41)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


CENTER_MIN = 8
"""Fewest sentences whose mean is trusted as the document's centre."""


@dataclass(frozen=True)
class SentenceAlignConfig:
    """Settings of the sentence aligner (defaults tuned on Text+Berg dev, de-fr).

    Attributes:
      max_unit: most sentences in one unit, both sides together (4 allows 1-3,
        2-2, 3-1; 5 also 1-4, 2-3). Range 3-6; higher costs time linearly.
      skip: score of a sentence left unaligned (1-0 or 0-1), below 0; closer to
        0 leaves more sentences out. Range -0.3 to 0.
      merge_penalty: subtracted per sentence beyond two in a unit. Range 0-0.1.
      threshold: subtracted from every 1-1 ... n-m unit's score in the DP (not
        from the score reported), so that a weak match loses to leaving its
        sentences out. Range 0-0.2.
      center: subtract each document's mean sentence vector before comparing
        (documents of ``CENTER_MIN`` sentences or more). Encoders such as e5
        put all sentences in a narrow cone (unrelated pairs have cosines near
        0.8); centring spreads them out and removes each language's offset.
      margin: subtract the block's similarity to its neighbours (see module doc).
      length_weight: exponent of the length agreement; 0 ignores lengths.
      window: cells kept on each side of the coarse path at each finer level.
        Range 4-32; wider is slower but recovers from coarse mistakes.
      exact_cells: DP tables up to this size are searched whole, larger ones
        coarse-to-fine.
    """

    max_unit: int = 5
    skip: float = -0.1
    merge_penalty: float = 0.0
    threshold: float = 0.1
    margin: bool = False
    center: bool = True
    length_weight: float = 2.0
    window: int = 8
    exact_cells: int = 40_000

    def __post_init__(self):
        if self.max_unit < 2:
            raise ValueError(f"max_unit must be >= 2 (1-1 units), got {self.max_unit}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.exact_cells < 4:
            raise ValueError(f"exact_cells must be >= 4, got {self.exact_cells}")
        if self.skip > 0:
            raise ValueError(
                f"skip must be <= 0 (leaving a sentence out never gains), got {self.skip}"
            )

    @property
    def max_side(self) -> int:
        """Most sentences on one side of a unit."""
        return self.max_unit - 1

    def unit_types(self) -> list[tuple[int, int]]:
        """``(a, b)`` sentence counts of every unit: 0-1, 1-0, then a, b >= 1 with a + b <= max_unit."""
        pairs = [(a, b) for a in range(1, self.max_unit) for b in range(1, self.max_unit)]
        return [(0, 1), (1, 0), *sorted((p for p in pairs if sum(p) <= self.max_unit), key=sum)]


@dataclass(frozen=True)
class Unit:
    """One alignment unit: 0-based sentence indices on each side and its score.

    ``score`` is the unit's DP score (similarity x length agreement, see the
    module doc), 0.0 for a 1-0 or 0-1 unit.
    """

    src: tuple[int, ...]
    tgt: tuple[int, ...]
    score: float = 0.0


@dataclass(frozen=True)
class Band:
    """The DP cells searched: row ``i`` (source prefix length) spans target prefixes ``[lo[i], hi[i]]``.

    Stored flat (``offset[i]`` is where row ``i`` starts), so memory is the band's
    size, never ``(n + 1) x (m + 1)`` unless the band is the whole table.
    """

    lo: np.ndarray  # (n + 1,) int64
    hi: np.ndarray  # (n + 1,) int64, inclusive
    offset: np.ndarray  # (n + 2,) int64

    @classmethod
    def from_bounds(cls, lo: np.ndarray, hi: np.ndarray) -> Band:
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        offset = np.concatenate([[0], np.cumsum(hi - lo + 1)])
        return cls(lo, hi, offset)

    @classmethod
    def full(cls, n: int, m: int) -> Band:
        return cls.from_bounds(np.zeros(n + 1, np.int64), np.full(n + 1, m, np.int64))

    @property
    def cells(self) -> int:
        return int(self.offset[-1])


# ---------------------------------------------------------------------------- vectors


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def block_vectors(vectors: np.ndarray, max_size: int) -> dict[int, np.ndarray]:
    """Normalised sums of ``k`` consecutive sentence vectors, for ``k = 1..max_size``.

    Returns:
      ``{k: (n, H)}``: row ``e`` is the block of sentences ``e - k + 1 .. e``
      (zeros where ``e < k - 1``).
    """
    vectors = normalize(vectors)
    n = len(vectors)
    prefix = np.concatenate([np.zeros((1, vectors.shape[1]), np.float64), np.cumsum(vectors, 0)])
    out = {}
    for k in range(1, max_size + 1):
        sums = np.zeros_like(vectors)
        if n >= k:
            sums[k - 1 :] = prefix[k:] - prefix[:-k]
        out[k] = normalize(sums)
    return out


def block_lengths(lengths: Sequence[float], max_size: int) -> dict[int, np.ndarray]:
    """``{k: (n,)}`` summed lengths of the blocks of `block_vectors` (0 where undefined)."""
    lengths = np.asarray(lengths, np.float64)
    prefix = np.concatenate([[0.0], np.cumsum(lengths)])
    out = {}
    for k in range(1, max_size + 1):
        sums = np.zeros(len(lengths))
        if len(lengths) >= k:
            sums[k - 1 :] = prefix[k:] - prefix[:-k]
        out[k] = sums
    return out


def halve(vectors: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Averages each two consecutive vectors and sums their lengths (an odd last one stays alone)."""
    n = len(vectors)
    pairs = n // 2
    coarse_v = vectors[: 2 * pairs].reshape(pairs, 2, -1).sum(1)
    coarse_l = lengths[: 2 * pairs].reshape(pairs, 2).sum(1)
    if n % 2:
        coarse_v = np.concatenate([coarse_v, vectors[-1:]])
        coarse_l = np.concatenate([coarse_l, lengths[-1:]])
    return normalize(coarse_v), coarse_l


# ---------------------------------------------------------------------------- DP


@dataclass(frozen=True)
class _Side:
    """One document's block vectors and lengths, as the DP reads them."""

    blocks: Mapping[int, np.ndarray]  # k -> (n, H)
    lengths: Mapping[int, np.ndarray]  # k -> (n,)
    singles: np.ndarray  # (n, H) normalised sentence vectors, for the margin

    @property
    def n(self) -> int:
        return len(self.singles)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("kh,kh->k", a, b)


def _near(vecs: np.ndarray, side: _Side, end: np.ndarray, size: int) -> np.ndarray:
    """Mean similarity of ``vecs[k]`` to the sentences just before and after block ``k``.

    Args:
      vecs: ``(K, H)`` blocks of the other side.
      side: the document whose blocks end at ``end``.
      end: ``(K,)`` 0-based last sentence of each block.
      size: sentences per block.
    """
    total = np.zeros(len(end), np.float32)
    count = np.zeros(len(end), np.float32)
    for idx in (end - size, end + 1):
        ok = (idx >= 0) & (idx < side.n)
        total[ok] += _rowdot(vecs[ok], side.singles[idx[ok]])
        count[ok] += 1
    return total / np.maximum(count, 1)


def unit_scores(
    src: _Side,
    tgt: _Side,
    ends: tuple[np.ndarray, np.ndarray],
    a: int,
    b: int,
    cfg: SentenceAlignConfig,
    ratio: float,
    cosines: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of the units ``src[i - a : i]`` x ``tgt[j - b : j]`` for ``(i, j)`` in ``ends``.

    Args:
      src, tgt: the documents.
      ends: ``(K,)`` source and ``(K,)`` target prefix lengths ``i >= a``, ``j >= b``.
      a, b: sentences of the unit on each side (both >= 1).
      cfg: scoring settings.
      ratio: target characters per source character, over the whole documents.
      cosines: ``(K,)`` the blocks' cosines when the caller has them.

    Returns:
      ``(K,)`` float32 scores.
    """
    i, j = ends
    sims = (
        _rowdot(src.blocks[a][i - 1], tgt.blocks[b][j - 1]) if cosines is None else cosines.copy()
    )
    if cfg.margin:  # each block against the sentences around its match
        x, y = src.blocks[a][i - 1], tgt.blocks[b][j - 1]  # (K, H)
        sims -= (_near(x, tgt, j - 1, b) + _near(y, src, i - 1, a)) / 2
    if cfg.length_weight:
        ls = src.lengths[a][i - 1] * ratio
        lt = tgt.lengths[b][j - 1]
        agree = np.minimum(ls, lt) / np.maximum(np.maximum(ls, lt), 1e-9)
        sims *= (np.log2(1 + agree) ** cfg.length_weight).astype(np.float32)
    return sims


def _unit_table(
    src: _Side, tgt: _Side, band: Band, a: int, b: int, cfg: SentenceAlignConfig, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """For every band cell: the cell a unit of ``a`` x ``b`` sentences comes from, and its score.

    Returns:
      ``(cells,)`` flat predecessor index (``band.cells``, a cell that stays
      -inf, where there is none), ``(cells,)`` float32 DP gains (the score less
      the threshold and merge penalty) and ``(cells,)`` unit scores.
    """
    cells = band.cells
    rows = np.repeat(np.arange(len(band.lo)), band.hi - band.lo + 1)  # (cells,) i
    cols = band.lo[rows] + np.arange(cells) - band.offset[rows]  # (cells,) j
    pi, pj = rows - a, cols - b
    ok = (pi >= 0) & (pj >= 0)
    ok[ok] = (pj[ok] >= band.lo[pi[ok]]) & (pj[ok] <= band.hi[pi[ok]])
    prev = np.full(cells, cells, np.int64)
    prev[ok] = band.offset[pi[ok]] + pj[ok] - band.lo[pi[ok]]
    if b == 0:
        return prev, np.full(cells, cfg.skip, np.float32), np.zeros(cells, np.float32)
    cosines = _band_cosines(src.blocks[a], tgt.blocks[b], band, a, b)
    scores = np.zeros(cells, np.float32)
    where = np.nonzero(ok)[0]
    for start in range(0, len(where), _CHUNK):  # bounded temporaries
        part = where[start : start + _CHUNK]
        ends = (rows[part], cols[part])
        scores[part] = unit_scores(src, tgt, ends, a, b, cfg, ratio, cosines[part])
    cost = cfg.threshold + cfg.merge_penalty * max(0, a + b - 2)
    return prev, scores - np.float32(cost), scores


_CHUNK = 4096


def _band_cosines(
    src_blocks: np.ndarray, tgt_blocks: np.ndarray, band: Band, a: int, b: int
) -> np.ndarray:
    """``(cells,)`` cosine of source block ending at ``i - 1`` and target block ending at ``j - 1``.

    A row's cells are consecutive target blocks, so each row is one
    matrix-vector product over a slice (no gathered copies); 0 where a block
    does not exist (``i < a`` or ``j < b``).
    """
    out = np.zeros(band.cells, np.float32)
    for i in range(a, len(band.lo)):
        lo, hi = int(band.lo[i]), int(band.hi[i])
        first = max(lo, b)
        if first <= hi:
            start = band.offset[i] + first - lo
            out[start : start + hi - first + 1] = tgt_blocks[first - 1 : hi] @ src_blocks[i - 1]
    return out


def banded_dp(src: _Side, tgt: _Side, band: Band, cfg: SentenceAlignConfig) -> list[Unit]:
    """Best-scoring monotone alignment inside ``band``; see the module doc.

    Args:
      src, tgt: the two documents' blocks.
      band: the cells to search; must hold ``(0, 0)`` and ``(n, m)``.
      cfg: scoring settings.

    Returns:
      The units in order, covering every sentence of both sides once.
    """
    n, m = src.n, tgt.n
    if not (band.lo[0] == 0 and band.lo[n] <= m <= band.hi[n]):
        raise ValueError("the band must contain (0, 0) and (n, m)")
    types = cfg.unit_types()
    total_src, total_tgt = float(src.lengths[1].sum()), float(tgt.lengths[1].sum())
    ratio = total_tgt / total_src if total_src > 0 and total_tgt > 0 else 1.0
    tables = {
        t: _unit_table(src, tgt, band, a, b, cfg, ratio) for t, (a, b) in enumerate(types) if a
    }
    score = np.full(band.cells + 1, -np.inf, np.float64)  # the last cell: "no predecessor"
    back = np.full(band.cells, -1, np.int8)  # index into types
    score[0] = 0.0
    insert = types.index((0, 1))
    for i in range(n + 1):
        row = slice(band.offset[i], band.offset[i + 1])
        best = score[row].copy()  # (W,) -inf except at (0, 0)
        arg = back[row].copy()
        for t, (prev, unit, _) in tables.items():
            cand = score[prev[row]] + unit[row]
            better = cand > best
            best[better], arg[better] = cand[better], t
        # 0-1 units chain along the row: best[j] = max over k <= j of best[k] + skip * (j - k)
        steps = np.arange(len(best)) * cfg.skip
        via = np.maximum.accumulate(best - steps) + steps
        with np.errstate(invalid="ignore"):  # -inf - -inf: unreachable either way
            hit = via - best > 1e-9  # only where an earlier cell wins, not by rounding
        best[hit], arg[hit] = via[hit], insert
        score[row], back[row] = best, arg
    gain = {t: scores for t, (_, _, scores) in tables.items()}
    return _backtrack(band, back, gain, types, n, m)


def _backtrack(
    band: Band, back: np.ndarray, gain: dict, types: list[tuple[int, int]], n: int, m: int
) -> list[Unit]:
    units = []
    i, j = n, m
    while i > 0 or j > 0:
        cell = band.offset[i] + j - band.lo[i]
        t = int(back[cell])
        if t < 0:
            raise RuntimeError(f"no path reaches cell ({i}, {j})")
        a, b = types[t]
        score = float(gain[t][cell]) if a and b else 0.0
        units.append(Unit(tuple(range(i - a, i)), tuple(range(j - b, j)), score))
        i, j = i - a, j - b
    return units[::-1]


def path_band(units: Sequence[Unit], n: int, m: int, scale: int, window: int) -> Band:
    """The cells a coarse path visits, scaled up ``scale`` times and widened by ``window``.

    Each coarse unit from state ``(I, J)`` to ``(I2, J2)`` covers the fine
    rectangle ``[scale I, scale I2] x [scale J, scale J2]``.
    """
    lo = np.full(n + 1, m, np.int64)
    hi = np.zeros(n + 1, np.int64)
    i = j = 0
    for unit in units:
        i2, j2 = i + len(unit.src), j + len(unit.tgt)
        r0, r1 = min(scale * i, n), min(scale * i2, n)
        c0, c1 = min(scale * j, m), min(scale * j2, m)
        lo[r0 : r1 + 1] = np.minimum(lo[r0 : r1 + 1], c0)
        hi[r0 : r1 + 1] = np.maximum(hi[r0 : r1 + 1], c1)
        i, j = i2, j2
    # widen along both axes: rows within `window` of a row borrow its columns
    lo = _sliding(lo, window, np.minimum) - window
    hi = _sliding(hi, window, np.maximum) + window
    lo, hi = np.clip(lo, 0, m), np.clip(hi, 0, m)
    lo[0] = 0
    hi[n] = m
    return Band.from_bounds(lo, hi)


def _sliding(values: np.ndarray, window: int, op) -> np.ndarray:
    """``op`` over ``values[i - window : i + window + 1]`` for each ``i`` (O(n * window))."""
    out = values.copy()
    for shift in range(1, window + 1):
        out[shift:] = op(out[shift:], values[:-shift])
        out[:-shift] = op(out[:-shift], values[shift:])
    return out


def _search(
    src_vecs: np.ndarray,
    tgt_vecs: np.ndarray,
    src_lens: np.ndarray,
    tgt_lens: np.ndarray,
    cfg: SentenceAlignConfig,
    src_blocks: Mapping[int, np.ndarray] | None = None,
    tgt_blocks: Mapping[int, np.ndarray] | None = None,
) -> list[Unit]:
    """Coarse-to-fine search (see the module doc); vectors are normalised."""
    n, m = len(src_vecs), len(tgt_vecs)
    k = cfg.max_side
    src = _Side(src_blocks or block_vectors(src_vecs, k), block_lengths(src_lens, k), src_vecs)
    tgt = _Side(tgt_blocks or block_vectors(tgt_vecs, k), block_lengths(tgt_lens, k), tgt_vecs)
    if (n + 1) * (m + 1) <= cfg.exact_cells or min(n, m) < 4:
        band = Band.full(n, m)
    else:
        cs_v, cs_l = halve(src_vecs, src_lens)
        ct_v, ct_l = halve(tgt_vecs, tgt_lens)
        coarse_units = _search(cs_v, ct_v, cs_l, ct_l, cfg)
        band = path_band(coarse_units, n, m, 2, cfg.window)
    return banded_dp(src, tgt, band, cfg)


def align_sentences(
    src_vecs: np.ndarray,
    tgt_vecs: np.ndarray,
    src_lens: Sequence[float] | None = None,
    tgt_lens: Sequence[float] | None = None,
    cfg: SentenceAlignConfig = SentenceAlignConfig(),
    src_blocks: Mapping[int, np.ndarray] | None = None,
    tgt_blocks: Mapping[int, np.ndarray] | None = None,
) -> list[Unit]:
    """Aligns two documents' sentences; see the module doc.

    Args:
      src_vecs: ``(n, H)`` one embedding per source sentence.
      tgt_vecs: ``(m, H)`` one per target sentence.
      src_lens, tgt_lens: sentence lengths in characters (default: all 1, which
        turns the length agreement into a sentence-count agreement).
      cfg: settings.
      src_blocks, tgt_blocks: optional ``{k: (n, H)}`` embeddings of ``k``
        consecutive sentences joined (row ``e`` ends at sentence ``e``), for
        ``k`` up to ``cfg.max_side``; default: `block_vectors`.

    Returns:
      Units in document order; every sentence of each side is in exactly one.
      An empty side gives one 1-0 (or 0-1) unit per sentence of the other.
    """
    n, m = len(src_vecs), len(tgt_vecs)
    if n == 0 or m == 0:
        return [Unit((i,), ()) for i in range(n)] + [Unit((), (j,)) for j in range(m)]
    src_lens = np.ones(n) if src_lens is None else np.asarray(src_lens, np.float64)
    tgt_lens = np.ones(m) if tgt_lens is None else np.asarray(tgt_lens, np.float64)
    if len(src_lens) != n or len(tgt_lens) != m:
        raise ValueError("one length per sentence is needed on each side")
    for name, blocks in (("src_blocks", src_blocks), ("tgt_blocks", tgt_blocks)):
        if blocks is not None and any(k not in blocks for k in range(1, cfg.max_side + 1)):
            raise ValueError(f"{name} needs blocks of 1..{cfg.max_side} sentences")
    src_vecs, src_blocks = _prepared(src_vecs, src_blocks, cfg)
    tgt_vecs, tgt_blocks = _prepared(tgt_vecs, tgt_blocks, cfg)
    return _search(src_vecs, tgt_vecs, src_lens, tgt_lens, cfg, src_blocks, tgt_blocks)


def _prepared(
    vectors: np.ndarray, blocks: Mapping[int, np.ndarray] | None, cfg: SentenceAlignConfig
) -> tuple[np.ndarray, dict[int, np.ndarray] | None]:
    """Normalised (and, with ``cfg.center``, centred) sentence and block vectors."""
    vectors = normalize(vectors)
    if cfg.center and len(vectors) >= CENTER_MIN:
        mean = vectors.mean(0)
        vectors = normalize(vectors - mean)
        if blocks:
            blocks = {k: normalize(v) - mean for k, v in blocks.items()}
    return vectors, {k: normalize(v) for k, v in blocks.items()} if blocks else None
