"""End-to-end scores on raw text: the system finds the entities itself, then relates them.

The marked-entity RELX metric tells how well a model classifies a pair it is
given. A knowledge-graph user gives raw text, so here the markers of each
RELX/KBP37 sentence are removed, the tagging head (and a KB's aliases, when a
mention finder is given) find the mentions, every pair of them is classified
(`relbridge.models.extract`), and the output is scored against the sentence's
one annotated pair:

* ``relx_f1``: the RELX metric (`relbridge.models.evaluate.relx_f1`) where the
  prediction for a sentence's gold pair is the system's own most confident
  record between exactly those two spans (either direction), and
  ``no_relation`` when it found either argument not exactly or output nothing
  for the pair. Directly comparable to the marked-entity metric on the same file.
* ``mention_recall``: gold argument spans found exactly, over all arguments
  (with ``lattice`` readings, among all the readings paired).
* ``pair_recall``: sentences whose two arguments were both found exactly.
* ``triple_recall``: gold facts (non-NA) output with both spans, relation and
  direction right.
* ``precision_lower_bound``: records that are a gold fact over all records. RELX
  annotates one pair per sentence, so a true fact about another pair counts as
  wrong: a lower bound.
* ``triples_per_sentence`` beside ``gold_facts_per_sentence``, and with a KB
  mention finder ``linked_share``: output arguments that are a KB alias match
  (so the linker can give them a KB id), over all output arguments.

Spans compare as character spans of the clean text; a gold span is first
trimmed to the words it covers, as the marked evaluation does.

`calibrate` chooses the tagger's span threshold, the relation threshold and
what that threshold applies to (the relation probability, or that weighted by
the mentions' span probabilities: `relbridge.models.thresholds.CALIBRATED`) and
which spans are paired (`relbridge.models.thresholds.READINGS`) for
raw text on a dev file (KBP37 dev, never RELX): the choice with the best raw-text
``relx_f1`` less `TRIPLE_COST` points per triple per sentence beyond the true
facts, so that the output stays near the facts in number, not near the
candidate pairs. They are saved beside the model
(`THRESHOLD_FILE`), and `extract` (through `relbridge.models.extract.load_model`)
uses them by default.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from relbridge.data_specs.relations import NA
from relbridge.data_specs.relx import read_relx, words_with_spans
from relbridge.data_specs.schema import token_offsets
from relbridge.models.evaluate import NO_RELATION, relx_f1
from relbridge.models.extract import MentionFinder, extract_with_mentions
from relbridge.models.tagging import SPAN_THRESHOLDS
from relbridge.models.thresholds import (
    CALIBRATED, CONFIDENCES, READINGS, THRESHOLD_FILE, mention_factor, span_probabilities,
)  # fmt: skip

logger = logging.getLogger(__name__)

CharSpan = tuple[int, int]

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(0, 20))
"""The thresholds `calibrate` tries: 0 to 0.95."""

TRIPLE_COST = 2.0
"""Points of raw-text relx_f1 that one more triple per sentence (beyond the true facts) must buy.

On KBP37 dev with the RELX benchmark's model, the best relx_f1 (51.3, span threshold
0.1, relation threshold 0.35) came with 10.5 triples per sentence against 0.88
facts; at a cost of 2 the choice is 47.1 with 5.8 triples (0.1, 0.75), as many as
the earlier rule gave at 39.8, and at 3 it is 43.8 with 4.4 (0.2, 0.75)."""


@dataclass(frozen=True)
class GoldSentence:
    """A RELX/KBP37 sentence without markers: its two argument spans and its directed label."""

    id: str
    text: str
    e1: CharSpan
    e2: CharSpan
    label: str  # "rel(e1,e2)", "rel(e2,e1)" or "no_relation"

    @property
    def fact(self) -> tuple[CharSpan, str, CharSpan] | None:
        """``(subject span, relation, object span)``; None for ``no_relation``."""
        if self.label == NO_RELATION:
            return None
        relation, direction = self.label[: -len("(e1,e2)")], self.label[-len("(e1,e2)") :]
        return (self.e1, relation, self.e2) if direction == "(e1,e2)" else (self.e2, relation, self.e1)


def _trimmed(text: str, spans: Sequence[CharSpan]) -> list[CharSpan]:
    """Each character span trimmed to the words it covers; (-1, -1) when it covers none."""
    words, word_spans = words_with_spans(text, spans)
    offsets = token_offsets(text, words)
    return [
        (offsets[s][0], offsets[e - 1][1]) if s >= 0 else (-1, -1) for s, e in word_spans
    ]


def gold_sentences(path: str, ids: Iterable[str] | None = None) -> list[GoldSentence]:
    """The sentences of a KBP37/RELX file, markers removed (optionally only ``ids``)."""
    keep = None if ids is None else {str(i) for i in ids}
    out = []
    for rec in read_relx(path):
        if keep is not None and rec.id not in keep:
            continue
        relation, subject, _ = rec.subject_object()
        e1, e2 = _trimmed(rec.text, [rec.e1, rec.e2])
        if relation == NA:
            label = NO_RELATION
        else:
            label = f"{relation}(e1,e2)" if subject == rec.e1 else f"{relation}(e2,e1)"
        out.append(GoldSentence(rec.id, rec.text, e1, e2, label))
    return out


def pair_prediction(gold: GoldSentence, records: Sequence[dict[str, Any]]) -> str:
    """The system's directed label for the gold pair: its most confident record between the two spans."""
    best = None
    for r in records:
        subj, obj = tuple(r["subject_span"]), tuple(r["object_span"])
        if {subj, obj} == {gold.e1, gold.e2} and subj != obj:
            if best is None or r["confidence"] > best["confidence"]:
                best = r
    if best is None:
        return NO_RELATION
    forward = tuple(best["subject_span"]) == gold.e1
    return f"{best['relation']}({'e1,e2' if forward else 'e2,e1'})"


def raw_text_scores(
    gold: Sequence[GoldSentence],
    records: Sequence[dict[str, Any]],
    mentions: Sequence[Sequence[tuple[int, int, str, bool]]],
    with_kb: bool = False,
) -> dict[str, Any]:
    """The raw-text metrics (module docstring) of extraction output against the gold pairs.

    Args:
      gold: the sentences.
      records: `extract` records; ``record["sentence"]`` indexes ``gold``.
      mentions: per sentence, the mentions found: ``(start, end, type, from_kb)``.
      with_kb: report ``linked_share`` (a KB mention finder was used).
    """
    by_sentence: list[list[dict[str, Any]]] = [[] for _ in gold]
    for r in records:
        by_sentence[r["sentence"]].append(r)
    found_args = found_pairs = gold_facts = fact_hits = record_hits = linked = 0
    gold_labels, predicted = [], []
    for g, recs, found in zip(gold, by_sentence, mentions, strict=True):
        spans = {(s, e) for s, e, *_ in found}
        hit1, hit2 = g.e1 in spans, g.e2 in spans
        found_args += hit1 + hit2
        found_pairs += hit1 and hit2
        gold_labels.append(g.label)
        predicted.append(pair_prediction(g, recs) if hit1 and hit2 else NO_RELATION)
        fact = g.fact
        gold_facts += fact is not None
        hits = sum(
            fact == (tuple(r["subject_span"]), r["relation"], tuple(r["object_span"])) for r in recs
        )
        record_hits += hits
        fact_hits += hits > 0
        kb_spans = {(s, e) for s, e, _, from_kb in found if from_kb}
        linked += sum(
            (tuple(r[key]) in kb_spans) for r in recs for key in ("subject_span", "object_span")
        )
    n = len(gold)
    result: dict[str, Any] = {
        "sentences": n,
        "relx_f1": round(relx_f1(gold_labels, predicted), 2),
        "mention_recall": _pct(found_args, 2 * n),
        "pair_recall": _pct(found_pairs, n),
        "triple_recall": _pct(fact_hits, gold_facts),
        "precision_lower_bound": _pct(record_hits, len(records)),
        "triples": len(records),
        "triples_per_sentence": round(len(records) / n, 3) if n else 0.0,
        "gold_facts_per_sentence": round(gold_facts / n, 3) if n else 0.0,
        "mentions_per_sentence": round(sum(len(m) for m in mentions) / n, 3) if n else 0.0,
    }
    if with_kb:
        result["linked_share"] = _pct(linked, 2 * len(records))
    return result


def _pct(hits: int, total: int) -> float:
    return round(100.0 * hits / total, 2) if total else 0.0


def evaluate_raw_text(
    model: str | Any,
    path: str,
    ids: Iterable[str] | None = None,
    mentions_of: MentionFinder | None = None,
    threshold: float | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Raw-text scores of a model on a KBP37/RELX file (see the module docstring).

    Args:
      model: a model directory or a loaded `RelationExtractor`.
      path: the KBP37/RELX file; its markers are removed.
      ids: keep only these record ids.
      mentions_of: a KB mention finder for the file's language (None: the tagger alone).
      threshold: the relation threshold (None: the model's calibrated one, else 0).
      batch_size: inference batch size.
    """
    gold = gold_sentences(path, ids)
    if not gold:
        raise ValueError(f"{path}: no sentences to score")
    records, mentions = extract_with_mentions(
        model, [g.text for g in gold], batch_size, threshold, mentions_of
    )
    result = raw_text_scores(gold, records, mentions, with_kb=mentions_of is not None)
    if threshold is None and isinstance(model, str):
        from relbridge.models.thresholds import calibrated_threshold

        threshold = calibrated_threshold(model)
    result["threshold"] = threshold if threshold is not None else 0.0
    if isinstance(model, str):
        from relbridge.models.thresholds import calibration

        result["span_threshold"] = calibration(model).get("span_threshold")
    return result


def choose_thresholds(
    curve: Sequence[dict[str, Any]], facts: float, triple_cost: float = TRIPLE_COST
) -> tuple[dict[str, Any], float | None]:
    """`calibrate`'s choice from its curve: the best entry, and the span threshold (None: marginal)."""
    if max(c["relx_f1"] for c in curve) > 0:
        best = max(
            curve,
            key=lambda c: (
                round(c["relx_f1"] - triple_cost * max(0.0, c["triples_per_sentence"] - facts), 6),
                -CONFIDENCES.index(c.get("confidence", CONFIDENCES[0])),
                -READINGS.index(c.get("readings", READINGS[0])),
                c["span_threshold"],
                c["threshold"],
            ),
        )
        return best, best["span_threshold"]
    best = min(curve, key=lambda c: (abs(c["triples_per_sentence"] - facts), -c["threshold"]))
    return best, None


def _dev_output(
    model_dir: str,
    texts: Sequence[str],
    span_threshold: float,
    mentions_of: MentionFinder | None,
    batch_size: int,
    lattice: bool = False,
) -> tuple[list[dict[str, Any]], list[list[tuple[int, int, str, bool]]], dict, set]:
    """`extract_with_mentions` at relation threshold 0 with spans decoded at ``span_threshold``
    (with ``lattice``, the other readings too), each mention's probability of being one name
    (`span_probabilities` under ``relation_x_names``) keyed ``(sentence, (char start, char
    end))``, and the keys of the mentions that are other readings, not decoded ones."""
    from relbridge.models.extract import load_model, prepare_sentence
    from relbridge.models.tagging import other_readings, tag_mentions

    model = load_model(model_dir)
    model.span_threshold = span_threshold
    model.confidence = "relation"  # the relation probabilities; calibrate weights them itself
    model.readings = READINGS[1] if lattice else READINGS[0]
    records, mentions = extract_with_mentions(model, texts, batch_size, 0.0, mentions_of)
    prepared = [prepare_sentence(i, t, mentions_of) for i, t in enumerate(texts)]
    tagged = tag_mentions(
        model, [s.words for s in prepared], batch_size, "span", with_probability=True
    )
    probability, others = {}, set()
    for i, (text, sentence, found) in enumerate(zip(texts, prepared, tagged)):
        offsets = token_offsets(text, sentence.words)
        spans = span_probabilities(found, sentence.kb_mentions, "relation_x_names")
        for start, end, _, p in other_readings(found, span_threshold) if lattice else ():
            others.add((i, (offsets[start][0], offsets[end - 1][1])))
            spans.setdefault((start, end), p)
        for (start, end), p in spans.items():
            probability[i, (offsets[start][0], offsets[end - 1][1])] = p
    return records, mentions, probability, others


def _weighted(record: dict[str, Any], probability: dict) -> dict[str, Any]:
    """``record`` with its confidence times its arguments' `mention_factor`.

    ``probability``: the mentions' probabilities of being one name, keyed
    ``(sentence, (char start, char end))`` (`_dev_output`).
    """
    i = record["sentence"]

    def p(span) -> float:
        return probability.get((i, tuple(span)), 1.0)

    factor = mention_factor(p(record["subject_span"]), p(record["object_span"]))
    return dict(record, confidence=record["confidence"] * factor)


def calibrate(
    model_dir: str,
    dev_path: str,
    ids: Iterable[str] | None = None,
    mentions_of: MentionFinder | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    batch_size: int = 16,
    save: bool = True,
    triple_cost: float = TRIPLE_COST,
    span_thresholds: Sequence[float] = SPAN_THRESHOLDS,
    confidences: Sequence[str] = CALIBRATED,
    readings: Sequence[str] = READINGS,
) -> dict[str, Any]:
    """Chooses the raw-text span and relation thresholds on a dev file and saves them beside the model.

    Extraction runs once, with the tagger decoding whole spans at the lowest
    span threshold and relation threshold 0 (every pair's decision keeps its
    confidence). The spans kept at a higher span threshold are exactly those
    whose probability reaches it (`relbridge.models.tagging.decode_spans`), and
    a pair's scores do not depend on the other mentions, so each pair of
    thresholds is scored by filtering that one output: mentions (KB mentions
    always stay) and the records between two kept mentions whose confidence
    reaches the relation threshold. The chosen pair maximises the raw-text
    ``relx_f1`` less ``triple_cost`` points per triple per sentence beyond the
    gold facts (ties: the higher span threshold, then the higher relation
    threshold): ``relx_f1`` only asks about each sentence's annotated pair, so
    alone it would take every triple about the other pairs, while a user wants
    about as many triples as there are facts; fewer, surer triples are the
    better output. A weak model that scores 0 everywhere keeps marginal
    decoding (``span_threshold`` None) and gets the relation threshold whose
    triples per sentence come closest to the gold facts. With a KB mention
    finder, a tagger span that a longer KB name displaced at the lowest span
    threshold stays displaced at the others: a slight approximation.

    The relation threshold applies to a record's confidence, and calibration
    also chooses what that is, from ``confidences``
    (`relbridge.models.thresholds.CALIBRATED`): the relation probability, or that
    times the geometric mean of the two arguments' probabilities of being one
    name (a KB alias's too). Each is scored over the same grid and the best entry
    wins (on a tie, the plain relation probability). With the RELX benchmark's
    model the weighted confidence won on KBP37 dev, with and without the
    Wikidata KB's mentions.

    It chooses the readings too, from ``readings``
    (`relbridge.models.thresholds.READINGS`): the decoded mentions only, or the
    lattice of every span the tagger reads as one name above the span threshold.
    Extraction runs once with the lattice; the decoded choice filters out the
    other readings (a tie goes to the decoded mentions, which cost fewer pairs).

    Returns:
      ``{"threshold", "span_threshold", "confidence", "readings", "chosen_on", "sentences",
      "gold_facts_per_sentence", "curve": [{confidence, readings, span_threshold, threshold,
      relx_f1, precision_lower_bound, triple_recall, triples_per_sentence}]}``.
    """
    gold = gold_sentences(dev_path, ids)
    if not gold:
        raise ValueError(f"{dev_path}: no sentences to calibrate on")
    if not confidences or any(c not in CALIBRATED for c in confidences):
        raise ValueError(f"confidences must be some of {CALIBRATED}, got {confidences!r}")
    if not readings or any(r not in READINGS for r in readings):
        raise ValueError(f"readings must be some of {READINGS}, got {readings!r}")
    plain, mentions, probability, others = _dev_output(
        model_dir, [g.text for g in gold], min(span_thresholds), mentions_of, batch_size,
        lattice=READINGS[1] in readings,
    )  # fmt: skip
    weighted = [_weighted(r, probability) for r in plain]
    scored = {"relation": plain, "relation_x_names": weighted}  # weighted once, not per tau
    curve = []
    for confidence, reading, tau in itertools.product(
        confidences, readings, sorted(span_thresholds)
    ):
        records = scored[confidence]
        kept = [
            [
                m for m in found
                if (m[3] or probability.get((i, (m[0], m[1])), 0.0) >= tau)
                and (reading == "lattice" or (i, (m[0], m[1])) not in others)
            ]
            for i, found in enumerate(mentions)
        ]  # fmt: skip
        spans = [{(m[0], m[1]) for m in found} for found in kept]
        between = [
            r for r in records
            if {tuple(r["subject_span"]), tuple(r["object_span"])} <= spans[r["sentence"]]
        ]  # fmt: skip
        for t in thresholds:
            s = raw_text_scores(gold, [r for r in between if r["confidence"] >= t], kept)
            curve.append(
                {"confidence": confidence, "readings": reading, "span_threshold": tau,
                 "threshold": t}
                | {k: s[k] for k in ("relx_f1", "precision_lower_bound", "triple_recall")}
                | {"triples_per_sentence": s["triples_per_sentence"]}
            )
    facts = raw_text_scores(gold, [], mentions)["gold_facts_per_sentence"]
    best, span_threshold = choose_thresholds(curve, facts, triple_cost)
    result = {
        "threshold": best["threshold"],
        "span_threshold": span_threshold,
        "confidence": best["confidence"] if span_threshold is not None else "relation",
        "readings": best["readings"] if span_threshold is not None else READINGS[0],
        "chosen_on": os.path.abspath(dev_path),
        "sentences": len(gold),
        "gold_facts_per_sentence": facts,
        "curve": curve,
    }
    if save:
        path = os.path.join(model_dir, THRESHOLD_FILE)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        os.replace(path + ".tmp", path)  # never a half-written threshold file
        logger.info(
            "raw-text thresholds: span %s (%s readings), relation %.2f on the %s confidence "
            "(chosen on %s), saved to %s",
            span_threshold, result["readings"], best["threshold"], result["confidence"],
            dev_path, path,
        )  # fmt: skip
    return result
