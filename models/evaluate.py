"""Relation-extraction metrics and `evaluate(model_dir, data) -> dict`.

Metrics (all in percent):
  * ``micro_p/r/f1``: over directed decisions, NA excluded: a prediction counts
    when it is not NA, a gold fact when it is not NA, a hit when both agree.
  * ``macro_f1``: per-relation F1 averaged over the relations in the gold labels.
  * ``auc``: area under the held-out precision/recall curve: every (ordered pair,
    non-NA relation) is ranked by its probability; recall is over gold facts.
  * ``relx_f1`` (KBP37/RELX data only): for each of the 18 KBP relations, micro F1
    restricted to its two directed labels ``r(e1,e2)`` and ``r(e2,e1)``, averaged
    over the 18, as in the RELX paper's evaluation (sklearn ``f1_score`` with
    ``labels=[...]``, ``average="micro"``; 0 for a relation never seen or predicted).
  * ``tagging`` (models trained with the tagging task): how well the tagging
    head, which finds the entities of untagged text for `extract`, finds the
    gold mentions; see `relbridge.models.tagging`.

Decoding. The model scores both directions of a pair from one encoding. For
KBP37/RELX sentences, which carry exactly one directed label, the two directions
are decoded jointly: NA when both directions' argmax is NA, otherwise the non-NA
relation and direction with the highest probability, written ``r(e1,e2)`` when
e1 (the ``<e1>`` entity) is the subject. Shard pairs may hold a relation in each
direction, so each direction takes its own argmax.

Usage::

    evaluate("out/model", "RELX_de.txt", data_format="relx", ids=test_ids)
    relbridge evaluate --model out/model --data RELX_de.txt --format relx
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from relbridge.data_specs.relations import KBP37_RELATIONS, NA
from relbridge.models.data import (
    PairInstance,
    RelationData,
    SkippedPair,
    directed_label,
    read_data,
)
from relbridge.models.tagging import tag_mentions, tagging_scores
from relbridge.runtime.metrics import prf

logger = logging.getLogger(__name__)

NO_RELATION = "no_relation"


# ---------------------------------------------------------------------- metrics


def prf_without_na(gold: Sequence[str], pred: Sequence[str], na: str = NA) -> dict[str, float]:
    """Micro P/R/F1 with NA excluded, and macro F1 over the gold relations."""
    tp = sum(1 for g, p in zip(gold, pred) if g == p and g != na)
    n_pred = sum(1 for p in pred if p != na)
    n_gold = sum(1 for g in gold if g != na)
    precision, recall, micro_f1 = prf(tp, n_pred, n_gold)
    per_rel = []
    for rel in sorted({g for g in gold if g != na}):
        rtp = sum(1 for g, p in zip(gold, pred) if g == p == rel)
        rp = sum(1 for p in pred if p == rel)
        rg = sum(1 for g in gold if g == rel)
        per_rel.append(prf(rtp, rp, rg)[2])
    return {
        "micro_p": 100 * precision,
        "micro_r": 100 * recall,
        "micro_f1": 100 * micro_f1,
        "macro_f1": 100 * float(np.mean(per_rel)) if per_rel else 0.0,
    }


def pr_curve(
    scores: np.ndarray, gold: Sequence[int], na_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out precision/recall curve (OpenNRE/Mintz style).

    Every (instance, non-NA relation) is ranked by its probability; precision and
    recall are taken after each rank, recall over the gold facts (non-NA gold).

    Args:
      scores: (N, R) probabilities.
      gold: the N gold class ids.
      na_id: the NA class, left out of the ranking.

    Returns:
      ``(recall, precision)``, each (N * (R-1),); empty when there is no gold fact.
    """
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold)
    n_facts = int((gold != na_id).sum())
    if n_facts == 0 or scores.size == 0:
        return np.zeros(0), np.zeros(0)
    rels = [r for r in range(scores.shape[1]) if r != na_id]
    flat = scores[:, rels].ravel()  # (N * (R-1),)
    hit = (gold[:, None] == np.array(rels)[None, :]).ravel()
    order = np.argsort(-flat, kind="stable")
    correct = np.cumsum(hit[order])
    return correct / n_facts, correct / np.arange(1, len(order) + 1)


def held_out_auc(scores: np.ndarray, gold: Sequence[int], na_id: int = 0) -> float:
    """Area under the held-out PR curve (`pr_curve`), in percent.

    Args:
      scores: (N, R) probabilities.
      gold: the N gold class ids.
      na_id: the NA class, left out of the ranking.
    """
    recall, precision = pr_curve(scores, gold, na_id)
    if recall.size == 0:
        return 0.0
    # Trapezoid area from recall 0 (sklearn.metrics.auc on the same points).
    recall = np.concatenate([[0.0], recall])
    precision = np.concatenate([[precision[0]], precision])
    return 100 * float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def diagnostics(
    gold: Sequence[str],
    pred: Sequence[str],
    rows: np.ndarray,
    gold_ids: Sequence[int],
    max_points: int = 300,
) -> dict[str, Any]:
    """What the run report draws: per-relation P/R/F1, the confusion matrix, the PR curve.

    Args:
      gold, pred: one gold and one predicted label per directed decision (NA included).
      rows: (N, R) probabilities of those decisions; gold_ids: their gold class ids.
      max_points: the PR curve is thinned to about this many points.

    Returns:
      ``{"per_relation": {rel: {precision, recall, f1, support}}, "confusion":
      {"labels": [NA, ...], "matrix": [[count of gold i predicted j]]}, "pr_curve":
      {"recall": [...], "precision": [...]}}``, percentages for P/R/F1.
    """
    labels = [NA] + sorted(({*gold} | {*pred}) - {NA})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, y in zip(gold, pred):
        matrix[index[g], index[y]] += 1
    per_relation = {}
    for label in labels[1:]:
        i = index[label]
        n_gold = int(matrix[i, :].sum())
        p, r, f = prf(int(matrix[i, i]), int(matrix[:, i].sum()), n_gold, scale=100)
        per_relation[label] = {
            "precision": round(p, 2),
            "recall": round(r, 2),
            "f1": round(f, 2),
            "support": n_gold,
        }
    recall, precision = pr_curve(rows, gold_ids) if len(rows) else (np.zeros(0), np.zeros(0))
    keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), max_points)).astype(int))
    return {
        "per_relation": per_relation,
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
        "pr_curve": {
            "recall": np.round(recall[keep], 4).tolist(),
            "precision": np.round(precision[keep], 4).tolist(),
        },
    }


def without_diagnostics(result: dict[str, Any]) -> dict[str, Any]:
    """A result with every ``diagnostics`` entry left out (for printed summaries)."""
    return {
        k: without_diagnostics(v) if isinstance(v, dict) else v
        for k, v in result.items()
        if k != "diagnostics"
    }


def relx_f1(
    gold: Sequence[str], pred: Sequence[str], relations: Sequence[str] = KBP37_RELATIONS
) -> float:
    """The RELX metric: mean over relations of micro F1 on their two directed labels, in percent.

    Equivalent to ``mean(f1_score(gold, pred, labels=[f"{r}(e1,e2)", f"{r}(e2,e1)"],
    average="micro") for r in relations)`` with sklearn (0 when undefined).
    """
    scores = []
    for rel in relations:
        labels = {f"{rel}(e1,e2)", f"{rel}(e2,e1)"}
        tp = sum(1 for g, p in zip(gold, pred) if g == p and g in labels)
        n_pred = sum(1 for p in pred if p in labels)
        n_gold = sum(1 for g in gold if g in labels)
        scores.append(prf(tp, n_pred, n_gold)[2])
    return 100 * float(np.mean(scores))


# ---------------------------------------------------------------------- prediction


@torch.no_grad()
def predict_pairs(
    model, pairs: Sequence[PairInstance], batch_size: int = 32, progress: str | None = None
) -> np.ndarray:
    """Relation probabilities of both directions of each pair: (N, 2, R).

    A pair whose entities alone exceed ``max_seq_len`` cannot be encoded; it is
    predicted NA with certainty (its relation, if any, counts as missed).
    ``progress``: a name to show progress under (`ProgressBar`); None shows none.
    """
    from relbridge.runtime.progress import ProgressBar

    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(pairs), 2, len(model.inventory)), dtype=np.float32)
    encoded = {}
    for i, p in enumerate(pairs):
        try:
            encoded[i] = model.encode_pair(p.tokens, p.e1, p.e2, None, None, p.e1_type, p.e2_type)
        except ValueError:
            out[i, :, model.inventory.rel2id[NA]] = 1.0
    order = sorted(encoded, key=lambda i: len(encoded[i].input_ids))
    with ProgressBar(len(order), progress or "", "pair", enabled=bool(progress)) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in model.collate([encoded[i] for i in idx]).items()}
            logits = model(batch, labels=False)["relation_logits"].float()  # (b, 2, R)
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
            bar.update(len(idx))
    return out


def marked_prior(probs: np.ndarray, model) -> np.ndarray:
    """Probabilities of annotated (marked) pairs under their own NA prior.

    A model trained with unannotated-pair negatives (`relbridge.models.negatives`)
    saw NA far more often than annotators choose it, which is right for the
    pairs a tagger proposes in raw text but not for a pair someone marked. Its
    ``marked_na_bias`` (the log-odds of NA among the annotated training pairs
    minus among all of them; 0 without negatives) corrects the prior, as in
    Saerens et al. (2002): ``p(NA) * e^bias``, renormalised.
    """
    bias = float(getattr(model, "marked_na_bias", 0.0))
    if not bias or not len(probs):
        return probs
    out = probs.copy()
    out[..., 0] *= np.exp(bias)
    return out / out.sum(axis=-1, keepdims=True)


def decode_joint(probs: np.ndarray, names: Sequence[str]) -> tuple[str, str, float]:
    """One directed decision for a pair: ``(label_12, label_21, confidence)`` with at most one non-NA.

    Args:
      probs: (2, R) probabilities of e1->e2 and e2->e1; class 0 is NA.
      names: the relation names.
    """
    if probs[0].argmax() == 0 and probs[1].argmax() == 0:
        return NA, NA, float(min(probs[0, 0], probs[1, 0]))
    direction, rel = np.unravel_index(np.argmax(probs[:, 1:]), probs[:, 1:].shape)
    label = names[rel + 1]
    conf = float(probs[direction, rel + 1])
    return (label, NA, conf) if direction == 0 else (NA, label, conf)


def decode_pairs(
    pairs: Sequence[PairInstance], probs: np.ndarray, names: Sequence[str]
) -> list[tuple[str, str]]:
    """Predicted (label_12, label_21) per pair: joint for KBP37/RELX pairs, per direction otherwise."""
    out = []
    for p, pr in zip(pairs, probs):
        if p.side == "relx":
            l12, l21, _ = decode_joint(pr, names)
        else:
            l12, l21 = names[int(pr[0].argmax())], names[int(pr[1].argmax())]
        out.append((l12, l21))
    return out


def _decisions(
    pairs: Sequence[PairInstance],
    probs: np.ndarray,
    names: Sequence[str],
    skipped: Sequence[SkippedPair] = (),
) -> tuple[list[tuple[str, str]], list[str], list[str], np.ndarray, list[int]]:
    """Per-pair decisions, then one row per directed gold label: gold, prediction, (R,) probabilities, gold id.

    Skipped records are decided NA with certainty, so their relations count as missed.
    """
    decisions = decode_pairs(pairs, probs, names)
    certain_na = np.zeros((len(skipped), 2, len(names)), dtype=np.float32)
    certain_na[..., 0] = 1.0
    decisions += [(NA, NA)] * len(skipped)
    pairs, probs = (
        [*pairs, *skipped],
        np.concatenate([probs.reshape(-1, 2, len(names)), certain_na]),
    )
    rel2id = {n: i for i, n in enumerate(names)}
    gold, pred, rows, gold_ids = [], [], [], []
    for p, (l12, l21), pr in zip(pairs, decisions, probs):
        for d, (g, y) in enumerate(((p.label_12, l12), (p.label_21, l21))):
            if g is None:
                continue
            gold.append(g)
            pred.append(y)
            rows.append(pr[d])
            gold_ids.append(rel2id.get(g, -1))  # -1: a gold relation the model does not know
    return decisions, gold, pred, np.array(rows).reshape(len(rows), len(names)), gold_ids


def score(
    pairs: Sequence[PairInstance],
    probs: np.ndarray,
    names: Sequence[str],
    skipped: Sequence[SkippedPair] = (),
    details: bool = False,
) -> dict[str, Any]:
    """All metrics of predictions ``probs`` (N, 2, R) against the pairs' gold labels.

    ``skipped`` records (KBP37/RELX records that could not be encoded) count as
    predicted NA, so the metrics cover the whole test set. ``details`` adds
    ``diagnostics`` (`diagnostics`), which the run report draws.
    """
    decisions, gold, pred, rows, gold_ids = _decisions(pairs, probs, names, skipped)
    metrics: dict[str, Any] = {"pairs": len(pairs), "skipped": len(skipped), "decisions": len(gold)}
    metrics.update(prf_without_na(gold, pred))
    metrics["auc"] = held_out_auc(rows, gold_ids) if len(rows) else 0.0
    relx = [i for i, p in enumerate(pairs) if p.side == "relx"]
    if relx or skipped:
        g = [pairs[i].directed_label() for i in relx]
        g += [directed_label(x.label_12, x.label_21) for x in skipped]
        y = [_directed(*decisions[i]) for i in relx] + [NO_RELATION] * len(skipped)
        metrics["relx_f1"] = relx_f1(g, y)
        metrics["accuracy"] = 100 * float(np.mean([a == b for a, b in zip(g, y)]))
    if details:
        metrics["diagnostics"] = diagnostics(gold, pred, rows, gold_ids)
    return metrics


def _directed(l12: str, l21: str) -> str:
    if l12 != NA:
        return f"{l12}(e1,e2)"
    if l21 != NA:
        return f"{l21}(e2,e1)"
    return NO_RELATION


def evaluate_model(
    model,
    data: RelationData,
    batch_size: int = 32,
    progress: bool = False,
    details: bool = False,
) -> dict[str, Any]:
    """Scores a loaded model on data: ``overall`` and ``per_language`` metrics.

    ``progress`` shows progress (`ProgressBar`); ``details`` adds each
    metrics' ``diagnostics`` (per-relation scores, confusion matrix, PR curve),
    which the run report and ``relbridge evaluate --pr-curve`` draw.
    """
    probs = predict_pairs(model, data.pairs, batch_size, "evaluate" if progress else None)
    marked = [i for i, p in enumerate(data.pairs) if p.side == "relx"]
    probs[marked] = marked_prior(probs[marked], model)
    names = model.inventory.names
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(data.pairs):
        by_lang[p.lang].append(i)
    langs = sorted(set(by_lang) | {x.lang for x in data.skipped})
    result = {
        "overall": score(data.pairs, probs, names, data.skipped, details),
        "per_language": {
            lang: score(
                [data.pairs[i] for i in by_lang[lang]],
                probs[by_lang[lang]],
                names,
                [x for x in data.skipped if x.lang == lang],
                details,
            )
            for lang in langs
        },
    }
    if data.tags and model.cfg.tagging_weight > 0:  # a model trained without tagging has no tagger
        found = tag_mentions(
            model,
            [t.tokens for t in data.tags],
            batch_size,
            progress="evaluate: tagging" if progress else None,
        )
        result["overall"]["tagging"] = tagging_scores(found, data.tags)
        for lang in {t.lang for t in data.tags} & set(result["per_language"]):
            keep = [i for i, t in enumerate(data.tags) if t.lang == lang]
            result["per_language"][lang]["tagging"] = tagging_scores(
                [found[i] for i in keep], [data.tags[i] for i in keep]
            )
    return result


def evaluate(
    model_dir: str,
    data: str | Sequence[str] | RelationData,
    data_format: str = "auto",
    lang: str | None = None,
    ids: Iterable[str] | None = None,
    batch_size: int = 32,
    details: bool = False,
) -> dict[str, Any]:
    """Loads a saved model and scores it.

    Args:
      model_dir: a directory written by `RelationExtractor.save_pretrained`.
      data: a shard directory/glob, a KBP37/RELX file, a list of them, or instances.
      data_format: ``shards``, ``relx`` or ``auto`` (RELX for ``*.txt`` files).
      lang: language of RELX files (default: from ``_xx.txt``), or the language
        kept from shards.
      ids: keep only these sentence ids (RELX record ids or shard pair ids).
      batch_size: inference batch size.
      details: add ``diagnostics`` to every metrics dict (for the run report).

    Returns:
      ``{"overall": metrics, "per_language": {lang: metrics}, "model": model_dir}``;
      the metrics are described in the module docstring.
    """
    from relbridge.models.extractor import RelationExtractor

    paths: list[str] = []
    if isinstance(data, RelationData):
        instances = data.filter(ids, lang) if ids is not None or lang else data
    else:
        paths = [data] if isinstance(data, str) else list(data)
        instances = RelationData()
        for path in paths:
            instances.extend(read_data(path, data_format, lang=lang, ids=ids))
    if not instances.pairs:
        kept = " with the given ids" if ids is not None else ""
        raise ValueError(f"{' '.join(paths) or 'data'}: no pairs to evaluate{kept}")
    model = RelationExtractor.from_pretrained(model_dir, inference=True)  # float32, as trained
    result = evaluate_model(model, instances, batch_size, progress=True, details=details)
    result["model"] = model_dir
    return result
