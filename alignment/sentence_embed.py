"""Sentence embeddings of whole documents for the sentence aligner.

The encoder is the word aligner's: the model resolved by
`relbridge.runtime.encoders.resolve_model` (the bundled multilingual-e5-small
by default), loaded by `alignment.embed.SentenceEmbedder`, which batches
length-sorted inputs, windows inputs longer than the encoder and picks bfloat16
where the device multiplies it natively. A sentence's vector is the mean of its
last-layer subword vectors (e5's pooling; the ``passage: `` prefix is embedded
as context, as e5 was trained, but not pooled), normalised.

With ``blocks`` (the default), the joined text of every run of ``k = 2..max_side``
consecutive sentences is embedded too, as Vecalign's and Bertalign's overlaps
are: a sentence split in two on one side matches the embedding of the two halves
read together better than the sum of their separate embeddings. It costs about
``1 + 2 + ... + max_side`` times the tokens of the sentences alone.

    encoder = DocumentEncoder(SentenceEmbedConfig())        # once per process
    docs = encoder.embed_documents([["Ein Satz.", "Noch einer."], ["Une phrase."]], max_side=3)
    docs[0].vectors.shape  # (2, 384)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from relbridge.runtime.devices import DTYPE_NAMES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentenceEmbedConfig:
    """How sentences are embedded.

    Attributes:
      model: encoder name or local directory (`resolve_model`); ``None`` = the
        bundled multilingual-e5-small.
      text_prefix: put before every input; ``"passage: "`` is e5's recipe for text
        to be compared symmetrically.
      blocks: also embed runs of consecutive sentences (see the module doc).
      max_tokens: padded subwords per forward pass.
      device: ``auto``, ``cpu``, ``cuda``...
      dtype: ``auto`` (bfloat16 where native, else float32), or a dtype name.
    """

    model: str | None = None
    text_prefix: str = "passage: "
    blocks: bool = True
    max_tokens: int = 8192
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self):
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}")
        if self.max_tokens < 16:
            raise ValueError(f"max_tokens must be >= 16, got {self.max_tokens}")


@dataclass(frozen=True)
class DocumentVectors:
    """One document's embeddings, as `align_sentences` takes them.

    Attributes:
      vectors: ``(n, H)`` float32, one normalised row per sentence.
      lengths: ``(n,)`` characters per sentence.
      blocks: ``{k: (n, H)}`` for ``k = 1..max_side``, row ``e`` the joined
        sentences ``e - k + 1 .. e`` (zeros where ``e < k - 1``); ``None`` when
        the blocks are left to `block_vectors`.
    """

    vectors: np.ndarray
    lengths: np.ndarray
    blocks: dict[int, np.ndarray] | None = None


def joined(sentences: Sequence[str], end: int, size: int) -> str:
    """The text of sentences ``end - size + 1 .. end`` joined by a space."""
    return " ".join(sentences[end - size + 1 : end + 1])


class DocumentEncoder:
    """Embeds documents' sentences (and their runs) with the shared encoder.

    Args:
      cfg: settings; the model loads here, so build it in ``DoFn.setup``.
    """

    def __init__(self, cfg: SentenceEmbedConfig = SentenceEmbedConfig()):
        from transformers import AutoConfig

        from relbridge.alignment.embed import SentenceEmbedder
        from relbridge.runtime.encoders import resolve_model

        self.cfg = cfg
        path = resolve_model(cfg.model)
        layers = AutoConfig.from_pretrained(path).num_hidden_layers
        self.embedder = SentenceEmbedder(
            path,
            layers=(layers,),
            max_tokens=cfg.max_tokens,
            device=cfg.device,
            dtype=cfg.dtype,
            text_prefix=cfg.text_prefix,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), H)`` normalised mean-pooled vectors (zeros for a text with no subwords)."""
        tokenizer = self.embedder.tokenizer
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        hidden = self.embedder.model.config.hidden_size
        out = np.zeros((len(texts), hidden), np.float32)
        nonempty = [k for k, row in enumerate(ids) if row]
        vectors = self.embedder.embed_ids([ids[k] for k in nonempty])
        for k, vecs in zip(nonempty, vectors):
            mean = vecs.mean(0)
            out[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out

    def embed_documents(
        self, documents: Sequence[Sequence[str]], max_side: int
    ) -> list[DocumentVectors]:
        """Embeds every document's sentences (and runs up to ``max_side``) in one batch.

        Texts are deduplicated across documents, so repeated lines cost once.
        """
        sizes = range(1, (max_side if self.cfg.blocks else 1) + 1)
        index: dict[str, int] = {}
        for sents in documents:
            for k in sizes:
                for e in range(k - 1, len(sents)):
                    index.setdefault(joined(sents, e, k), len(index))
        table = self.encode(list(index))
        hidden = table.shape[1]
        out = []
        for sents in documents:
            blocks = {}
            for k in sizes:
                rows = np.zeros((len(sents), hidden), np.float32)
                for e in range(k - 1, len(sents)):
                    rows[e] = table[index[joined(sents, e, k)]]
                blocks[k] = rows
            lengths = np.array([len(s) for s in sents], np.float64)
            out.append(DocumentVectors(blocks[1], lengths, blocks if self.cfg.blocks else None))
        return out
