"""Levitated markers over the tagging pass's cache: the text is encoded once per sentence.

With levitated markers the text never attends to markers (`relbridge.models.markers`), so
every layer's keys and values of the text are the same in the tagging pass and in each
packed input. `text_passes` runs the tagging pass and keeps them (a key/value cache
that the encoder fills as it runs); `score_over_text` then scores the candidate pairs by
a pass over their **marker tokens alone**: each marker's queries attend to the cached text
and to its own pair's three other markers, at the positions of the spans it marks. A
sentence with P pairs costs one text pass, which tagging needs anyway, and 4P marker
tokens, where the packed path (`relbridge.models.scoring`) encodes the text again beside
its markers. The probabilities are those of the packed path, up to float rounding.

The cache holds each sentence's keys and values for every layer (e5-small: about 18 KB
per subword in bf16), so callers pass a chunk of sentences at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from relbridge.models import markers
from relbridge.models.tagging import tagging_batches
from relbridge.runtime.devices import autocast_for


@dataclass
class TextPass:
    """One sentence's tagging pass.

    Attributes:
      text: its subwords (specials included) and each word's first and last subword.
      tag_logits: (T, tags) float32, the tagging head's logits.
      keys, values: per encoder layer, (heads, T, head size): the text's attention keys and values.
    """

    text: markers.TextLayout
    tag_logits: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return len(self.text.input_ids)


def cacheable(model) -> bool:
    """Whether ``model``'s pairs can be scored over its tagging pass's cache.

    That needs levitated markers and an encoder whose self-attention takes a
    key/value cache and whose positions are absolute embeddings (BERT, RoBERTa
    and XLM-R in Hugging Face transformers; e5-small is a BERT).
    """
    config = getattr(model.encoder, "config", None)
    return (
        model.cfg.marker_mode == "levitated"
        and getattr(config, "model_type", "") in ("bert", "roberta", "xlm-roberta")
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
    )


class _Recorded:
    """A key/value cache that records each layer's keys and values as the encoder runs.

    The encoder's self-attention calls ``update`` with a layer's keys and values
    (transformers' `Cache` protocol as BERT-style encoders use it, with
    ``get_seq_length``); this one keeps them and adds nothing in front.
    """

    def __init__(self):
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def update(self, keys, values, layer_idx, *args, **kwargs):
        self.layers.append((keys, values))
        return keys, values


class _Prefixed:
    """A key/value cache of per-layer buffers (B, heads, T + M, size) holding the text's keys
    and values in front: ``update`` writes the markers' behind them, with no concatenation."""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], width: int):
        self.layers, self.width = layers, width

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width

    def update(self, keys, values, layer_idx, *args, **kwargs):
        k, v = self.layers[layer_idx]
        k[:, :, self.width :] = keys
        v[:, :, self.width :] = values
        return k, v


def text_passes(
    model, sentences_words: Sequence[Sequence[str]], batch_size: int = 16, precision: str = "auto"
) -> list[TextPass]:
    """The tagging pass over word-split sentences, with each layer's text keys and values.

    Sentences are batched in order of length; ``precision`` as the pair scorer's
    (`relbridge.runtime.devices.autocast_for`).
    """
    model.eval()
    with torch.inference_mode(), autocast_for(model, precision):
        return _text_passes(model, sentences_words, batch_size)


def _text_passes(model, sentences_words, batch_size) -> list[TextPass]:
    device = next(model.parameters()).device
    out: list[TextPass | None] = [None] * len(sentences_words)
    for chunk, items, batch in tagging_batches(model, sentences_words, batch_size):
        width = batch["input_ids"].size(1)
        positions = model.position_offset + torch.arange(width).expand(len(chunk), width)
        cache = _Recorded()
        hidden = model.encoder(
            inputs_embeds=model.embed(batch["input_ids"].to(device)),
            attention_mask=batch["attention_mask"].to(device),
            position_ids=positions.to(device),
            past_key_values=cache,
        ).last_hidden_state  # (B, T, H)
        logits = model.tag_head(model.tag_norm(hidden)).float().cpu()  # (B, T, tags)
        for b, (i, item) in enumerate(zip(chunk, items)):
            n = len(item.input_ids)
            bounds = markers.subword_bounds(item.word_ids, len(sentences_words[i]))
            out[i] = TextPass(
                markers.TextLayout(item.input_ids, *bounds),
                logits[b, :n],
                tuple(k[b, :, :n] for k, _ in cache.layers),  # (heads, n, size) each
                tuple(v[b, :, :n] for _, v in cache.layers),
            )
    return out  # type: ignore[return-value]


@dataclass
class _Row:
    """One input of the marker pass: up to ``pairs_per_row`` pairs of one sentence, four
    markers each. Eight pairs a row beat 4, 16 and 48 on 200 NTREX sentences (fewer rows
    than with 4, less padding than with more)."""

    sentence: int
    pairs: list[int]  # indices into the sentence's pairs
    ids: list[int]  # marker ids, four per pair
    positions: list[int]


def _rows(model, sentences, passes, cfg) -> list[_Row]:
    rows = []
    for s, ((_, pairs), text) in enumerate(zip(sentences, passes)):
        first, last = text.text.first, text.text.last
        for lo in range(0, len(pairs), cfg.pairs_per_row):
            chunk = list(range(lo, min(lo + cfg.pairs_per_row, len(pairs))))
            ids, positions = [], []
            for k in chunk:
                pair = pairs[k]
                ids += markers.pair_marker_ids(model, pair)
                for start, end in (pair.e1, pair.e2):
                    positions += [first[start], last[end - 1]]
            rows.append(_Row(s, chunk, ids, [model.position_offset + p for p in positions]))
    return rows


def score_over_text(
    model, sentences, passes: Sequence[TextPass], cfg
) -> tuple[list[np.ndarray], int]:
    """Both directions' probabilities of every pair, one (P, 2, R) array per sentence,
    and the number of marker rows they took.

    Args:
      model: a levitated `RelationExtractor` in eval mode (`cacheable`).
      sentences: per sentence, its words and candidate pairs, each sentence
        one that `fits` its text pass.
      passes: the sentences' `text_passes`.
      cfg: a `relbridge.models.scoring.ScoringConfig` (``pairs_per_row``, ``batch_tokens``).
    """
    n_rel = len(model.inventory)
    out = [np.zeros((len(pairs), 2, n_rel), dtype=np.float32) for _, pairs in sentences]
    rows = _rows(model, sentences, passes, cfg)
    rows.sort(key=lambda r: (len(r.ids), len(passes[r.sentence])))
    batch: list[_Row] = []
    widest = 0  # the batch's longest text and markers: what every row pads to
    for row in rows + [None]:
        width = 0 if row is None else len(passes[row.sentence]) + len(row.ids)
        if batch and (row is None or (len(batch) + 1) * max(widest, width) > cfg.batch_tokens):
            _run(model, batch, passes, out)
            batch, widest = [], 0
        if row is not None:
            batch.append(row)
            widest = max(widest, width)
    return out, len(rows)


def _run(model, rows: list[_Row], passes: Sequence[TextPass], out: list[np.ndarray]) -> None:
    device = next(model.parameters()).device
    texts = [passes[r.sentence] for r in rows]
    width_t, width_m = max(len(t) for t in texts), max(len(r.ids) for r in rows)
    heads, _, size = texts[0].keys[0].shape
    layers = []  # text keys and values in front, zeros where padding and markers go
    for layer in range(len(texts[0].keys)):
        keys = texts[0].keys[layer].new_zeros((len(rows), heads, width_t + width_m, size))
        values = torch.zeros_like(keys)
        for b, t in enumerate(texts):
            keys[b, :, : len(t)] = t.keys[layer]
            values[b, :, : len(t)] = t.values[layer]
        layers.append((keys, values))
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width_m), pad, dtype=torch.long)
    positions = torch.full((len(rows), width_m), model.position_offset, dtype=torch.long)
    groups = torch.full((len(rows), width_m), -1, dtype=torch.long)
    text_len = torch.tensor([len(t) for t in texts])
    for b, r in enumerate(rows):
        ids[b, : len(r.ids)] = torch.tensor(r.ids)
        positions[b, : len(r.ids)] = torch.tensor(r.positions)
        groups[b, : len(r.ids)] = torch.arange(len(r.ids)) // 4 + 1
    embeds = model.embed(ids.to(device))  # (B, M, H)
    hidden = model.encoder(
        inputs_embeds=embeds,
        attention_mask=_bias(groups, text_len, width_t, embeds.dtype).to(device),
        position_ids=positions.to(device),
        past_key_values=_Prefixed(layers, width_t),
    ).last_hidden_state  # (B, M, H)
    e1 = [4 * k for r in rows for k in range(len(r.pairs))]  # each pair's open E1, then E2 at +2
    starts = [(e, e + 2) for e in e1]
    scatter_probabilities(model, hidden, starts, rows, out)


def scatter_probabilities(model, hidden: torch.Tensor, starts, items, out: list[np.ndarray]):
    """The relation head's probabilities of the pairs of a batch, written into ``out``.

    Args:
      hidden: (B, T, H) the batch's last hidden states.
      starts: per pair, in the order of ``items``' pairs, its two opening markers' positions.
      items: per row of ``hidden``, its ``sentence`` and the indices of its ``pairs``.
      out: per sentence, its (P, 2, R) probabilities.
    """
    device = hidden.device
    rows = [b for b, item in enumerate(items) for _ in item.pairs]
    reps = model.pair_representations(
        hidden, *(torch.tensor(v, device=device) for v in (*zip(*starts), rows))
    )  # (N, 2, 2H)
    probs = torch.softmax(model.rel_head(reps).float(), dim=-1).cpu().numpy()  # (N, 2, R)
    at = 0
    for item in items:
        out[item.sentence][item.pairs] = probs[at : at + len(item.pairs)]
        at += len(item.pairs)


def _bias(groups: torch.Tensor, text_len: torch.Tensor, width_t: int, dtype) -> torch.Tensor:
    """The additive mask of marker queries over [text keys; marker keys]: (B, 1, M, T + M).

    A marker attends to its row's text (not its padding) and to its own pair's markers.
    """
    text = torch.arange(width_t).unsqueeze(0) < text_len.unsqueeze(1)  # (B, T)
    own = (groups.unsqueeze(2) == groups.unsqueeze(1)) & (groups.unsqueeze(1) > 0)  # (B, M, M)
    allowed = torch.cat([text.unsqueeze(1).expand(-1, groups.size(1), -1), own], dim=2)
    bias = torch.zeros(allowed.shape, dtype=dtype)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias.unsqueeze(1)


def fits(model, text: TextPass, pairs: Sequence) -> bool:
    """Whether the text pass holds the whole sentence within the packed path's budget, and
    every span boundary of ``pairs`` has a subword to put its marker at."""
    first, last = text.text.first, text.text.last
    return len(text) <= model.max_len - 4 and all(
        first[start] >= 0 and last[end - 1] >= 0 for p in pairs for start, end in (p.e1, p.e2)
    )

