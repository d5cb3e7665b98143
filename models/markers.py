"""Entity markers in the input: inline windowing, and levitated markers that let many
candidate pairs be scored in one encoder pass per sentence.

`fit_inline` windows a sentence with inline markers (``[E1] Obama [/E1] ...``) to
the encoder's budget; the rest of this module is about levitated markers.

With *inline* markers (``[E1] Obama [/E1] was born in [E2] Hawaii [/E2]``) every
pair of mentions needs an encoder pass of its own: a sentence with 20 mentions
costs 190 passes. With *levitated* markers (PURE's batched approximation, Zhong &
Chen 2021; PL-Marker, Ye et al. 2022) the text is encoded once and each pair's
four markers are appended after it:

* a marker shares its **position id** with the span boundary it marks: an opening
  marker the first subword of the span, a closing marker its last;
* the **attention** is restricted: text tokens attend only to text tokens, so the
  text is encoded exactly as without markers (the tagging head can read the same
  pass), and a pair's markers attend to the text and to their own three partners,
  never to another pair's.

A pair's representation is the hidden state of its two opening markers, as with
inline markers (entity-start pooling), so the relation head is unchanged. Since
pairs cannot see each other, one pair in its own pass and the same pair packed
with 60 others give the same logits: the *exact* path (one pass per pair) checks
the packed *fast* path, and training encodes one pair per input in this same form.

`Encoded.groups` carries the attention structure: 0 for text, ``k >= 1`` for the
markers of the k-th pair of the input, -1 for padding; `attention_bias` turns it
into the additive (B, 1, T, T) mask that Hugging Face encoders accept as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Span = tuple[int, int]


@dataclass(frozen=True)
class PairSpec:
    """A candidate pair of word spans ``[start, end)`` with their entity types."""

    e1: Span
    e2: Span
    e1_type: str = ""
    e2_type: str = ""


@dataclass(frozen=True)
class TextLayout:
    """A tokenized sentence: ids (with specials), positions, and each word's subword range."""

    input_ids: list[int]
    first: list[int]  # per word: index of its first subword in input_ids (-1: no subword)
    last: list[int]  # per word: index of its last subword


INLINE_KWARGS = {"is_split_into_words": True, "add_special_tokens": True, "truncation": False}


def pair_marker_ids(model, pair: PairSpec) -> tuple[int, int, int, int]:
    """The token ids of a pair's (open E1, close E1, open E2, close E2) markers in ``model``
    (a `RelationExtractor`: typed markers take each entity's type)."""
    (open1, close1), (open2, close2) = (
        model._markers("E1", pair.e1_type), model._markers("E2", pair.e2_type)
    )  # fmt: skip
    return tuple(model.marker_ids[m] for m in (open1, close1, open2, close2))


def fit_inline(
    tokenizer, words: list[str], max_len: int, lo: int, hi: int, gap: tuple[int, int] | None = None
) -> list[int]:
    """Token ids of ``words``, windowed to ``max_len`` around marked words [lo, hi).

    When the two entities lie further apart than ``max_len`` allows, the
    middle of the ``gap`` between them (word indices ``[a, b)``) is dropped,
    keeping the words next to each entity, rather than failing the sentence.
    """
    enc = tokenizer(words, **INLINE_KWARGS)
    ids = enc["input_ids"]
    if len(ids) <= max_len:
        return ids
    # Subword count per word; then grow a window from [lo, hi) outwards.
    counts = [0] * len(words)
    for w in enc.word_ids():
        if w is not None:
            counts[w] += 1
    budget = max_len - (len(ids) - sum(counts))
    start, end = lo, min(hi, len(words))
    used = sum(counts[start:end])
    if used > budget and gap is not None and gap[0] < gap[1]:
        a, b = gap
        keep_left = keep_right = 0  # words kept right after entity one / before entity two
        room = budget - (used - sum(counts[a:b]))
        while a + keep_left < b - keep_right:
            take_left = keep_left <= keep_right
            w = a + keep_left if take_left else b - 1 - keep_right
            if counts[w] > room:
                break
            room -= counts[w]
            keep_left, keep_right = keep_left + take_left, keep_right + (not take_left)
        dropped = (b - keep_right) - (a + keep_left)
        kept = words[: a + keep_left] + words[b - keep_right :]
        return fit_inline(tokenizer, kept, max_len, lo, hi - dropped)
    if used > budget:
        raise ValueError(f"the two entities span {used} subwords, more than max_seq_len allows")
    while True:
        grew = False
        if end < len(words) and used + counts[end] <= budget:
            used += counts[end]
            end += 1
            grew = True
        if start > 0 and used + counts[start - 1] <= budget:
            start -= 1
            used += counts[start]
            grew = True
        if not grew:
            break
    return tokenizer(words[start:end], **INLINE_KWARGS)["input_ids"]


def position_offset(encoder: torch.nn.Module) -> int:
    """The position id of the first token: RoBERTa-style models count from ``padding_idx + 1``."""
    model_type = getattr(getattr(encoder, "config", None), "model_type", "")
    if model_type in ("xlm-roberta", "roberta", "camembert"):
        return int(encoder.config.pad_token_id) + 1
    return 0


def layout(tokenizer, words: Sequence[str]) -> TextLayout:
    """Tokenizes ``words`` once (specials included) and maps each word to its subwords."""
    enc = tokenizer(list(words), is_split_into_words=True, add_special_tokens=True, truncation=False)
    return TextLayout(list(enc["input_ids"]), *subword_bounds(enc.word_ids(), len(words)))


def subword_bounds(word_ids: Sequence[int | None], n_words: int) -> tuple[list[int], list[int]]:
    """Per word, the index of its first and of its last subword (-1: the word has none).

    ``word_ids``: per subword, its word's index (None for specials), as a fast
    tokenizer's ``word_ids()`` gives them.
    """
    first, last = [-1] * n_words, [-1] * n_words
    for i, w in enumerate(word_ids):
        if w is None:
            continue
        if first[w] < 0:
            first[w] = i
        last[w] = i
    return first, last


def window(text: TextLayout, spans: Sequence[Span], budget: int) -> tuple[int, int] | None:
    """A subword window ``[lo, hi)`` of at most ``budget`` tokens covering every span.

    The text keeps its specials only when it fits whole; otherwise the window is
    grown word by word around the spans, alternately right and left. None when the
    spans alone exceed the budget.
    """
    n = len(text.input_ids)
    if n <= budget:
        return 0, n
    starts = [text.first[s] for s, _ in spans]
    ends = [text.last[e - 1] + 1 for _, e in spans]
    if min(starts) < 0 or min(ends) <= 0:
        return None
    lo, hi = min(starts), max(ends)
    if hi - lo > budget:
        return None
    grow_right = True
    while hi - lo < budget and (lo > 0 or hi < n):
        if (grow_right and hi < n) or lo == 0:
            hi += 1
        else:
            lo -= 1
        grow_right = not grow_right
    return lo, hi


def pack(
    text: TextLayout,
    pairs: Sequence[PairSpec],
    marker_ids: Sequence[tuple[int, int, int, int]],
    offset: int,
    budget: int,
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]]] | None:
    """One input: the text (windowed to ``budget``) followed by four markers per pair.

    Args:
        text: the tokenized sentence.
        pairs: the pairs to score in this input.
        marker_ids: per pair, the ids of (open E1, close E1, open E2, close E2).
        offset: the encoder's first position id (see `position_offset`).
        budget: the most text tokens (positions) the encoder takes.

    Returns:
        ``(input_ids, position_ids, groups, [(e1_pos, e2_pos)] per pair)``, or None
        when the pairs' spans do not fit in ``budget`` text tokens.
    """
    win = window(text, [s for p in pairs for s in (p.e1, p.e2)], budget)
    if win is None:
        return None
    lo, hi = win
    ids = text.input_ids[lo:hi]
    positions = [offset + i for i in range(hi - lo)]
    groups = [0] * len(ids)
    starts: list[tuple[int, int]] = []
    for k, (pair, markers) in enumerate(zip(pairs, marker_ids), 1):
        at = []
        for (start, end), (open_id, close_id) in ((pair.e1, markers[:2]), (pair.e2, markers[2:])):
            at.append(len(ids))
            ids += [open_id, close_id]
            positions += [offset + text.first[start] - lo, offset + text.last[end - 1] - lo]
            groups += [k, k]
        starts.append((at[0], at[1]))
    return ids, positions, groups, starts


def attention_bias(groups: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive attention mask of a batch of group ids (B, T): (B, 1, T, T).

    Query i may attend key j when j is text (group 0) or j is a marker of i's own
    pair; padding (group -1) is never attended. Text queries see only text.
    """
    query = groups.unsqueeze(2)  # (B, T, 1)
    key = groups.unsqueeze(1)  # (B, 1, T)
    allowed = (key == 0) | ((key == query) & (query > 0))  # (B, T, T)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=groups.device)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias.unsqueeze(1)
