"""Batched embedding-based word alignment (SimAlign methods, many pairs per forward pass).

`WordAligner` keeps stock simalign's contract: links are ``(src_idx, tgt_idx)``
word pairs, sorted, for the methods argmax / itermax / match (simalign's "mai"
is all three), optionally with distortion. It differs in how it gets there:

- all sentences of a batch are tokenised at once and embedded in length-sorted
  batches (`alignment.embed`), with only the encoder layers that are needed;
- sentences longer than the encoder window are embedded in overlapping windows
  instead of being truncated;
- ``match`` uses ``scipy.optimize.linear_sum_assignment`` instead of networkx;
- an extra method, awesome-align's bidirectional softmax (``softmax``), is
  registered beside simalign's.

Units (``token_type``): ``"word"`` averages subword vectors into word vectors
before matching (one row per word); ``"bpe"`` matches subwords and links two
words when any of their subwords are linked (stock simalign's default).

Pairs that cannot be aligned come back as ``AlignResult(links=None,
error=reason)`` and never raise: an empty side, a side whose words all
tokenise to nothing, or a side longer than ``max_subwords``. A single word that
tokenises to nothing (U+3000 under the e5/XLM-R normaliser, a control
character) does not make the pair fail: it simply gets no links, as in stock
simalign's default subword mode.

    aligner = WordAligner(AlignConfig(method="itermax"))   # in DoFn.setup
    results = aligner.align_batch([(["a", "house"], ["une", "maison"])])
    results[0].links  # ((0, 0), (1, 1))

Statistical links (``AlignConfig.statistical``): eflomal learns from a whole
corpus, so it runs in `WordAligner.align_corpus` (and in the pipeline as a
corpus-level step), never in `align_batch`. Its links replace the neural ones
(``"only"``) or are combined with them by a rule of `alignment.symmetrize`
(``"intersection"``, ``"union"``, ``"grow-diag-final"``, ``"grow-diag-final-and"``,
``"fill"``); `merge_links` applies the rule to one pair.

Configurations can also be named: `aligner_config("simalign.itermax.v1")`
returns a registered preset (see `ALIGNERS`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from relbridge.alignment.embed import aligned_pieces
from relbridge.alignment.methods import (
    METHODS,
    MethodParams,
    PairScores,
    Registry,
    apply_distortion,
    resolve_method,
)
from relbridge.alignment.statistical import EflomalConfig, eflomal_align
from relbridge.alignment.symmetrize import COMBINERS, combine
from relbridge.runtime.devices import DTYPE_NAMES

logger = logging.getLogger(__name__)

Links = tuple[tuple[int, int], ...]
TOKEN_TYPES = ("word", "bpe")
STATISTICAL = ("off", "only", *COMBINERS)
"""How eflomal's links enter: not at all, instead of the neural links, or combined by a rule."""
SUMMARY_FILE = "finetune.json"
"""What `finetune-aligner` (`relbridge.alignment.finetune`) writes beside the model it trains."""
SHARED_FIELDS = ("layer", "text_prefix", "skip_markers")
"""Fields a fine-tuned model shares with the `AlignConfig` it is aligned with."""


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the word aligner.

    Attributes:
      model: encoder name or local Hugging Face directory, resolved with
        `relbridge.runtime.encoders.resolve_model`; ``None`` = the bundled
        default (multilingual-e5-small).
      layer: hidden state to use (0 = embeddings). For e5-small (12 layers)
        6 beat 8 on every dev pair; useful range 4-8.
      text_prefix: text embedded before every sentence and never aligned (e.g.
        ``"passage: "``, the prefix e5 models were trained with); empty = none.
      extra_layers: further hidden states averaged with ``layer`` (e.g. ``(5, 7)``); empty = off.
      method: extraction method whose links go into ``AlignResult.links``:
        ``argmax``, ``itermax``, ``match``, ``softmax`` or a registered name
        (see `alignment.methods`).
      also: further methods computed on the same embeddings and returned in
        ``AlignResult.by_method`` (``("itermax", "match")`` with argmax = simalign's "mai").
      token_type: ``"word"`` (average subwords into words) or ``"bpe"`` (match subwords).
      skip_markers: embed a lone word-start piece (XLM-R's ``"▁"``, put before
        most Chinese and Japanese words by word-by-word tokenisation) as
        context but do not align it, unless it is all its word has. Stock
        simalign aligns it like any piece (``False``). With e5-small, v2
        (layer 7, eflomal, gdfa) on the dev gold: AER zh-en 19.8 -> 19.3,
        en-fr 5.5 -> 5.2, ro-en 25.6 -> 25.2 (neural links alone: 25.1 ->
        24.0, 6.9 -> 6.6, 29.5 -> 29.2). Leaving them out of the input
        instead was worse (zh-en 20.2): the encoder was trained with them.
      distortion: simalign's distortion ratio (0 = off, simalign suggests 0.5; range 0-1).
      itermax_iterations: itermax rounds (2 as in the SimAlign paper).
      softmax_threshold: threshold of the ``softmax`` method (1e-3 as in awesome-align).
      softmax_temperature: divides dot products before the softmax (1 = awesome-align).
      batch_size: pairs per `WordAligner.align_batch` call that callers should
        aim for (the pipeline's ``BatchElements`` maximum). Larger calls leave
        `alignment.embed.plan_batches` more sentences of similar length to
        group, so less padding: on 2 CPU cores 128 pairs per call ran 20%
        faster than 32 on en-fr (memory is a few MB either way).
      max_tokens: padded subwords per forward pass (2,048-8,192 on CPU; more on GPU).
      max_length: encoder window in subwords including special tokens; ``None``
        = the encoder's limit (512 for e5). Longer sentences are embedded in windows.
      window_overlap: subwords shared by consecutive windows (capped at half a window).
      max_subwords: a side with more subwords is rejected (dead letter), to bound
        the ``(m, n)`` matrices; 4,096 is ~100x a typical sentence.
      device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
      dtype: ``"auto"`` = bfloat16 on CUDA and on CPUs with native bf16
        (AVX-512-BF16 / AMX), float32 elsewhere (an AVX2 CPU emulates bf16
        ~40x slower); or ``"float32"``, ``"bfloat16"``, ``"float16"``. On 2
        AVX-512-BF16 cores (AMD EPYC, e5-small, layer 6, argmax) bf16 ran
        2.3-3.0x faster than fp32 (en-fr 440 vs 146 pairs/s), AER within 0.1.
      num_threads: torch CPU threads (``None`` leaves torch's setting).
      compile: run the encoder through ``torch.compile`` (dynamic shapes),
        for CUDA, where fewer, fused kernel launches can pay (not measured: no
        GPU was available). On 2 AVX2 CPU cores (e5-small, layer 6, en-fr) it
        compiled in ~32 s and then ran no faster than eager (97.5 vs 98.5
        pairs/s, interleaved A/B), with identical links: the CPU time is in the
        matrix products, which compiling does not change. Off by default.
      statistical: eflomal links trained on the corpus being aligned (see
        `STATISTICAL`): ``"off"``, ``"only"`` (eflomal replaces the neural
        links), or a rule combining neural (first) and eflomal links:
        ``"intersection"``, ``"union"``, ``"grow-diag-final(-and)"``, ``"fill"``.
        Needs the whole corpus (`WordAligner.align_corpus`, or the pipeline).
      eflomal: eflomal's settings (`EflomalConfig`; a dict is converted),
        including an optional extra training corpus.
    """

    model: str | None = None
    layer: int = 6
    text_prefix: str = ""
    extra_layers: tuple[int, ...] = ()
    method: str = "argmax"
    also: tuple[str, ...] = ()
    token_type: str = "word"
    skip_markers: bool = False
    distortion: float = 0.0
    itermax_iterations: int = 2
    softmax_threshold: float = 1e-3
    softmax_temperature: float = 1.0
    batch_size: int = 128
    max_tokens: int = 4096
    max_length: int | None = None
    window_overlap: int = 64
    max_subwords: int = 4096
    device: str = "auto"
    dtype: str = "auto"
    num_threads: int | None = None
    compile: bool = False
    statistical: str = "off"
    eflomal: EflomalConfig = field(default_factory=EflomalConfig)

    def __post_init__(self):
        object.__setattr__(self, "extra_layers", tuple(self.extra_layers))
        if isinstance(self.eflomal, Mapping):
            object.__setattr__(self, "eflomal", EflomalConfig(**self.eflomal))
        if self.statistical not in STATISTICAL:
            raise ValueError(f"statistical must be one of {STATISTICAL}, got {self.statistical!r}")
        object.__setattr__(self, "also", tuple(self.also))
        for name in (self.method, *self.also):
            resolve_method(name)
        if self.layer < 0 or any(x < 0 for x in self.extra_layers):
            raise ValueError(f"layers must be >= 0, got {self.layers}")
        if self.token_type not in TOKEN_TYPES:
            raise ValueError(f"token_type must be one of {TOKEN_TYPES}, got {self.token_type!r}")
        if not 0.0 <= self.distortion <= 1.0:
            raise ValueError(f"distortion must be in [0, 1], got {self.distortion}")
        if self.itermax_iterations < 1:
            raise ValueError(f"itermax_iterations must be >= 1, got {self.itermax_iterations}")
        if not 0.0 < self.softmax_threshold < 1.0:
            raise ValueError(f"softmax_threshold must be in (0, 1), got {self.softmax_threshold}")
        if self.softmax_temperature <= 0:
            raise ValueError(f"softmax_temperature must be > 0, got {self.softmax_temperature}")
        for name in ("batch_size", "max_tokens", "max_subwords"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 4:
            raise ValueError(f"max_length must be >= 4, got {self.max_length}")
        if self.window_overlap < 0:
            raise ValueError(f"window_overlap must be >= 0, got {self.window_overlap}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")

    @property
    def layers(self) -> tuple[int, ...]:
        """All hidden states averaged, ``layer`` first."""
        return (self.layer, *(x for x in self.extra_layers if x != self.layer))

    @property
    def methods(self) -> tuple[str, ...]:
        """``method`` then ``also``, without repeats."""
        return tuple(dict.fromkeys((self.method, *self.also)))

    def method_params(self) -> MethodParams:
        return MethodParams(
            self.itermax_iterations, self.softmax_threshold, self.softmax_temperature
        )


@dataclass(frozen=True)
class AlignResult:
    """Links of one sentence pair, or why there are none.

    Attributes:
      links: sorted ``(src_idx, tgt_idx)`` word pairs of ``AlignConfig.method``,
        or ``None`` when the pair could not be aligned.
      error: the reason when ``links`` is ``None``.
      by_method: links of every method in ``AlignConfig.methods`` (keys as configured),
        plus ``"eflomal"``'s when statistical links were merged in.
    """

    links: Links | None
    error: str | None = None
    by_method: Mapping[str, Links] = field(default_factory=dict)

    @classmethod
    def failed(cls, reason: str) -> AlignResult:
        return cls(links=None, error=reason)


# Presets by versioned name: a function of overrides returning an AlignConfig.
ALIGNERS: Registry[Callable[..., AlignConfig]] = Registry("aligner")


def register_preset(name: str, **fields) -> None:
    """Registers ``name`` as ``AlignConfig(**fields)``, overridable field by field."""
    ALIGNERS.register(name)(lambda **overrides: AlignConfig(**{**fields, **overrides}))


def aligner_config(name: str, **overrides) -> AlignConfig:
    """The registered preset ``name`` with ``overrides`` applied."""
    return ALIGNERS.get(name)(**overrides)


register_preset("simalign.argmax.v1", method="argmax")
register_preset("simalign.itermax.v1", method="itermax")
register_preset("simalign.match.v1", method="match")
register_preset("simalign.mai.v1", method="argmax", also=("itermax", "match"))
register_preset("awesome.softmax.v1", method="softmax")
# The project's defaults (pipeline and demo), chosen on the awesome-align dev
# gold with e5-small, one configuration for all pairs: subword mutual argmax at
# layer 7 with e5's "passage: " prefix (neural alone: AER en-fr 6.9, ro-en 29.4,
# zh-en 25.1; stock simalign layer 6 argmax 7.9, 29.8, 25.4), then eflomal links.
# v1 adds eflomal's intersected links between words both left unaligned: 6.4,
# 27.2, 22.9. v2 trains eflomal with the neural links as priors and merges by
# grow-diag-final-and: 5.3, 25.6, 19.4. eflomal samples: reruns differ by ~0.2.
register_preset(
    "relbridge.default.v1",
    layer=7,
    text_prefix="passage: ",
    token_type="bpe",
    method="argmax",
    statistical="fill",
    eflomal=EflomalConfig(symmetrize="intersection"),
)
_DEFAULT_V2 = {
    "layer": 7,
    "text_prefix": "passage: ",
    "token_type": "bpe",
    "method": "argmax",
    "statistical": "grow-diag-final-and",
    "eflomal": EflomalConfig(symmetrize="intersection", neural_priors=True),
}
register_preset("relbridge.default.v2", **_DEFAULT_V2)
# v3 embeds lone word-start pieces without aligning them (skip_markers): 5.2,
# 25.2, 19.3 (en-fr, ro-en, zh-en).
register_preset("relbridge.default.v3", **_DEFAULT_V2, skip_markers=True)
DEFAULT_PRESET = "relbridge.default.v3"


def warn_if_trained_elsewhere(model_dir: str, cfg: AlignConfig) -> bool:
    """Warns when a `finetune-aligner` model is aligned at another layer or prefix.

    Fine-tuning trains one hidden state (layer and text prefix, recorded in the
    model's ``finetune.json``); another layer of the same model was not trained
    for alignment. Whether lone word-start pieces were trained
    (``skip_markers``) is compared too. Returns True when it warned.
    """
    import json

    path = os.path.join(model_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        return False

    with open(path, encoding="utf-8") as f:
        trained = json.load(f).get("config", {})
    want = {k: getattr(cfg, k) for k in SHARED_FIELDS}
    differ = {k: trained[k] for k, v in want.items() if k in trained and trained[k] != v}
    if differ:
        logger.warning(
            "%s was fine-tuned for %s but is aligned with %s; pass the same layer, "
            "text prefix and skip_markers (or fine-tune with --aligner set to this run's preset)",
            model_dir,
            differ,
            {k: want[k] for k in differ},
        )
    return bool(differ)


def resolve_model_dir(model: str | None) -> str:
    """A local directory for ``model``: an existing directory, else `resolve_model`."""
    if model is not None and os.path.isdir(model):
        return model
    from relbridge.runtime.encoders import resolve_model

    return resolve_model(model) if model is not None else resolve_model()


def _pair_scores(src: np.ndarray, tgt: np.ndarray, distortion: float) -> PairScores:
    """Cosine (as simalign: ``(cos + 1) / 2``) and dot-product matrices, ``(m, n)``."""
    dot = src @ tgt.T  # (m, n)
    norms = np.linalg.norm(src, axis=1)[:, None] * np.linalg.norm(tgt, axis=1)[None, :]
    sim = (dot / np.maximum(norms, 1e-12) + 1.0) / 2.0
    return PairScores(sim=apply_distortion(sim, distortion), dot=dot)


def _word_vectors(
    vectors: np.ndarray, word_of: np.ndarray, n_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """Averages subword vectors into words; returns ``(W', H)`` vectors and their word indices."""
    words = np.unique(word_of)  # words with at least one subword, sorted
    sums = np.zeros((n_words, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, word_of, vectors)
    counts = np.bincount(word_of, minlength=n_words)
    return (sums[words] / counts[words, None]).astype(np.float32), words


def extract_links(
    src: np.ndarray,
    src_word_of: np.ndarray,
    tgt: np.ndarray,
    tgt_word_of: np.ndarray,
    n_src: int,
    n_tgt: int,
    cfg: AlignConfig,
) -> dict[str, Links]:
    """Links of each configured method for one pair of embedded sentences.

    Args:
      src, tgt: ``(T, H)`` subword vectors.
      src_word_of, tgt_word_of: ``(T,)`` word index of each subword; -1 = a
        piece embedded as context only, never linked (`AlignConfig.skip_markers`).
      n_src, n_tgt: number of words on each side.
      cfg: settings (token_type, distortion, methods and their parameters).

    Returns:
      method (as configured) -> sorted word links.
    """
    src, src_word_of = aligned_pieces(src, src_word_of)
    tgt, tgt_word_of = aligned_pieces(tgt, tgt_word_of)
    if cfg.token_type == "word":
        src, src_word_of = _word_vectors(src, src_word_of, n_src)
        tgt, tgt_word_of = _word_vectors(tgt, tgt_word_of, n_tgt)
    scores = _pair_scores(src, tgt, cfg.distortion)
    params = cfg.method_params()
    out = {}
    for name in cfg.methods:
        rows, cols = np.nonzero(METHODS.get(resolve_method(name))(scores, params))
        out[name] = tuple(sorted(set(zip(src_word_of[rows].tolist(), tgt_word_of[cols].tolist()))))
    return out


def _check_side(words, which: str) -> str | None:
    if isinstance(words, str):
        return f"{which} side is a string, not a word list"
    if len(words) == 0:
        return f"empty {which} side"
    if not all(isinstance(w, str) for w in words):
        return f"{which} side has a non-string word"
    return None


def _check_subwords(ids: Sequence[int], which: str, limit: int) -> str | None:
    if not ids:
        return f"no subwords on the {which} side"
    if len(ids) > limit:
        return f"{which} side has {len(ids)} subwords > max_subwords={limit}"
    return None


class WordAligner:
    """Aligns batches of pre-tokenised sentence pairs (see module docstring).

    Loads the tokenizer and encoder in ``__init__``: build it in ``DoFn.setup``.
    """

    def __init__(self, cfg: AlignConfig):
        from relbridge.alignment.embed import SentenceEmbedder

        self.cfg = cfg
        if cfg.num_threads is not None:
            import torch

            torch.set_num_threads(cfg.num_threads)
        self.model_dir = resolve_model_dir(cfg.model)
        warn_if_trained_elsewhere(self.model_dir, cfg)
        self.embedder = SentenceEmbedder(
            self.model_dir,
            layers=cfg.layers,
            max_length=cfg.max_length,
            window_overlap=cfg.window_overlap,
            max_tokens=cfg.max_tokens,
            device=cfg.device,
            dtype=cfg.dtype,
            text_prefix=cfg.text_prefix,
            compile=cfg.compile,
            skip_markers=cfg.skip_markers,
        )

    def align_batch(
        self, pairs: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> list[AlignResult]:
        """Aligns ``(src_words, tgt_words)`` pairs; one `AlignResult` per pair, in order.

        Any number of pairs may be given; they are embedded together, so
        ``AlignConfig.batch_size`` pairs per call keeps memory flat.
        """
        results: list[AlignResult | None] = [None] * len(pairs)
        todo = []  # indices of pairs that passed the word-level checks
        for k, pair in enumerate(pairs):
            try:
                src, tgt = pair
            except (TypeError, ValueError):
                results[k] = AlignResult.failed("not a (source words, target words) pair")
                continue
            error = _check_side(src, "source") or _check_side(tgt, "target")
            if error:
                results[k] = AlignResult.failed(error)
            else:
                todo.append(k)
        if not todo:
            return results  # type: ignore[return-value]

        tokenized = self.embedder.tokenize([side for k in todo for side in pairs[k]])
        ready = []  # (pair index, src (ids, word_of), tgt (ids, word_of))
        for n, k in enumerate(todo):
            src_tok, tgt_tok = tokenized[2 * n], tokenized[2 * n + 1]
            error = _check_subwords(src_tok[0], "source", self.cfg.max_subwords) or _check_subwords(
                tgt_tok[0], "target", self.cfg.max_subwords
            )
            if error:
                results[k] = AlignResult.failed(error)
            else:
                ready.append((k, src_tok, tgt_tok))
        if ready:
            vectors = self.embedder.embed_ids([tok[0] for _, s, t in ready for tok in (s, t)])
            for n, (k, (_, src_w), (_, tgt_w)) in enumerate(ready):
                src_v, tgt_v = vectors[2 * n], vectors[2 * n + 1]
                if not (np.isfinite(src_v).all() and np.isfinite(tgt_v).all()):
                    results[k] = AlignResult.failed("non-finite embeddings")
                    continue
                src_words, tgt_words = pairs[k]
                by_method = extract_links(
                    src_v, src_w, tgt_v, tgt_w, len(src_words), len(tgt_words), self.cfg
                )
                results[k] = AlignResult(links=by_method[self.cfg.method], by_method=by_method)
        n_failed = sum(r.links is None for r in results)
        if n_failed:
            logger.debug("%d of %d pairs could not be aligned", n_failed, len(pairs))
        return results  # type: ignore[return-value]

    def align(self, src: Sequence[str], tgt: Sequence[str]) -> AlignResult:
        """One pair (convenience; batches are much faster)."""
        return self.align_batch([(src, tgt)])[0]

    def align_corpus(
        self, pairs: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> list[AlignResult]:
        """Aligns a whole corpus: neural links batch by batch, then eflomal's if configured.

        eflomal trains on the pairs the neural aligner accepted (plus
        ``cfg.eflomal.extra_corpus``), with their neural links as priors when
        ``cfg.eflomal.neural_priors``; each result's ``by_method`` then also
        holds ``"eflomal"``'s links, and ``links`` follow ``cfg.statistical``.
        """
        size = self.cfg.batch_size
        results = [
            r for k in range(0, len(pairs), size) for r in self.align_batch(pairs[k : k + size])
        ]
        if self.cfg.statistical == "off":
            return results
        ok = [k for k, r in enumerate(results) if r.links is not None]
        priors = [results[k].links for k in ok] if self.cfg.eflomal.neural_priors else None
        statistical = eflomal_align([pairs[k] for k in ok], self.cfg.eflomal, priors) if ok else []
        for k, links in zip(ok, statistical, strict=True):
            results[k] = with_statistical(results[k], links, self.cfg.statistical)
        return results


def merge_links(neural: Links, statistical: Links, how: str) -> Links:
    """One pair's final links: ``statistical`` (``how="only"``) or ``combine(neural, statistical, how)``."""
    if how == "only":
        return tuple(sorted(set(statistical)))
    if how == "off":
        return tuple(neural)
    return tuple(combine(neural, statistical, how))


def with_statistical(result: AlignResult, statistical: Links, how: str) -> AlignResult:
    """``result`` (neural) with eflomal's links merged in by ``how`` and kept in ``by_method``."""
    links = merge_links(result.links or (), statistical, how)
    return AlignResult(
        links=links, by_method={**result.by_method, "eflomal": tuple(sorted(set(statistical)))}
    )


def with_method(cfg: AlignConfig, method: str) -> AlignConfig:
    """``cfg`` with ``method`` as the primary method (keeping the others in ``also``)."""
    return replace(cfg, method=method, also=tuple(m for m in cfg.methods if m != method))
