"""The objectives of alignment fine-tuning (`relbridge.alignment.finetune`), on padded batches.

`pad_side` pads one side of a batch and marks its content subwords and their
words (`Side`); `bidirectional_softmax` gives ``P_s2t`` and ``P_t2s``;
`word_guide` lifts their confident links to words and back (the guide ``G``);
`self_training_loss` (``so``) and `consistency_loss` (``co``) are the two
objectives the module docstring of `relbridge.alignment.finetune` defines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Side:
    """One side of a padded batch.

    Attributes:
      ids: ``(B, L)`` input ids: special tokens, prefix, subwords, padding.
      attention: ``(B, L)`` 1 on real tokens (special tokens and prefix included).
      content: ``(B, L)`` bool, True on the subwords of the sentence only.
      word_of: ``(B, L)`` word index of each content subword, -1 elsewhere.
    """

    ids: object
    attention: object
    content: object
    word_of: object

    def to(self, device: str) -> Side:
        return Side(*(t.to(device) for t in (self.ids, self.attention, self.content, self.word_of)))


def pad_side(
    tokenized: Sequence[tuple[list[int], Sequence[int]]],
    prefix: Sequence[int],
    suffix: Sequence[int],
    max_length: int,
    pad_id: int,
) -> Side:
    """Builds ``prefix + subwords + suffix`` rows, truncated to ``max_length`` and padded.

    A subword of word -1 (context only, `alignment.embed.tokenize_words`) is
    in the input but not in ``content``.
    """
    import torch

    room = max_length - len(prefix) - len(suffix)
    rows = [(ids[:room], words[:room]) for ids, words in tokenized]
    width = len(prefix) + len(suffix) + max(len(ids) for ids, _ in rows)
    b = len(rows)
    ids_t = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    content = torch.zeros((b, width), dtype=torch.bool)
    word_of = torch.full((b, width), -1, dtype=torch.long)
    start = len(prefix)
    for r, (ids, words) in enumerate(rows):
        full = list(prefix) + ids + list(suffix)
        ids_t[r, : len(full)] = torch.tensor(full, dtype=torch.long)
        attention[r, : len(full)] = 1
        words_t = torch.as_tensor(words, dtype=torch.long)
        content[r, start : start + len(ids)] = words_t >= 0
        word_of[r, start : start + len(ids)] = words_t
    return Side(ids_t, attention, content, word_of)


def bidirectional_softmax(hs, ht, src_content, tgt_content):
    """Softmax of the dot products in both directions, over content subwords only.

    Args:
      hs: ``(B, S, H)`` source vectors; ht: ``(B, T, H)`` target vectors.
      src_content, tgt_content: ``(B, S)`` / ``(B, T)`` bool masks.

    Returns:
      ``(p_s2t, p_t2s)``, both ``(B, S, T)`` float32: each source subword's
      distribution over target subwords (rows sum to 1) and each target
      subword's distribution over source subwords (columns sum to 1). Entries
      outside the content of either side are 0.
    """
    import torch

    scores = torch.einsum("bsh,bth->bst", hs.float(), ht.float())  # (B, S, T)
    valid = src_content[:, :, None] & tgt_content[:, None, :]  # (B, S, T)
    scores = scores.masked_fill(~valid, float("-inf"))
    # a fully masked row (padding) would be all -inf: softmax gives NaN, zeroed below
    p_s2t = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0) * valid
    p_t2s = torch.nan_to_num(torch.softmax(scores, dim=-2), nan=0.0) * valid
    return p_s2t, p_t2s


def word_guide(p_s2t, p_t2s, threshold: float, src: Side, tgt: Side):
    """Self-training targets: subword links lifted to words and spread back to subwords.

    A subword pair is a link when both directions exceed ``threshold``
    (awesome-align's softmax extraction); two words are linked when any of their
    subwords are; every subword pair of two linked words gets target 1.

    Returns:
      ``(B, S, T)`` float32 0/1 guide, without gradient.
    """
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        links = ((p_s2t > threshold) & (p_t2s > threshold)).float()  # (B, S, T)
        n_words = int(max(src.word_of.max(), tgt.word_of.max())) + 1
        # (B, S, Ws) and (B, T, Wt): one-hot word membership of content subwords
        ms = F.one_hot(src.word_of.clamp(min=0), n_words).float() * src.content[..., None]
        mt = F.one_hot(tgt.word_of.clamp(min=0), n_words).float() * tgt.content[..., None]
        word_links = (ms.transpose(1, 2) @ links @ mt > 0).float()  # (B, Ws, Wt)
        return (ms @ word_links @ mt.transpose(1, 2) > 0).float()  # (B, S, T)


def self_training_loss(p_s2t, p_t2s, guide, src_len, tgt_len):
    """awesome-align's SO loss: ``-mean_b(sum(P_s2t G)/S + sum(P_t2s G)/T)``.

    Args:
      p_s2t, p_t2s, guide: ``(B, S, T)``.
      src_len, tgt_len: ``(B,)`` content subwords per side.
    """
    fwd = (p_s2t * guide).sum(dim=(1, 2)) / src_len
    rev = (p_t2s * guide).sum(dim=(1, 2)) / tgt_len
    return -(fwd + rev).mean()


def consistency_loss(p_s2t, p_t2s, src_len, tgt_len):
    """awesome-align's CO loss: ``-mean_b(trace(P_s2t P_t2s^T) / min(S, T))``."""
    import torch

    trace = (p_s2t * p_t2s).sum(dim=(1, 2))
    return -(trace / torch.minimum(src_len, tgt_len)).mean()


# ---------------------------------------------------------------------------
# Training
