"""Precision, recall and F1 from counts: the one definition every score uses.

Projection scoring (`relbridge.projection.projection_eval`), mention tagging
(`relbridge.models.tagging`) and relation scoring (`relbridge.models.evaluate`)
all count hits, predictions and gold items and derive the same three numbers.

    >>> prf(3, 4, 6)
    (0.75, 0.5, 0.6)
    >>> prf(3, 4, 6, scale=100)
    (75.0, 50.0, 60.0)
    >>> prf(0, 0, 5)
    (0.0, 0.0, 0.0)
"""

from __future__ import annotations


def prf(right: int, predicted: int, gold: int, scale: float = 1.0) -> tuple[float, float, float]:
    """``(precision, recall, f1)`` from counts, each times ``scale`` (0 where undefined).

    ``right / predicted`` is the precision, ``right / gold`` the recall; F1 is
    their harmonic mean. ``scale=100`` gives percentages.
    """
    p = scale * right / predicted if predicted else 0.0
    r = scale * right / gold if gold else 0.0
    return p, r, f1(p, r)


def f1(p: float, r: float) -> float:
    """The harmonic mean of a precision and a recall (0 when both are 0)."""
    return 2 * p * r / (p + r) if p + r else 0.0
