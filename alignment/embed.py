"""Batched subword embeddings of pre-tokenised sentences.

`SentenceEmbedder` tokenises many word lists at once (a fast tokenizer with
``is_split_into_words``), cuts sentences longer than the encoder window into
overlapping windows, sorts all windows by length and embeds them in batches of
at most ``max_tokens`` padded subwords, then stitches each sentence back
together: every subword keeps the vector from the window in which it sits
farthest from an edge. Nothing is truncated.

Batches are cut where padding would cost more than another forward pass
(`plan_batches`): one batch padded to its longest sentence can double the work
on a corpus of mixed lengths, while each extra forward pass costs about what a
few dozen tokens do on CPU (the weights are streamed from memory once per pass).

With ``skip_markers``, a sentencepiece piece that is only the word-start
marker (XLM-R's lone ``"▁"``) is embedded as context but not aligned, unless
it is all its word has. Word-by-word tokenisation puts one before every word
whose first characters have no ``"▁"``-joined piece: before nearly every
Chinese or Japanese word (13 of the 32 pieces of a 14-word zh sentence), and
before many digits and brackets. These pieces mean only "a word starts here",
look alike in every sentence, and still take part in argmax as if they were
the word.

Only the layers up to the deepest one asked for are run (the rest of the
encoder is dropped at load time when the model keeps its layers in
``encoder.layer``), so layer 6 of a 12-layer encoder costs half a forward pass.

    emb = SentenceEmbedder(model_dir, layers=(6,))
    sents = emb.embed([["a", "house"], ["ein", "Haus"]])  # list[EmbeddedSentence]
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from relbridge.runtime.devices import bound_native_caches, resolve_device, resolve_dtype
from relbridge.runtime.loading import load_encoder

logger = logging.getLogger(__name__)

# Model types whose position ids start after the padding index (RoBERTa family).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


@dataclass(frozen=True)
class EmbeddedSentence:
    """Subword vectors of one sentence.

    Attributes:
      vectors: ``(T, H)`` float32, one row per subword (no special tokens).
      word_of: ``(T,)`` int, the word index of each subword. A word that yields
        no subwords (e.g. U+3000 under NFKC) does not occur here.
    """

    vectors: np.ndarray
    word_of: np.ndarray


MARKER_CHARS = frozenset("\u2581\u0120")
"""Word-start markers of sentencepiece (``▁``) and byte-level BPE (``Ġ``)."""


def marker_ids(tokenizer) -> frozenset[int]:
    """Ids of the vocabulary's pieces that are nothing but word-start markers."""
    special = set(tokenizer.all_special_ids)
    return frozenset(
        i
        for piece, i in tokenizer.get_vocab().items()
        if piece and set(piece) <= MARKER_CHARS and i not in special
    )


def context_only_markers(
    ids: Sequence[int], word_of: np.ndarray, markers: frozenset[int]
) -> np.ndarray:
    """``word_of`` with -1 for marker pieces whose word has another piece.

    Such pieces stay in the encoder input (the model was trained with them)
    but are not aligned; a word made of a marker alone keeps it.
    """
    is_marker = np.array([i in markers for i in ids], dtype=bool)
    if not is_marker.any():
        return word_of
    real = np.bincount(word_of[~is_marker], minlength=int(word_of.max()) + 1)
    drop = is_marker & (real[word_of] > 0)
    return np.where(drop, -1, word_of)


def aligned_pieces(vectors: np.ndarray, word_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` and ``word_of`` without the context-only pieces (word -1).

    Unchanged, and not copied, when there are none: the usual case.
    """
    keep = word_of >= 0
    return (vectors, word_of) if keep.all() else (vectors[keep], word_of[keep])


def tokenize_words(
    tokenizer, sentences: Sequence[Sequence[str]], markers: frozenset[int] = frozenset()
) -> list[tuple[list[int], np.ndarray]]:
    """Subword ids (no special tokens) and word index per subword, for each sentence.

    The word index is -1 for a piece in ``markers`` that is embedded as
    context only (`context_only_markers`).
    """
    enc = tokenizer(
        [list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False
    )
    out = []
    for k in range(len(sentences)):
        kept = [(i, w) for i, w in zip(enc["input_ids"][k], enc.word_ids(k)) if w is not None]
        ids = [i for i, _ in kept]
        word_of = np.array([w for _, w in kept], dtype=np.int64)
        if markers:
            word_of = context_only_markers(ids, word_of, markers)
        out.append((ids, word_of))
    return out


def window_starts(length: int, content: int, overlap: int) -> list[int]:
    """Start offsets of windows of ``content`` subwords covering ``length`` subwords.

    Consecutive windows overlap by at least ``overlap``; the last window ends at
    ``length``. One window when the sentence fits.
    """
    if length <= content:
        return [0]
    stride = max(1, content - overlap)
    starts = list(range(0, length - content, stride))
    starts.append(length - content)
    return starts


def stitch_windows(
    starts: Sequence[int], content: int, length: int, windows: Sequence[np.ndarray]
) -> np.ndarray:
    """Joins window outputs: each position takes the window where it is most central.

    Args:
      starts: window start offsets (`window_starts`).
      content: window size in subwords.
      length: sentence length in subwords.
      windows: per window, ``(w, H)`` vectors with ``w = min(content, length - start)``.

    Returns:
      ``(length, H)`` vectors.
    """
    if len(windows) == 1:
        return windows[0]
    pos = np.arange(length)
    best = np.full(length, -1)
    choice = np.zeros(length, dtype=int)
    for k, s in enumerate(starts):
        inside = (pos >= s) & (pos < s + content)
        margin = np.minimum(pos - s, s + content - 1 - pos)
        better = inside & (margin > best)
        best[better] = margin[better]
        choice[better] = k
    out = np.empty((length, windows[0].shape[1]), dtype=windows[0].dtype)
    for k, s in enumerate(starts):
        idx = np.nonzero(choice == k)[0]
        out[idx] = windows[k][idx - s]
    return out


def plan_batches(lengths: Sequence[int], max_tokens: int, overhead: int) -> list[tuple[int, int]]:
    """Cuts length-sorted sequences into batches that minimise padded work.

    A batch ``[i, j)`` is padded to its longest member ``lengths[i]`` and costs
    ``(j - i) * lengths[i] + overhead`` token-equivalents; the partition of least
    total cost is found by dynamic programming, with no batch above
    ``max_tokens`` padded tokens unless it holds a single sequence.

    Args:
      lengths: sequence lengths, sorted longest first.
      max_tokens: upper bound on ``rows * width`` per batch.
      overhead: fixed cost of one forward pass, in tokens.

    Returns:
      ``(start, end)`` index ranges covering ``lengths`` in order.
    """
    n = len(lengths)
    if any(a < b for a, b in itertools.pairwise(lengths)):
        raise ValueError("lengths must be sorted longest first")
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            rows = j - i
            if rows > 1 and rows * lengths[i] > max_tokens:
                break  # lengths[i] only grows as i falls
            cost = best[i] + rows * lengths[i] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    spans = []
    j = n
    while j > 0:
        spans.append((cut[j], j))
        j = cut[j]
    return spans[::-1]


class SentenceEmbedder:
    """Loads a Hugging Face encoder and embeds word lists in batches.

    Args:
      model_dir: a local Hugging Face directory (tokenizer + model).
      layers: hidden-state indices to average (0 = embeddings, k = after layer k).
      max_length: window size in subwords including special tokens; ``None``
        uses the encoder's limit (512 for e5/XLM-R).
      window_overlap: subwords shared by consecutive windows (capped at half a window).
      max_tokens: padded subwords per forward pass (batch size x longest window).
      batch_overhead: cost of one forward pass in tokens, traded against
        padding by `plan_batches`; ``None`` = 64 on CPU (measured: a pass of
        the 6-layer e5-small costs ~10 ms plus ~0.18 ms per token on 2 cores),
        1,024 on CUDA (launch-bound; not measured).
      device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
      dtype: ``"auto"`` (bfloat16 on CUDA and on CPUs with native bf16, else
        float32; see `relbridge.runtime.devices`), ``"float32"``,
        ``"bfloat16"`` or ``"float16"``.
      text_prefix: text put before every sentence (after the special tokens)
        and left out of the output, e.g. ``"passage: "`` for e5 models.
      compile: wrap the encoder in ``torch.compile(dynamic=True)`` (see
        `AlignConfig.compile` for when it pays).
      skip_markers: give lone word-start marker pieces the word index -1
        (embedded, not aligned; see the module docstring).
    """

    def __init__(
        self,
        model_dir: str,
        layers: Sequence[int],
        max_length: int | None = None,
        window_overlap: int = 64,
        max_tokens: int = 4096,
        batch_overhead: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        text_prefix: str = "",
        compile: bool = False,
        skip_markers: bool = False,
    ):
        from transformers import AutoTokenizer

        bound_native_caches()  # before the first matmul: memory flat in the corpus
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.layers = tuple(layers)
        self.max_tokens = max_tokens
        if batch_overhead is None:
            batch_overhead = 64 if self.device == "cpu" else 1024
        self.batch_overhead = batch_overhead
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{model_dir}: a fast tokenizer is needed for word ids")
        model = load_encoder(model_dir, self.dtype, inference=True)  # bf16: streamed
        n_layers = model.config.num_hidden_layers
        if max(self.layers) > n_layers or min(self.layers) < 0:
            raise ValueError(
                f"layers {self.layers} out of range: {model_dir} has {n_layers} layers"
            )
        self._truncate(model, max(self.layers))
        self.model = model.to(self.device).eval()
        if compile:
            import torch

            # dynamic: batch shapes vary with every plan; compiled on the first call
            self.model = torch.compile(self.model, dynamic=True)

        limit = (
            self.tokenizer.model_max_length if self.tokenizer.model_max_length < 100_000 else 10**9
        )
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions:
            offset = (
                model.config.pad_token_id + 1 if model.config.model_type in _OFFSET_POSITIONS else 0
            )
            limit = min(limit, positions - offset)
        if max_length is not None:
            limit = min(limit, max_length)
        self.markers = marker_ids(self.tokenizer) if skip_markers else frozenset()
        self.prefix, self.suffix = self._special_tokens(self.tokenizer)
        if text_prefix:  # e.g. e5's "passage: ", embedded with every window, never aligned
            self.prefix += self.tokenizer(text_prefix, add_special_tokens=False)["input_ids"]
        self.content = limit - len(self.prefix) - len(self.suffix)
        if self.content < 2:
            raise ValueError(f"window of {limit} subwords leaves no room for text")
        self.overlap = min(window_overlap, self.content // 2)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        logger.info(
            "encoder %s: layers %s, window %d subwords, %s on %s",
            model_dir,
            self.layers,
            limit,
            self.dtype,
            self.device,
        )

    @staticmethod
    def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
        """Special token ids the tokenizer puts before and after a single sentence."""
        enc = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
        word_ids = enc.word_ids(0)
        first = word_ids.index(0)
        last = len(word_ids) - 1 - word_ids[::-1].index(0)
        return enc["input_ids"][:first], enc["input_ids"][last + 1 :]

    @staticmethod
    def _truncate(model, top: int) -> None:
        """Drops encoder layers above ``top`` (when kept in ``encoder.layer``) and the pooler."""
        import torch

        layer_list = getattr(getattr(model, "encoder", None), "layer", None)
        if isinstance(layer_list, torch.nn.ModuleList) and top < len(layer_list):
            model.encoder.layer = layer_list[:top]
            model.config.num_hidden_layers = top
        if isinstance(getattr(model, "pooler", None), torch.nn.Module):
            model.pooler = None  # BERT-style models skip a missing pooler; its output is unused

    def tokenize(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[int], np.ndarray]]:
        """`tokenize_words` with this embedder's tokenizer and markers."""
        return tokenize_words(self.tokenizer, sentences, self.markers)

    def embed_ids(self, id_lists: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """``(T_k, H)`` float32 vectors for each subword id list (windows as needed)."""
        import torch

        # (sentence, start, ids) for every window of every sentence
        pieces = []
        plans = []
        for k, ids in enumerate(id_lists):
            starts = window_starts(len(ids), self.content, self.overlap)
            plans.append(starts)
            for s in starts:
                pieces.append(
                    (k, s, list(self.prefix) + list(ids[s : s + self.content]) + list(self.suffix))
                )
        order = sorted(range(len(pieces)), key=lambda p: -len(pieces[p][2]))
        outputs: list[np.ndarray | None] = [None] * len(pieces)
        n_pre, n_suf = len(self.prefix), len(self.suffix)

        def run(batch: list[int]) -> None:
            width = len(pieces[batch[0]][2])
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, p in enumerate(batch):
                ids = pieces[p][2]
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            with torch.inference_mode():
                out = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    output_hidden_states=True,
                )
                hidden = out.hidden_states
                h = hidden[self.layers[0]]  # (B, W, H)
                for layer in self.layers[1:]:
                    h = h + hidden[layer]
                h = (h.float() / len(self.layers)).cpu().numpy()
            for row, p in enumerate(batch):
                n = len(pieces[p][2]) - n_pre - n_suf
                outputs[p] = h[row, n_pre : n_pre + n]

        widths = [len(pieces[p][2]) for p in order]
        for i, j in plan_batches(widths, self.max_tokens, self.batch_overhead):
            run(order[i:j])

        result = []
        by_sentence: list[list[np.ndarray]] = [[] for _ in id_lists]
        for p, (k, _, _) in enumerate(pieces):
            by_sentence[k].append(outputs[p])
        for k, ids in enumerate(id_lists):
            result.append(stitch_windows(plans[k], self.content, len(ids), by_sentence[k]))
        return result

    def embed(self, sentences: Sequence[Sequence[str]]) -> list[EmbeddedSentence]:
        """Embeds word lists; see `EmbeddedSentence` (context-only pieces left out)."""
        tokenized = self.tokenize(sentences)
        vectors = self.embed_ids([ids for ids, _ in tokenized])
        return [EmbeddedSentence(*aligned_pieces(v, w)) for v, (_, w) in zip(vectors, tokenized)]
