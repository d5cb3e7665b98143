"""Relation probabilities for many candidate pairs: the fast (packed) and exact paths.

* **fast** (default for models trained with levitated markers): each sentence is
  tokenized once and its pairs are packed, up to ``pairs_per_pass`` at a time, as
  levitated markers behind one copy of the text (`relbridge.models.markers`), so a
  sentence costs one encoder pass however many pairs it has. Inputs are sorted
  by length and batched up to ``batch_tokens`` tokens (attention is quadratic in
  the input length, so a token budget, not a count, keeps batches even).
* **over the tagging pass** (the default where `relbridge.models.prefix.cacheable`):
  as the packed path, but the text is not encoded again: the tagging pass kept every
  layer's keys and values of the text, and a pass over the pairs' marker tokens alone
  attends to them (`relbridge.models.prefix`), ``pairs_per_row`` pairs a row.
* **exact**: every pair in its own encoder pass, in the input form the model was
  trained on (`RelationExtractor.encode_pair`): the reference the fast path is
  checked against, and the only path for models trained with inline markers.

Both run under ``torch.inference_mode`` and, on CPUs with native bf16 and on
CUDA, bf16 autocast (``precision="auto"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from relbridge.runtime.devices import (
    PRECISIONS, autocast_for, bound_native_caches, computes_in_bf16, wants_bf16,
)  # fmt: skip
from relbridge.models import markers, prefix
from relbridge.models.data import PairInstance
from relbridge.models.evaluate import predict_pairs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringConfig:
    """How pairs are scored (see the module docstring)."""

    exact: bool = False
    pairs_per_pass: int = 48
    pairs_per_row: int = 8
    batch_tokens: int = 4096
    precision: str = "auto"  # auto | fp32 | bf16

    def __post_init__(self):
        if self.pairs_per_pass < 1 or self.pairs_per_row < 1 or self.batch_tokens < 16:
            raise ValueError("pairs_per_pass and pairs_per_row must be >= 1, batch_tokens >= 16")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")


def for_inference(model, precision: str = "auto"):
    """``model`` in eval mode, its encoder's weights stored in bf16 where it computes in bf16.

    Under bf16 autocast every matmul already reads bf16 copies of the weights, so
    storing them so changes only the rounding of the embeddings, LayerNorm
    parameters and biases. It halves the encoder's memory (e5-small: 235 MB less)
    and saves the casts: on 300 NTREX sentences (2 EPYC cores) peak RSS 1,537
    against 1,752 MB and 41 against 50 s. The heads stay float32. Every inference
    path (tagging, pair scoring, marked pairs) then runs under `autocast_for`,
    which a bf16 encoder always enables.
    """
    bound_native_caches()
    if computes_in_bf16(model, precision):
        model.encoder.to(torch.bfloat16)
    return model.eval()


def load_for_inference(model_dir: str, precision: str = "auto", device: str = "cpu"):
    """`RelationExtractor.from_pretrained` on ``device``, then `for_inference`.

    Where the encoder will compute in bf16, its weights are read from disk straight
    into bf16 (`relbridge.runtime.loading.load_encoder`), so no float32 copy is ever
    held: e5-small loads at a peak RSS of about 920 MB against 1,369.
    """
    from relbridge.models.extractor import RelationExtractor

    dtype = torch.bfloat16 if wants_bf16(precision, device) else None
    model = RelationExtractor.from_pretrained(model_dir, dtype, inference=True).to(device)
    return for_inference(model, precision)


@dataclass
class _Input:
    sentence: int
    pairs: list[int]  # indices into the sentence's pair list
    ids: list[int]
    positions: list[int]
    groups: list[int]
    starts: list[tuple[int, int]]


def score_pairs(
    model,
    sentences: Sequence[tuple[Sequence[str], Sequence[markers.PairSpec]]],
    cfg: ScoringConfig = ScoringConfig(),
    passes: Sequence[prefix.TextPass] | None = None,
) -> tuple[list[np.ndarray], int]:
    """Probabilities of both directions of every pair: one (P, 2, R) array per sentence.

    Args:
        model: a `RelationExtractor` in eval mode.
        sentences: per sentence, its words and its candidate pairs.
        cfg: the path and batching.
        passes: the sentences' tagging passes (`relbridge.models.prefix.text_passes`),
            for a levitated model on the fast path; a sentence too long for one
            packed input, or with a span word that has no subword, is scored by the
            packed path.

    Returns:
        The arrays, and the number of encoder passes they took (a marker row over
        a cached text counts as one).
    """
    model.eval()
    with torch.inference_mode(), autocast_for(model, cfg.precision):
        if cfg.exact or model.cfg.marker_mode != "levitated":
            return _score_exact(model, sentences)
        if passes is None:
            return _score_packed(model, sentences, cfg)
        fits = [prefix.fits(model, p, pairs) for p, (_, pairs) in zip(passes, sentences)]
        cached = [s for s, ok in enumerate(fits) if ok]
        rest = [s for s, ok in enumerate(fits) if not ok]
        out, rows = prefix.score_over_text(
            model, [sentences[s] for s in cached], [passes[s] for s in cached], cfg
        )
        packed, count = _score_packed(model, [sentences[s] for s in rest], cfg)
        merged: list[np.ndarray] = [None] * len(sentences)  # type: ignore[list-item]
        for s, probs in zip(cached + rest, out + packed):
            merged[s] = probs
        return merged, rows + count


def _score_exact(model, sentences) -> tuple[list[np.ndarray], int]:
    flat = [
        PairInstance(str(i), "", tuple(words), p.e1, p.e2, None, None,
                     e1_type=p.e1_type, e2_type=p.e2_type)
        for i, (words, pairs) in enumerate(sentences) for p in pairs
    ]  # fmt: skip
    probs = predict_pairs(model, flat) if flat else np.zeros((0, 2, len(model.inventory)))
    out, at = [], 0
    for _, pairs in sentences:
        out.append(probs[at : at + len(pairs)])
        at += len(pairs)
    return out, len(flat)


def _inputs(model, sentences, cfg: ScoringConfig) -> tuple[list[_Input], list[tuple[int, int]]]:
    """Packed inputs, and the (sentence, pair) that only fit one pair per pass."""
    inputs, single = [], []
    budget = model.max_len - 4
    for s, (words, pairs) in enumerate(sentences):
        if not pairs:
            continue
        text = markers.layout(model.tokenizer, words)
        for lo in range(0, len(pairs), cfg.pairs_per_pass):
            chunk = list(range(lo, min(lo + cfg.pairs_per_pass, len(pairs))))
            specs = [pairs[k] for k in chunk]
            ids = [markers.pair_marker_ids(model, p) for p in specs]
            packed = markers.pack(text, specs, ids, model.position_offset, budget)
            if packed is None or len(text.input_ids) > budget:
                single += [(s, k) for k in chunk]  # windowed per pair, as encode_pair does
            else:
                inputs.append(_Input(s, chunk, *packed))
    return inputs, single


def _score_packed(model, sentences, cfg: ScoringConfig) -> tuple[list[np.ndarray], int]:
    n_rel = len(model.inventory)
    out = [np.zeros((len(pairs), 2, n_rel), dtype=np.float32) for _, pairs in sentences]
    inputs, single = _inputs(model, sentences, cfg)
    device = next(model.parameters()).device
    inputs.sort(key=lambda x: len(x.ids))
    batch: list[_Input] = []
    for item in inputs + [None]:
        if batch and (item is None or len(item.ids) * (len(batch) + 1) > cfg.batch_tokens):
            _run_batch(model, batch, out, device)
            batch = []
        if item is not None:
            batch.append(item)
    if single:
        probs, _ = _score_exact(
            model, [(sentences[s][0], [sentences[s][1][k]]) for s, k in single]
        )
        for (s, k), p in zip(single, probs):
            out[s][k] = p[0]
    return out, len(inputs) + len(single)


def _run_batch(model, batch: list[_Input], out: list[np.ndarray], device) -> None:
    width = max(len(x.ids) for x in batch)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    positions = torch.full((len(batch), width), model.position_offset, dtype=torch.long)
    groups = torch.full((len(batch), width), -1, dtype=torch.long)
    for b, x in enumerate(batch):
        ids[b, : len(x.ids)] = torch.tensor(x.ids)
        positions[b, : len(x.ids)] = torch.tensor(x.positions)
        groups[b, : len(x.ids)] = torch.tensor(x.groups)
    hidden = model.encode(
        {"input_ids": ids.to(device), "position_ids": positions.to(device),
         "groups": groups.to(device)}
    )  # (B, T, H)  # fmt: skip
    prefix.scatter_probabilities(model, hidden, [s for x in batch for s in x.starts], batch, out)
