"""Relation extraction from raw sentences with a trained model.

`extract(model_dir, sentences)` handles two kinds of input:

* **marked** sentences, with ``<e1> .. </e1>`` and ``<e2> .. </e2>`` (KBP37/RELX
  style): the pair is classified in both directions and decoded jointly into one
  record (relation ``NA`` when neither direction holds);
* **untagged** sentences: the tagging head finds mentions (BIO over words; whole
  spans at the span threshold calibrated beside the model, see `load_model`),
  every pair of mentions is encoded once and scored in both directions, and
  decoded jointly like a marked pair: the more likely relation direction becomes
  a record when its probability reaches ``threshold`` (by default the one
  calibrated on KBP37 dev and saved beside the model, see
  `relbridge.models.raw_text`), so that a pair gives at most one triple. A model
  calibrated with mention-weighted confidence (`relbridge.models.thresholds`) multiplies that
  probability by the geometric mean of the two arguments' span probabilities,
  and never scores a pair whose mentions alone keep it below the threshold.
  A model calibrated with ``lattice`` readings also pairs the other spans the
  tagger reads as one name above the span threshold (``North Carolina`` beside
  the decoded ``North`` and ``Carolina``; never two overlapping spans), and the
  relation head decides which reading holds a relation.
  With a KB mention finder (``mentions_of``, e.g.
  `relbridge.kb.TextMentions`; CLI ``--kb``), the KB's aliases
  found in the sentence are mentions too (of two overlapping spans the longer
  stays, see `merge_mentions`): a KB name is whole and links to its entity,
  while the tagger still finds the names the KB lacks. The finder's words
  (the pipeline's tokenizer for the language) then replace the default word
  pattern for the tagger too.

Each record is ``{"sentence", "text", "subject", "subject_span", "relation",
"object", "object_span", "subject_type", "object_type", "confidence"}`` with
character spans ``[start, end)``; the types are the tagging head's (``""`` for
marked input).

`extract_file(model_dir, path)` reads one sentence per line (plain, marked, or a
JSON line with ``text`` and an optional ``id``) and adds each record's
provenance for knowledge-graph loading: ``source_file``, ``line``, ``id`` (JSON
input only) and ``model``. CLI: ``relbridge extract --model DIR --input
sentences.txt --output records.jsonl``; ``relbridge triples`` then merges the
records into triples (`relbridge.models.triples`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from relbridge.data_specs.formats import InputError, corpus_format, open_lines
from relbridge.data_specs.relations import NA
from relbridge.data_specs.relx import raw_words, strip_markers, words_with_spans
from relbridge.data_specs.schema import token_offsets
from relbridge.models.candidates import CandidateConfig, TypeSchema, candidate_pairs
from relbridge.models.data import PairInstance, _overlap
from relbridge.models.markers import PairSpec
from relbridge.models.scoring import ScoringConfig, load_for_inference, score_pairs
from relbridge.models.evaluate import decode_joint, marked_prior, predict_pairs
from relbridge.models import prefix
from relbridge.models.tagging import decode_mentions, other_readings, tag_mentions
from relbridge.models.thresholds import (
    CONFIDENCES, READINGS, calibrated_decoding, calibrated_threshold, calibration,
    mention_factor, span_probabilities,
)  # fmt: skip
from relbridge.runtime.devices import autocast_for

logger = logging.getLogger(__name__)

_MARKERS = ("<e1>", "</e1>", "<e2>", "</e2>")

MentionFinder = Callable[[str], tuple[list[str], list[tuple[int, int, str]]]]
"""``text -> (words, [(start, end, type)])``: words are substrings of the text in order."""


def is_marked(sentence: str) -> bool:
    return all(sentence.count(m) == 1 for m in _MARKERS)


def _char_span(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    return [offsets[span[0]][0], offsets[span[1] - 1][1]]


@dataclass(frozen=True)
class PreparedSentence:
    """A sentence ready for the model: its words and, per kind, its entities.

    Attributes:
      index: the caller's key for the sentence (``extract``: its position);
        each record's ``sentence``.
      text: the sentence without markers, stripped.
      words: the words (substrings of ``text``, in order).
      marked: for marked input, the two marked entities' word spans
        ``[start, end)``; None for untagged input.
      kb_mentions: for untagged input, the KB mention finder's ``(start, end,
        type)`` word spans.
    """

    index: int
    text: str
    words: tuple[str, ...]
    marked: tuple[tuple[int, int], tuple[int, int]] | None = None
    kb_mentions: tuple[tuple[int, int, str], ...] = ()


def prepare_sentence(
    index: int, sentence: str, mentions_of: MentionFinder | None = None
) -> PreparedSentence:
    """Splits one sentence into words and finds its marked or KB entities (no model needed).

    Raises:
      ValueError: marked entities that cover no word or overlap.
    """
    if is_marked(sentence):
        text, spans = strip_markers(sentence.strip())
        words, (w1, w2) = words_with_spans(text, [spans["e1"], spans["e2"]])
        if w1[0] < 0 or w2[0] < 0 or (w1[0] < w2[1] and w2[0] < w1[1]):
            raise ValueError("marked entities cover no word or overlap")
        return PreparedSentence(index, text, tuple(words), (tuple(w1), tuple(w2)))
    text = sentence.strip()
    words, kb_mentions = mentions_of(text) if mentions_of else (raw_words(text), [])
    return PreparedSentence(index, text, tuple(words), None, tuple(map(tuple, kb_mentions)))


def extract(
    model_dir: str | Any,
    sentences: Sequence[str],
    batch_size: int = 16,
    threshold: float | None = 0.0,
    mentions_of: MentionFinder | None = None,
    scoring: ScoringConfig = ScoringConfig(),
    candidates: CandidateConfig = CandidateConfig(),
    schema: TypeSchema | None = None,
    stats: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Extracts (subject, relation, object, confidence) records from sentences.

    Args:
      model_dir: a saved model directory, or a loaded `RelationExtractor`.
      sentences: raw sentences, marked (``<e1>``/``<e2>``) or untagged.
      batch_size: inference batch size.
      threshold: for untagged sentences, the minimum probability of a relation;
        None: the model's calibrated threshold (`calibrated_threshold`), else 0.
      mentions_of: for untagged sentences, a KB mention finder whose words and
        mentions are used beside the tagger's (see the module docstring).
      scoring: the fast or the exact path (`relbridge.models.scoring`).
      candidates: how candidate pairs are pruned (`relbridge.models.candidates`).
      schema: the relation schema for type pruning (default: from the relation names).
      stats: when given, gets the counts ``candidate_pairs_before``,
        ``candidate_pairs`` and ``encoder_passes`` added.

    Returns:
      The records, in sentence order.
    """
    return extract_with_mentions(
        model_dir, sentences, batch_size, threshold, mentions_of, scoring, candidates, schema, stats
    )[0]


def extract_with_mentions(
    model_dir: str | Any,
    sentences: Sequence[str],
    batch_size: int = 16,
    threshold: float | None = 0.0,
    mentions_of: MentionFinder | None = None,
    scoring: ScoringConfig = ScoringConfig(),
    candidates: CandidateConfig = CandidateConfig(),
    schema: TypeSchema | None = None,
    stats: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], list[list[tuple[int, int, str, bool]]]]:
    """`extract`, and per sentence the mentions its pairs were drawn from.

    Returns:
      ``(records, mentions)``: ``mentions[i]`` lists ``(char start, char end, type,
      from_kb)`` of sentence ``i`` (the two marked entities of a marked one).
    """
    model = load_model(model_dir) if isinstance(model_dir, str) else model_dir
    if threshold is None:
        threshold = calibrated_threshold(model_dir) if isinstance(model_dir, str) else None
        threshold = 0.0 if threshold is None else threshold
    prepared = prepare_sentences(sentences, mentions_of)
    records, by_index = extract_prepared(
        model, prepared, batch_size, threshold, scoring, candidates, schema, stats
    )
    return records, [by_index.get(i, []) for i in range(len(sentences))]


def prepare_sentences(
    sentences: Sequence[str], mentions_of: MentionFinder | None = None,
    where: Callable[[int], str] | None = None, stats: dict[str, int] | None = None,
) -> list[PreparedSentence]:  # fmt: skip
    """`prepare_sentence` of each sentence; one it cannot read (marked entities that cover no
    word or overlap) is logged as ``where(i)`` (``sentence i``) and counted in ``stats``."""
    prepared = []
    for i, sentence in enumerate(sentences):
        try:
            prepared.append(prepare_sentence(i, sentence, mentions_of))
        except ValueError as error:
            logger.warning("%s: %s; skipped", where(i) if where else f"sentence {i}", error)
            if stats is not None:  # as ``skipped``
                stats["skipped"] = stats.get("skipped", 0) + 1
    return prepared


def extract_prepared(
    model,
    sentences: Sequence[PreparedSentence],
    batch_size: int = 16,
    threshold: float = 0.0,
    scoring: ScoringConfig = ScoringConfig(),
    candidates: CandidateConfig = CandidateConfig(),
    schema: TypeSchema | None = None,
    stats: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], dict[int, list[tuple[int, int, str, bool]]]]:
    """The records of prepared sentences (`extract_with_mentions`' model part; see its Args).

    Each record's ``sentence`` is its sentence's ``index``; the mentions are keyed by index.
    """
    names = model.inventory.names
    mentions_found: dict[int, list[tuple[int, int, str, bool]]] = {}
    pairs: list[PairInstance] = []
    meta: list[
        tuple[int, str, list[tuple[int, int]], bool, float]
    ] = []  # sentence, text, word char offsets, marked, mention factor
    untagged = [(s.index, s.text, s.words) for s in sentences if s.marked is None]
    known = [s.kb_mentions for s in sentences if s.marked is None]
    for s in sentences:
        if s.marked is not None:
            w1, w2 = s.marked
            pairs.append(PairInstance(str(s.index), "", s.words, w1, w2, None, None, side="relx"))
            meta.append((s.index, s.text, token_offsets(s.text, s.words), True, 1.0))
            offsets = meta[-1][2]
            mentions_found[s.index] = [(*_char_span(offsets, w), "", False) for w in (w1, w2)]
    confidence = getattr(model, "confidence", "relation")
    span_threshold = getattr(model, "span_threshold", None)
    weighted = confidence in CONFIDENCES[1:] and span_threshold is not None
    lattice = getattr(model, "readings", READINGS[0]) == "lattice" and span_threshold is not None
    found, passes = _tag(
        model, [w for _, _, w in untagged], batch_size, scoring, weighted or lattice
    )
    schema = schema or TypeSchema.from_relation_names(names)
    candidate_sets = []
    counts = {"candidate_pairs_before": 0, "candidate_pairs": 0, "encoder_passes": len(pairs)}
    factors: list[list[float]] = []  # per untagged sentence, per candidate pair
    for (i, text, words), tagged, kb_mentions in zip(untagged, found, known):
        span_p = span_probabilities(tagged, kb_mentions, confidence) if weighted else {}
        others = other_readings(tagged, span_threshold) if lattice else []
        if weighted:  # a reading's own probability of being one name (a KB alias keeps its own)
            span_p.update({m[:2]: m[3] for m in others if m[:2] not in span_p})
        tagged = tagged.mentions if weighted or lattice else tagged
        mentions = merge_mentions(kb_mentions, [m[:3] for m in tagged])
        taken = {m[:2] for m in mentions}
        mentions += [m[:3] for m in others if m[:2] not in taken]  # lattice readings
        offsets = token_offsets(text, words)
        kb_spans = {(m[0], m[1]) for m in kb_mentions}
        mentions_found[i] = [
            (*_char_span(offsets, (s, e)), t, (s, e) in kb_spans) for s, e, t in mentions
        ]
        kept = [  # unweighted, the tagger gives no probabilities: every factor is 1
            (a, b, mention_factor(span_p.get(a[:2], 1.0), span_p.get(b[:2], 1.0)))
            for a, b in candidate_pairs(mentions, schema, candidates)
        ]
        # a pair whose mentions alone keep its confidence below the threshold is never scored
        kept = [pair for pair in kept if pair[2] >= threshold]
        factors.append([f for _, _, f in kept])
        candidate_sets.append((words, [PairSpec(a[:2], b[:2], a[2], b[2]) for a, b, _ in kept]))
        counts["candidate_pairs_before"] += len(mentions) * (len(mentions) - 1) // 2
        counts["candidate_pairs"] += len(kept)
    probs = []
    if pairs:  # the marked sentences' pairs, at the scorer's precision
        with torch.inference_mode(), autocast_for(model, scoring.precision):
            probs.append(marked_prior(predict_pairs(model, pairs, batch_size), model))
    if candidate_sets:
        scored, n_passes = score_pairs(model, candidate_sets, scoring, passes)
        counts["encoder_passes"] += n_passes
        for (i, text, words), (_, specs), pr, factor in zip(
            untagged, candidate_sets, scored, factors
        ):
            offsets = token_offsets(text, words)
            for spec, f in zip(specs, factor):
                pairs.append(
                    PairInstance(str(i), "", tuple(words), spec.e1, spec.e2, None, None,
                                 e1_type=spec.e1_type, e2_type=spec.e2_type)
                )  # fmt: skip
                meta.append((i, text, offsets, False, f))
            probs.append(pr)
    probs = np.concatenate(probs) if probs else np.zeros((0, 2, len(names)))
    if stats is not None:
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
    records = []
    for pair, (i, text, offsets, marked, factor), pr in zip(pairs, meta, probs):
        span1, span2 = _char_span(offsets, pair.e1), _char_span(offsets, pair.e2)
        # One decision per pair (KBP37/RELX give a pair one directed label): for a
        # found pair, the more likely relation direction when its confidence
        # reaches the threshold.
        l12, l21, conf = decode_joint(pr, names)
        conf *= factor
        choices = [(l21, 1, conf)] if l21 != NA else [(l12, 0, conf)]
        if not marked and (choices[0][0] == NA or conf < threshold):
            choices = []
        types = (pair.e1_type, pair.e2_type)
        for relation, direction, conf in choices:
            subj, obj = (span1, span2) if direction == 0 else (span2, span1)
            subj_type, obj_type = types if direction == 0 else types[::-1]
            records.append(
                {
                    "sentence": i,
                    "text": text,
                    "subject": text[subj[0] : subj[1]],
                    "subject_span": subj,
                    "relation": relation,
                    "object": text[obj[0] : obj[1]],
                    "object_span": obj,
                    "subject_type": subj_type,
                    "object_type": obj_type,
                    "confidence": round(float(conf), 6),
                }
            )
    records.sort(key=lambda r: r["sentence"])
    return records, mentions_found


def _tag(model, sentences_words, batch_size, scoring, with_probability):
    """The tagger's mentions of each sentence, and its tagging passes where pairs can reuse them.

    On the fast path of a levitated model the tagging pass keeps the text's
    keys and values, over which `score_pairs` then scores the pairs
    (`relbridge.models.prefix`); otherwise the passes are None.
    """
    if not sentences_words:
        return [], None
    if scoring.exact or not prefix.cacheable(model):
        found = tag_mentions(model, sentences_words, batch_size, precision=scoring.precision,
                             with_probability=with_probability)  # fmt: skip
        return found, None
    passes = prefix.text_passes(model, sentences_words, batch_size, scoring.precision)
    logits, firsts = [p.tag_logits for p in passes], [p.text.first for p in passes]
    found = decode_mentions(model, logits, firsts, with_probability)
    return found, passes


CHUNK_SIZE = 64
"""Sentences extracted at a time by `iter_extract_file` and by ``kg build``'s RunInference:
enough to batch pairs of like length, few enough to keep memory flat. With the RELX
benchmark's model on 1,000 NTREX sentences (2 EPYC cores), 64 peaked at 1,568-1,573 MB
against 256's 1,749 MB, in the same time (102-107 s against 104 s)."""

def load_model(model_dir: str, precision: str = "auto"):
    """The model of a directory, ready for inference at ``precision`` (`for_inference`),
    with the span threshold, the confidence and the readings calibrated for its tagger, if any.

    ``model.span_threshold`` makes `relbridge.models.tagging.tag_mentions` decode
    whole spans at that threshold; None keeps marginal decoding.
    ``model.confidence`` is one of `CONFIDENCES`, ``model.readings`` one of `READINGS`.
    """
    model = load_for_inference(model_dir, precision)
    model.span_threshold, model.confidence, model.readings = calibrated_decoding(
        calibration(model_dir)
    )
    return model


def kb_schema(kb_dir: str | None, names: Sequence[str]) -> TypeSchema:
    """The relation schema for pruning: the model's relation names, refined by the KB's map.

    A KB directory may hold ``relation_map.json`` (KB properties -> relations with
    argument types, see the wikidata-xfactr KB); without one (or for a KB index)
    the names alone decide. `iter_extract_file` and ``kg build`` both prune by it.
    """
    schema = TypeSchema.from_relation_names(names)
    relation_map = os.path.join(kb_dir, "relation_map.json") if kb_dir else None
    if relation_map and os.path.isfile(relation_map):
        schema = schema.refine(TypeSchema.from_relation_map(relation_map))
    return schema


def merge_mentions(
    known: Sequence[tuple[int, int, str]], tagged: Sequence[tuple[int, int, str]]
) -> list[tuple[int, int, str]]:
    """KB and tagged mentions without overlaps, in word order.

    Of two overlapping spans the longer stays, the KB's on a tie: a KB alias
    inside a longer tagged name is part of another entity (``Arizona`` in
    ``Arizona State University``), and a tagged span inside a KB name is a
    part the tagger missed the rest of (``Jackie`` of ``Jackie Frazier-Lyde``).

    >>> merge_mentions([(0, 2, "PER"), (6, 7, "LOC")], [(1, 2, "PER"), (4, 5, "LOC"), (6, 9, "ORG")])
    [(0, 2, 'PER'), (4, 5, 'LOC'), (6, 9, 'ORG')]
    """
    ranked = sorted(
        [(m, 1) for m in known] + [(m, 0) for m in tagged],
        key=lambda x: (-(x[0][1] - x[0][0]), -x[1], x[0][0]),
    )
    kept: list[tuple[int, int, str]] = []
    for m, _ in ranked:
        if not any(_overlap(m, k) for k in kept):
            kept.append(m)
    return sorted(kept)


def read_sentences(path: str) -> Iterator[tuple[int, str | None, str]]:
    """``(line, id, sentence)`` of each non-blank line of an extract input file, streamed.

    A line of a JSON-lines file (`corpus_format`) is JSON with a ``text`` and an optional ``id``;
    elsewhere a line that does not parse as JSON at all is text (see
    `parse_input_line`).
    """
    with open_lines(path) as f:
        for n, line in enumerate(f, 1):
            record_id, line = parse_input_line(line, path, n)
            if line:
                yield n, record_id, line


def parse_input_line(line: str, path: str, n: int) -> tuple[str | None, str]:
    """``(id, sentence)`` of one input line (``""`` when blank); see `read_sentences`.

    A line that starts with ``{`` is a JSON object with a string ``text``. In
    a file that is not JSON lines by its name (`corpus_format`), a line that does not parse as
    JSON at all is plain text instead: text may start with a brace (``{ B / R }
    , { T }: ...`` in the OpenNMT toy corpus), and one such line used to stop
    the whole run.

    Raises:
      InputError: a JSON line without a string ``text``, or a ``.jsonl`` line
        that is not JSON.
    """
    line, record_id = line.strip(), None
    if line.startswith("{"):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            if corpus_format(path) != "jsonl":
                return None, line  # plain text that starts with a brace
        line, record_id = _json_input(line, path, n)
    return record_id, line


def _json_input(line: str, path: str, n: int) -> tuple[str, str | None]:
    try:
        obj = json.loads(line)
        text = obj["text"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(
            path, n, 'expected a sentence or {"text": "...", "id": optional}'
        ) from None
    if not isinstance(text, str):
        raise InputError(path, n, '"text" must be a string')
    return text.strip(), (None if obj.get("id") is None else str(obj["id"]))


def iter_extract_file(
    model_dir: str,
    path: str,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    stats: dict[str, int] | None = None,
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """`extract` over an input file, streamed in chunks; each record with its provenance.

    Memory stays flat in the input's length: ``chunk_size`` sentences are read,
    extracted and yielded at a time (records keep their input order). The input
    is checked in a first pass, so a bad line is reported (file and line)
    before the model loads; the model loads once. ``stats`` gets ``sentences``, the counts of
    `extract`, and ``skipped``: the sentences that could not be read (marked entities that
    cover no word or overlap), each also logged with its file and line.

    Args:
      model_dir: the model directory.
      path: one sentence per line (see `read_sentences`).
      chunk_size: sentences per chunk.
      progress: show a progress bar with sentences/s (on stderr).
      options: `extract`'s keyword arguments (threshold, mentions_of, scoring, ...),
        and ``kb_dir``, whose ``relation_map.json`` refines the pruning schema.
    """
    from relbridge.runtime.progress import ProgressBar

    stats = {} if stats is None else stats
    total = sum(1 for _ in read_sentences(path))  # a bad line fails here, before the model loads
    model = load_model(model_dir)
    mentions_of = options.pop("mentions_of", None)
    options.setdefault("schema", kb_schema(options.pop("kb_dir", None), model.inventory.names))
    if options.get("threshold") is None:  # the threshold calibrated for this model, if any
        options["threshold"] = calibrated_threshold(model_dir) or 0.0
    bar = ProgressBar(total, "extract", "sentence", enabled=progress)
    inputs = read_sentences(path)
    stats["scoring_started_at"] = time.time()  # model and mention finder are loaded
    while chunk := list(itertools.islice(inputs, chunk_size)):
        prepared = prepare_sentences(  # a skipped sentence is named by file and line, and counted
            [s for _, _, s in chunk], mentions_of, lambda k: f"{path}:{chunk[k][0]}", stats
        )
        records, _ = extract_prepared(model, prepared, stats=stats, **options)
        stats["sentences"] = stats.get("sentences", 0) + len(chunk)
        bar.update(len(chunk))
        for record in records:
            n, record_id, _ = chunk[record["sentence"]]
            record["sentence"] += stats["sentences"] - len(chunk)  # index in the whole input
            record.update(source_file=path, line=n, model=model_dir)
            if record_id is not None:
                record["id"] = record_id
            yield record
    bar.close()


def extract_file(model_dir: str, path: str, **options: Any) -> tuple[list[dict[str, Any]], int]:
    """All records of `iter_extract_file`, and the number of sentences read."""
    stats: dict[str, int] = {}
    records = list(iter_extract_file(model_dir, path, stats=stats, **options))
    return records, stats.get("sentences", 0)
