"""The tagging head at inference: mentions from BIO tags, and how well it finds them.

`tag_mentions(model, sentences)` tags word-split sentences and decodes each into
``(start, end, type)`` word spans ``[start, end)``. It is how `extract` finds the
entities of untagged text, so its quality caps what extraction can find.

Decoding is ``"span"`` for a model with a calibrated span threshold (its
``span_threshold``, read from ``threshold.json`` by
`relbridge.models.extract.load_model`; `relbridge.models.raw_text.calibrate`
chooses it on KBP37 dev), else ``"marginal"``. ``"span"`` (`decode_spans`)
takes each span's posterior probability of being exactly one mention
(`relbridge.models.partial_crf.span_posteriors`; a per-word softmax head counts
as a CRF without transitions) and greedily the likeliest spans that reach the
threshold, none overlapping. A name is scored as a whole, so a head unsure
whether ``Channel`` continues ``Basic Channel`` still prefers the whole name when
its reading is the likelier one, where word-by-word decoding cuts it short.
With the RELX benchmark's model (KBP37 dev, 400 sentences, markers removed)
mention recall went from 65.0 to 67.6 and the raw-text relx_f1 from 35.8 to 39.8
at a threshold of 0.25. The best threshold depends on the model: a weakly
trained tagger spreads its probability over many readings, and on the demo's
model 0.25 found fewer gold arguments than marginal decoding (30% against 34%),
hence a calibrated threshold, and marginal decoding without one.

``"marginal"`` (`decode_tags`) reads the per-word probabilities (the CRF's
posterior marginals, or the softmax): a word belongs to a mention when the head
finds it more likely inside one than outside (its ``B-`` and ``I-``
probabilities of all types together exceed ``O``'s), takes the type with the
most ``B-`` + ``I-`` mass, and continues the mention before it when that has
the same type and ``I-`` is at least as likely as ``B-``. A head trained on
incomplete distant labels spreads a name's second word over ``O``, ``B-`` and
``I-`` (``Hughes`` of ``Billy Hughes``: 0.25 / 0.22 / 0.22), and per-word argmax
(``"argmax"``) then cuts the name short. On the demo's dev shards (307
mentions), marginal decoding raised span F1 from 35.0 to 42.2 (typed F1 32.5 to
36.2), and the held-out RELX sentences' span recall from 21-22% to 34%.

`tagging_scores(found, gold)` measures it against `TagInstance` mentions:

* ``recall`` (typed) and ``span_recall`` (the words only) over every gold mention;
* ``precision``/``f1`` and ``span_precision``/``span_f1`` only over sentences
  whose every mention is annotated (``TagInstance.complete``). RELX/KBP37 mark
  just the two arguments of a sentence, so a found mention missing from their
  gold is not an error, and their sentences count for recall only.

A mention counts when its span is exactly the gold span (and, typed, its type).
Gold mentions without a type (RELX's) count for the span scores only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from relbridge.data_specs.formats import bio_spans
from relbridge.models.data import TagInstance
from relbridge.models.markers import subword_bounds
from relbridge.models.partial_crf import batch_span_posteriors, marginals
from relbridge.runtime.devices import autocast_for
from relbridge.runtime.metrics import prf

Mention = tuple[int, int, str]


class Tagged(NamedTuple):
    """A sentence's mentions with their span probabilities (``with_probability``).

    ``mentions``: ``(start, end, type, posterior probability)``, as decoded.
    ``names[(start, end)]``: the posterior probability that words ``[start, end)``
    are exactly one mention of any type (the typed `span_posteriors` summed over
    types), for every span the head scores. It is how sure the tagger is of a span
    it did not choose, e.g. a KB alias (`relbridge.models.thresholds.span_probabilities`).
    """

    mentions: list[tuple[int, int, str, float]]
    names: dict[tuple[int, int], float]


def other_readings(tagged: Tagged, threshold: float) -> list[tuple[int, int, str, float]]:
    """The spans besides the decoded mentions that are one name with probability >= ``threshold``.

    Decoding keeps no two overlapping spans, so each of these overlaps a decoded
    mention (``North Carolina`` beside ``North`` and ``Carolina``): the other
    readings of a lattice (`relbridge.models.thresholds.READINGS`). They are
    untyped (``""``), with their probability, in word order.

    >>> other_readings(Tagged([(0, 1, "LOC", 0.25), (1, 2, "LOC", 0.21)],
    ...                       {(0, 1): 0.25, (1, 2): 0.21, (0, 2): 0.18, (2, 3): 0.02}), 0.1)
    [(0, 2, '', 0.18)]
    """
    decoded = {(start, end) for start, end, *_ in tagged.mentions}
    return sorted(
        (start, end, "", p)
        for (start, end), p in tagged.names.items()
        if p >= threshold and (start, end) not in decoded
    )


DECODINGS = ("span", "marginal", "argmax")

SPAN_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
"""The span thresholds `relbridge.models.raw_text.calibrate` tries."""


def tag_mentions(
    model,
    sentences_words: Sequence[Sequence[str]],
    batch_size: int = 16,
    decode: str | None = None,
    progress: str | None = None,
    with_probability: bool = False,
    precision: str = "auto",
) -> list[list]:
    """Mentions found by the tagging head in each word-split sentence (tags of first subwords).

    ``decode``: ``"span"``, ``"marginal"`` or ``"argmax"`` (see the module docstring);
    None: ``"span"`` when the model has a ``span_threshold``, else ``"marginal"``.
    ``with_probability``: each sentence is a `Tagged` (``"span"`` decoding only).
    ``progress``: a name to show progress under (`ProgressBar`); None shows none.
    ``precision``: the encoder's (`relbridge.runtime.devices.autocast_for`), as the
    pair scorer's; the CRF itself always runs in float32.

    Sentences are batched in order of length, so that a batch pads little.
    """
    from relbridge.runtime.progress import ProgressBar

    decode, threshold = _decoding(model, decode, with_probability)
    model.eval()
    device = next(model.parameters()).device
    out: list[list] = [[] for _ in sentences_words]
    bar = ProgressBar(len(sentences_words), progress or "", "sentence", enabled=bool(progress))
    with torch.inference_mode(), autocast_for(model, precision):
        for chunk, items, batch in tagging_batches(model, sentences_words, batch_size):
            bar.update(len(chunk))
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch, labels=False)["tag_logits"].float().cpu()  # (B, T, tags)
            firsts = [
                subword_bounds(item.word_ids, len(sentences_words[i]))[0]
                for i, item in zip(chunk, items)
            ]
            found = _decode_rows(model, logits, firsts, decode, threshold, with_probability)
            for i, mentions in zip(chunk, found):
                out[i] = mentions
    bar.close()
    return out


def tagging_batches(model, sentences_words: Sequence[Sequence[str]], batch_size: int):
    """Word-split sentences as tagging inputs, in order of length (a batch pads little).

    Yields ``(indices, encoded inputs, collated batch)``, ``batch_size`` sentences at a time.
    """
    order = sorted(range(len(sentences_words)), key=lambda i: len(sentences_words[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        items = [model.encode_tags(list(sentences_words[i])) for i in chunk]
        yield chunk, items, model.collate(items)


def _decoding(model, decode: str | None, with_probability: bool) -> tuple[str, float | None]:
    """`tag_mentions`' decoding (``decode`` or the model's default) and span threshold."""
    threshold = getattr(model, "span_threshold", None)
    decode = decode or ("span" if threshold is not None else "marginal")
    if decode not in DECODINGS:
        raise ValueError(f"decode must be one of {DECODINGS}, got {decode!r}")
    if with_probability and decode != "span":
        raise ValueError(f"span probabilities need span decoding, not {decode!r}")
    return decode, threshold


def decode_mentions(
    model, logits, firsts, with_probability: bool = False, decode: str | None = None
) -> list[list]:
    """Sentences' mentions from their subword tag logits, as `tag_mentions` finds them.

    For a tagging pass run elsewhere (`relbridge.models.prefix.text_passes`): per
    sentence, ``logits[i]`` (T, tags) and ``firsts[i]``, each word's first subword
    (-1: none; `relbridge.models.markers.subword_bounds`).
    """
    decode, threshold = _decoding(model, decode, with_probability)
    return _decode_rows(model, logits, firsts, decode, threshold, with_probability)


def _decode_rows(model, rows, firsts, decode, threshold, with_probability) -> list:
    """Sentences' mentions from their subword tag logits ``rows[i]`` (T, tags)."""
    tags = model.cfg.tags
    word_logits, seen, unseen = [], [], []
    for row, first in zip(rows, firsts):
        word_logits.append(row[[max(t, 0) for t in first]])
        unseen.append([w for w, t in enumerate(first) if t < 0])
        # words past the maximum length have no logits: outside
        seen.append(len(first) - len(unseen[-1]))
    if decode == "span":
        at = SPAN_THRESHOLDS[0] if threshold is None else threshold
        spans = _span_posteriors(model, [w[:k] for w, k in zip(word_logits, seen)])
        if with_probability:
            return [Tagged(decode_spans(s, at, True), _names(s)) for s in spans]
        return [decode_spans(s, at) for s in spans]
    out = []
    for logits_, missing in zip(word_logits, unseen):
        word_probs = _word_probs(model, logits_)
        word_probs[missing] = torch.nn.functional.one_hot(
            torch.tensor(tags.index("O")), len(tags)
        ).float()
        out.append(decode_tags(word_probs.numpy(), tags, decode))
    return out


def _crf_transitions(model) -> torch.Tensor | None:
    """The tagging head's CRF transition scores on the CPU; None for a per-word softmax head."""
    if not getattr(model.cfg, "tag_crf", False):
        return None
    return model.tag_transitions.detach().float().cpu()


def _word_probs(model, word_logits: torch.Tensor) -> torch.Tensor:
    """Per-word tag probabilities (N, K): the CRF's marginals, or the softmax of a per-word head."""
    transitions = _crf_transitions(model)
    if transitions is None or not len(word_logits):
        return word_logits.softmax(-1)
    mask = torch.ones(1, len(word_logits), dtype=torch.bool)
    return marginals(word_logits.unsqueeze(0), mask, model.cfg.tags, transitions)[0]


def _span_posteriors(model, word_logits: Sequence[torch.Tensor]) -> list[list]:
    """`span_posteriors` of sentences under the head's CRF (a softmax head: no transitions)."""
    tags = model.cfg.tags
    transitions = _crf_transitions(model)
    if transitions is None:
        transitions = torch.zeros(len(tags), len(tags))
    found = [i for i, w in enumerate(word_logits) if len(w)]
    out: list[list] = [[] for _ in word_logits]
    if found:
        spans = batch_span_posteriors([word_logits[i] for i in found], tags, transitions)
        for i, s in zip(found, spans):
            out[i] = s
    return out


def _names(spans: Sequence[tuple[float, int, int, str]]) -> dict[tuple[int, int], float]:
    """`Tagged.names` of a sentence's typed span posteriors."""
    names: dict[tuple[int, int], float] = {}
    for p, start, end, _ in spans:
        names[start, end] = names.get((start, end), 0.0) + p
    return names


def decode_spans(
    spans: Sequence[tuple[float, int, int, str]], threshold: float, with_probability: bool = False
) -> list:
    """The most probable spans that reach ``threshold``, greedily, none overlapping, in word order.

    Greedy order makes the spans kept at a higher threshold exactly those kept at
    a lower one whose probability reaches it (calibration relies on this).

    >>> decode_spans([(0.6, 0, 2, "PER"), (0.3, 0, 1, "PER"), (0.5, 3, 4, "ORG"), (0.1, 5, 6, "PER")], 0.25)
    [(0, 2, 'PER'), (3, 4, 'ORG')]
    """
    taken: list = []
    used: set[int] = set()
    for p, start, end, kind in sorted(spans, key=lambda s: (-s[0], s[1], s[2])):
        if p < threshold:
            break
        if used.isdisjoint(range(start, end)):
            taken.append((start, end, kind, p) if with_probability else (start, end, kind))
            used.update(range(start, end))
    return sorted(taken)


def decode_tags(word_probs, tags: Sequence[str], decode: str = "marginal") -> list[Mention]:
    """Mentions from per-word tag probabilities ``(words, len(tags))``; see the module docstring.

    >>> tags = ("O", "B-PER", "I-PER")
    >>> probs = [[0.06, 0.78, 0.16], [0.34, 0.33, 0.33], [0.95, 0.03, 0.02]]
    >>> decode_tags(probs, tags), decode_tags(probs, tags, "argmax")
    ([(0, 2, 'PER')], [(0, 1, 'PER')])
    """
    if decode == "argmax":
        return bio_spans([tags[max(range(len(tags)), key=lambda k: p[k])] for p in word_probs])
    outside = tags.index("O")
    types = sorted({tag[2:] for tag in tags if tag != "O"})
    index = {tag: k for k, tag in enumerate(tags)}

    def prob(p, tag: str) -> float:
        return float(p[index[tag]]) if tag in index else 0.0

    spans: list[list] = []
    previous = None  # the type of the mention that the previous word belongs to
    for w, p in enumerate(word_probs):
        if float(p[outside]) >= float(sum(p)) - float(p[outside]):  # O at least the rest
            previous = None
            continue
        kind = max(types, key=lambda ty: prob(p, "B-" + ty) + prob(p, "I-" + ty))
        if previous == kind and prob(p, "I-" + kind) >= prob(p, "B-" + kind):
            spans[-1][1] = w + 1
        else:
            spans.append([w, w + 1, kind])
        previous = kind
    return [tuple(span) for span in spans]


def tagging_scores(
    found: Sequence[Sequence[Mention]], gold: Sequence[TagInstance]
) -> dict[str, Any]:
    """Mention-finding scores (percent) of ``found`` against the gold mentions of ``gold``.

    Args:
      found: per sentence, the mentions the model found (`tag_mentions`).
      gold: the sentences, in the same order.

    Returns:
      ``sentences``, ``gold_mentions``, ``found_mentions``, ``span_recall``,
      ``recall`` when some gold mentions are typed and, when some sentences are completely annotated,
      ``precision``, ``f1``, ``span_precision``, ``span_f1`` over those.
    """
    counts = dict.fromkeys(
        ("gold", "typed_gold", "hit", "span_hit", "c_found", "c_gold", "c_hit", "c_span_hit"), 0
    )
    n_found = 0
    for mentions, instance in zip(found, gold, strict=True):
        predicted = set(mentions)
        spans = {(s, e) for s, e, _ in predicted}
        typed = [m for m in instance.mentions if m[2]]
        hit = sum(m in predicted for m in typed)
        span_hit = sum((s, e) in spans for s, e, _ in instance.mentions)
        n_found += len(predicted)
        counts["gold"] += len(instance.mentions)
        counts["typed_gold"] += len(typed)
        counts["hit"] += hit
        counts["span_hit"] += span_hit
        if instance.complete:
            counts["c_found"] += len(predicted)
            counts["c_gold"] += len(instance.mentions)
            counts["c_hit"] += hit
            counts["c_span_hit"] += span_hit
    result: dict[str, Any] = {
        "sentences": len(gold),
        "gold_mentions": counts["gold"],
        "found_mentions": n_found,
        "span_recall": prf(counts["span_hit"], 0, counts["gold"], scale=100.0)[1],
    }
    if counts["typed_gold"]:
        result["recall"] = prf(counts["hit"], 0, counts["typed_gold"], scale=100.0)[1]
    if any(t.complete for t in gold):
        result["precision"], _, result["f1"] = prf(
            counts["c_hit"], counts["c_found"], counts["c_gold"], scale=100.0
        )
        result["span_precision"], _, result["span_f1"] = prf(
            counts["c_span_hit"], counts["c_found"], counts["c_gold"], scale=100.0
        )
    return result
