"""What raw-text extraction reads beside a model: its calibrated thresholds and confidence.

`relbridge.models.raw_text.calibrate` chooses, on a dev file, the tagger's span
threshold, the relation threshold and what a record's confidence is
(`CONFIDENCES`), and saves them as ``threshold.json`` beside the model.
Extraction (`relbridge.models.extract`), ``kg build`` and ``relbridge triples``
read them back here, so that every command decodes and filters a model's raw-text
output as it was calibrated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from relbridge.models.tagging import Tagged
from relbridge.runtime.loading import read_json_object

THRESHOLD_FILE = "threshold.json"
"""Beside a model: the relation and span thresholds for untagged text, and what they were chosen on."""


def calibration(model_dir: str) -> dict[str, Any]:
    """What `relbridge.models.raw_text.calibrate` saved beside a model ({} if nothing).

    Raises:
      ValueError: ``PATH: reason`` for a damaged file (not a JSON object, or a
        threshold that is no number).
    """
    path = os.path.join(model_dir, THRESHOLD_FILE)
    if not os.path.isfile(path):
        return {}
    saved = read_json_object(path)
    for key in ("threshold", "span_threshold"):
        if not isinstance(saved.get(key), int | float | None) or isinstance(saved.get(key), bool):
            raise ValueError(f"{path}: {key} must be a number or null, not {saved[key]!r}")
    return saved


def calibrated_threshold(model_dir: str) -> float | None:
    """The relation threshold saved beside a model by `relbridge.models.raw_text.calibrate`, if any."""
    threshold = calibration(model_dir).get("threshold")
    return None if threshold is None else float(threshold)


def records_threshold(model_dir: str | None, threshold: float | None = None) -> float:
    """The confidence that a model's raw-text records reach: ``threshold`` if given,
    else the one calibrated beside the model (`calibrated_threshold`); a model with
    neither writes records down to 0 and gets `TriplesConfig`'s 0.5 floor.

    ``kg build``, ``relbridge triples`` and the demo turn no fewer records into
    triples than extraction kept: a fixed 0.5 above a mention-weighted model's
    calibrated 0.1 had dropped every record of the demo's held-out text.
    """
    from relbridge.models.triples import TriplesConfig

    if threshold is None and model_dir is not None:
        threshold = calibrated_threshold(model_dir)
    return TriplesConfig.min_confidence if threshold is None else threshold


CONFIDENCES = ("relation", "relation_x_names", "relation_x_mentions")
"""What an untagged record's ``confidence`` is (``threshold.json``'s ``confidence``).

* ``relation``: the relation probability of the pair (models calibrated before
  mention weighting, and models never calibrated);
* ``relation_x_names``: that probability times the geometric mean of the two
  arguments' probabilities of being one name (`span_probabilities`): the
  tagger's posterior of each span being exactly one mention, a KB alias's
  included, so that a pair of doubtful names ranks below a pair of sure ones,
  and an alias that the tagger does not read as a name (a common word that is
  also a KB alias) ranks low. A pair whose mentions alone keep it below the
  threshold is never scored (`mention_factor`). On KBP37 dev (the RELX
  benchmark's model, no KB) it finds more of the true facts at every output
  volume: 14.2% against 11.6% of them at up to one triple per sentence; with
  the Wikidata KB's aliases (600 sentences) calibration's rule scores it 39.0,
  the plain probability 35.4 and ``relation_x_mentions`` 29.7;
* ``relation_x_mentions``: the same with every KB alias counted as a sure name
  (1), as calibrated before ``relation_x_names``; kept so that such a model
  still means what it was calibrated for.

`relbridge.models.raw_text.calibrate` chooses among `CALIBRATED`."""

CALIBRATED = CONFIDENCES[:2]
"""The confidences that calibration chooses from."""

READINGS = ("decoded", "lattice")
"""Which of the tagger's spans raw-text extraction pairs (``threshold.json``'s ``readings``).

* ``decoded``: the mentions span decoding keeps, none overlapping
  (`relbridge.models.tagging.decode_spans`);
* ``lattice``: besides those, every other span whose probability of being one
  name reaches the span threshold (`relbridge.models.tagging.other_readings`):
  ``North Carolina`` beside the decoded ``North`` and ``Carolina``. Pairs never
  overlap, and the relation head decides which reading holds a relation, which a
  model trained with boundary negatives (`relbridge.models.negatives`) has
  learnt to do. Calibration offers both and keeps the better.
"""


def span_probabilities(
    tagged: Tagged, kb_mentions: Sequence[tuple], confidence: str
) -> dict[tuple[int, int], float]:
    """Each mention's probability of being one name, by word span, for `mention_factor`.

    A tagged mention has its span posterior; a KB mention ``(start, end, ...)``
    the tagger's posterior of the same words being one name (`Tagged.names`),
    or 1 under the ``relation_x_mentions`` confidence.
    """
    probability = {(start, end): p for start, end, _, p in tagged.mentions}
    sure = confidence == "relation_x_mentions"
    for start, end, *_ in kb_mentions:
        probability[start, end] = 1.0 if sure else tagged.names.get((start, end), 0.0)
    return probability


def calibrated_decoding(saved: dict[str, Any]) -> tuple[float | None, str, str]:
    """The span threshold (None: marginal decoding), the confidence and the readings of a
    `calibration`.

    A file written before the confidence (or the readings) were calibrated means
    ``"relation"`` (``"decoded"``).
    """
    span_threshold = saved.get("span_threshold")
    span_threshold = None if span_threshold is None else float(span_threshold)
    confidence = saved.get("confidence", CONFIDENCES[0])
    return span_threshold, confidence, saved.get("readings", READINGS[0])


def mention_factor(p1: float, p2: float) -> float:
    """The geometric mean of two mentions' probabilities of being one name (`CONFIDENCES`)."""
    return float(np.sqrt(max(p1, 0.0) * max(p2, 0.0)))
