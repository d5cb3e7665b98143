"""Length-bucketed batches, shared by the relation trainer and ``finetune-aligner``.

Each batch is padded to its longest input, so batches of similar lengths save
work; sorting a whole epoch by length would make every batch alike and the
order predictable, so only blocks of ``block_batches`` batches are sorted,
and the batches are shuffled afterwards.

    batches = length_bucketed_batches(range(len(lengths)), lengths, 8, random.Random(0))
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence


def length_bucketed_batches(
    indices: Iterable[int],
    lengths: Sequence[int],
    batch_size: int,
    rng: random.Random,
    block_batches: int = 32,
) -> list[list[int]]:
    """One epoch of index batches of similar length, in an order ``rng`` fixes.

    The indices are shuffled, cut into blocks of ``block_batches`` batches,
    sorted by ``lengths`` inside each block and batched; then the batches are
    shuffled. Every index appears once; blocks are whole batches, so only the
    last batch of the last block may be smaller.
    """
    order = list(indices)
    rng.shuffle(order)
    span = batch_size * block_batches
    batches = []
    for start in range(0, len(order), span):
        block = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [block[j : j + batch_size] for j in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    return batches
