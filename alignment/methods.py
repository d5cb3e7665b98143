"""Link extraction methods: a similarity matrix in, a 0/1 link matrix out.

Each method maps one sentence pair's ``(m, n)`` matrices (rows = source
units, columns = target units; units are words or subwords) to a boolean
``(m, n)`` matrix of links. Methods are registered under versioned names and
have short aliases for configs and the command line:

| alias | registered name | what it does |
|---|---|---|
| ``argmax`` | ``simalign.argmax.v1`` | mutual argmax of the cosine matrix (simalign "inter") |
| ``itermax`` | ``simalign.itermax.v1`` | simalign's iterative mutual argmax (``iter_max``) |
| ``match`` | ``simalign.match.v1`` | maximum-weight bipartite matching (simalign "mwmf") |
| ``softmax`` | ``awesome.softmax.v1`` | awesome-align's bidirectional softmax with a threshold |

The simalign methods compute what simalign's numpy helpers compute (tests pin
them to ``SentenceAligner.get_alignment_matrix``, ``iter_max`` and
``apply_distortion``), without importing simalign, whose module loads
transformers' model code, networkx and scikit-learn: 2 s in every aligner
process. ``match`` replaces
simalign's networkx ``max_weight_matching`` (minutes on long sentences) with
``scipy.optimize.linear_sum_assignment``, which finds the same matching: on a
complete bipartite graph with positive weights a maximum-cardinality matching
has ``min(m, n)`` edges, and among those both pick the heaviest (they may
differ only on exact ties).

    links = METHODS.get(resolve_method("itermax"))(scores, MethodParams())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object; registering a name twice raises ``ValueError``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered: {sorted(self._items)}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)


@dataclass(frozen=True)
class PairScores:
    """One pair's score matrices, both ``(m, n)`` float32.

    Attributes:
      sim: cosine similarity mapped to [0, 1], ``(cos + 1) / 2`` as in simalign,
        after optional distortion.
      dot: raw dot products of the (unnormalised) vectors, for softmax methods.
    """

    sim: np.ndarray
    dot: np.ndarray


@dataclass(frozen=True)
class MethodParams:
    """Settings of the extraction methods (copied from `AlignConfig`).

    Attributes:
      itermax_iterations: simalign's ``max_count`` (2 in the SimAlign paper; 1 = argmax).
      softmax_threshold: awesome-align's threshold on both softmax directions
        (awesome-align uses 1e-3; useful range 1e-4 to 0.5).
      softmax_temperature: divides the dot products before the softmax (1 = awesome-align).
    """

    itermax_iterations: int = 2
    softmax_threshold: float = 1e-3
    softmax_temperature: float = 1.0


Method = Callable[[PairScores, MethodParams], np.ndarray]
METHODS: Registry[Method] = Registry("extraction method")
ALIASES = {
    "argmax": "simalign.argmax.v1",
    "itermax": "simalign.itermax.v1",
    "match": "simalign.match.v1",
    "softmax": "awesome.softmax.v1",
}
# simalign's "mai" (its default): all three simalign methods at once.
MAI = ("argmax", "itermax", "match")


def resolve_method(name: str) -> str:
    """Returns the registered name of an alias or registered name; raises ``ValueError``."""
    full = ALIASES.get(name, name)
    METHODS.get(full)
    return full


def best_of_rows_and_columns(sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0/1 ``(m, n)`` matrices: each row's best column, and each column's best row."""
    m, n = sim.shape
    rows, cols = np.zeros((m, n)), np.zeros((m, n))
    rows[np.arange(m), sim.argmax(axis=1)] = 1.0
    cols[sim.argmax(axis=0), np.arange(n)] = 1.0
    return rows, cols


@METHODS.register("simalign.argmax.v1")
def argmax_links(scores: PairScores, params: MethodParams) -> np.ndarray:
    """Links where the source unit's best target and the target's best source agree."""
    fwd, rev = best_of_rows_and_columns(scores.sim)  # (m, n) each
    return (fwd * rev) > 0


@METHODS.register("simalign.itermax.v1")
def itermax_links(scores: PairScores, params: MethodParams) -> np.ndarray:
    """simalign's itermax: repeat argmax over still-unaligned units."""
    return iter_max(scores.sim, params.itermax_iterations) > 0


def iter_max(sim: np.ndarray, rounds: int = 2, damping: float = 0.9) -> np.ndarray:
    """simalign's iterative mutual argmax: ``(m, n)`` 0/1 links.

    Round 1 keeps the mutual best links. Each later round looks again only at
    cells whose row or column has no link yet, their similarity scaled by
    ``damping`` where one of the two is linked (1 where neither is), and adds
    the mutual best links among them; it stops after ``rounds`` rounds, when
    a round adds nothing, or when every row or every column is linked. Pairs
    with a side of at most 2 units keep round 1.
    """
    rows, cols = best_of_rows_and_columns(sim)
    links = rows * cols  # (m, n)
    if min(sim.shape) <= 2:
        return links
    for _ in range(rounds - 1):
        free_row = 1.0 - links.sum(axis=1, keepdims=True).clip(0.0, 1.0)  # (m, 1)
        free_col = 1.0 - links.sum(axis=0, keepdims=True).clip(0.0, 1.0)  # (1, n)
        if free_row.sum() < 1.0 or free_col.sum() < 1.0:
            break  # a side is fully linked: nothing can be added
        weight = (damping * free_row + damping * free_col).clip(0.0, 1.0)  # (m, n)
        open_cell = 1.0 - (1.0 - free_row) * (1.0 - free_col)  # row or column free
        rows, cols = best_of_rows_and_columns(sim * weight)
        added = rows * cols * open_cell
        if not added.any():
            break
        links = links + added
    return links


@METHODS.register("simalign.match.v1")
def match_links(scores: PairScores, params: MethodParams) -> np.ndarray:
    """Maximum-weight matching of ``min(m, n)`` links (simalign's "mwmf")."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(scores.sim, maximize=True)
    out = np.zeros(scores.sim.shape, dtype=bool)
    out[rows, cols] = True
    return out


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


@METHODS.register("awesome.softmax.v1")
def softmax_links(scores: PairScores, params: MethodParams) -> np.ndarray:
    """awesome-align's extraction: softmax each direction, keep links above threshold in both."""
    logits = scores.dot.astype(np.float64) / params.softmax_temperature  # (m, n)
    fwd = _softmax(logits, axis=1)  # each source unit's distribution over targets
    rev = _softmax(logits, axis=0)  # each target unit's distribution over sources
    return (fwd > params.softmax_threshold) & (rev > params.softmax_threshold)


def apply_distortion(sim: np.ndarray, ratio: float) -> np.ndarray:
    """simalign's distortion: penalise links far from the diagonal (0 = off)."""
    m, n = sim.shape
    if ratio == 0.0 or m < 2 or n < 2:
        return sim
    offset = np.arange(n)[None, :] / (n - 1) - np.arange(m)[:, None] / (m - 1)  # (m, n)
    return (sim * (1.0 - offset**2 * ratio)).astype(sim.dtype)
