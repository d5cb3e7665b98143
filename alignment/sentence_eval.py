"""Vecalign's alignment-file format and its strict/lax precision, recall and F1.

One unit per line, 0-based sentence indices, an optional score after a second
colon (what `relbridge align-sentences` writes)::

    [0]:[0]:0.8123
    [1, 2]:[1]:0.7410
    []:[2]:0.0000

Scores follow vecalign's ``score.py`` (Thompson & Koehn 2019, after Véronis &
Langlais 2000), reimplemented: precision counts every test unit that is
non-empty, strict when it equals a gold unit and lax when it shares a source
sentence with a gold unit whose target side overlaps its own; recall is the same
count with gold and test swapped and 1-0 / 0-1 units left out of both. Counts
are summed over documents before dividing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

from relbridge.data_specs.formats import InputError, open_lines

Alignment = list[tuple[tuple[int, ...], tuple[int, ...]]]


def _indices(text: str, path: str, line: int) -> tuple[int, ...]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        values = None
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise InputError(
            path, line, f"expected a list of sentence indices like [0, 1], got {text!r}"
        )
    return tuple(values)


def parse_unit(text: str, path: str = "<alignment>", line: int = 0):
    """``"[0, 1]:[2]"`` (optionally ``":score"``) -> ``((0, 1), (2,), score or None)``."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3):
        raise InputError(path, line, f"expected [src]:[tgt] or [src]:[tgt]:score, got {text!r}")
    score = None
    if len(parts) == 3:
        try:
            score = float(parts[2])
        except ValueError:
            raise InputError(path, line, f"score {parts[2]!r} is not a number") from None
    return _indices(parts[0], path, line), _indices(parts[1], path, line), score


def read_numbered_alignment(path: str) -> list[tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """``(line, src, tgt)`` of each unit of an alignment file (blank lines skipped).

    Read with `open_lines`: a byte-order mark is dropped, and a line that is not
    UTF-8 raises an `InputError` naming ``path:line``.
    """
    units = []
    with open_lines(path) as lines:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                src, tgt, _ = parse_unit(text, path, number)
                units.append((number, src, tgt))
    return units


def read_alignment(path: str) -> Alignment:
    """The units of an alignment file (blank lines skipped)."""
    return [(src, tgt) for _, src, tgt in read_numbered_alignment(path)]


def format_unit(src: Sequence[int], tgt: Sequence[int], score: float | None = None) -> str:
    """One line of the format (no newline)."""
    text = f"{list(src)}:{list(tgt)}"
    return text if score is None else f"{text}:{score:.4f}"


def _counts(gold: Iterable, test: Iterable) -> tuple[int, int, int, int]:
    """``(strict tp, strict fp, lax tp, lax fp)`` of ``test`` against ``gold``."""
    test = {(tuple(s), tuple(t)) for s, t in test if s or t}
    gold = {(tuple(s), tuple(t)) for s, t in gold if s or t}
    gold_targets = defaultdict(set)  # source sentence -> target sentences it is aligned with
    for src, tgt in gold:
        for s in src:
            gold_targets[s].update(tgt)
    tp_strict = fp_strict = tp_lax = fp_lax = 0
    for src, tgt in test:
        if (src, tgt) in gold:
            tp_strict += 1
            tp_lax += 1
            continue
        fp_strict += 1
        linked = set().union(*(gold_targets[s] for s in src)) if src else set()
        if linked & set(tgt):
            tp_lax += 1
        else:
            fp_lax += 1
    return tp_strict, fp_strict, tp_lax, fp_lax


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def _both_sides(units: Alignment) -> Alignment:
    return [(s, t) for s, t in units if s and t]


def score_alignments(golds: Sequence[Alignment], tests: Sequence[Alignment]) -> dict[str, float]:
    """Strict and lax precision, recall and F1 over all documents (vecalign's ``score.py``).

    Args:
      golds: per document, the gold units ``(src indices, tgt indices)``.
      tests: per document, the predicted units, in the same order.
    """
    if len(golds) != len(tests):
        raise ValueError(f"{len(golds)} gold documents but {len(tests)} aligned ones")
    p = [0, 0, 0, 0]
    r = [0, 0, 0, 0]
    for gold, test in zip(golds, tests):
        p = [x + y for x, y in zip(p, _counts(gold, test))]
        r = [x + y for x, y in zip(r, _counts(_both_sides(test), _both_sides(gold)))]
    out = {
        "precision_strict": _ratio(p[0], p[0] + p[1]),
        "recall_strict": _ratio(r[0], r[0] + r[1]),
        "precision_lax": _ratio(p[2], p[2] + p[3]),
        "recall_lax": _ratio(r[2], r[2] + r[3]),
    }
    out["f1_strict"] = _f1(out["precision_strict"], out["recall_strict"])
    out["f1_lax"] = _f1(out["precision_lax"], out["recall_lax"])
    return out
