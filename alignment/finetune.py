"""Alignment fine-tuning: awesome-align's self-training of the encoder on parallel text.

Dou and Neubig (2021), "Word Alignment by Fine-tuning Embeddings on Parallel
Corpora", align words with a bidirectional softmax over the dot products of
subword vectors at one encoder layer and then fine-tune the encoder so that it
agrees more strongly with its own alignments. No gold alignment is used: any
unlabelled parallel corpus (the user's own) is the training data.

Objectives (``FinetuneConfig.objectives``):

- ``so`` (self-training, always on). Per pair, with ``h_s`` ``(S, H)`` and
  ``h_t`` ``(T, H)`` subword vectors at the align layer, ``P_s2t =
  softmax_rows(h_s h_t^T)`` and ``P_t2s = softmax_cols(h_s h_t^T)``. A first
  pass in eval mode without gradients extracts links ``(P_s2t > c) & (P_t2s >
  c)``, lifts them to words and back to every subword pair of two linked words
  (the guide ``G``, a target that carries no gradient). A second pass in train
  mode computes
  ``loss = -(sum(P_s2t * G) / S + sum(P_t2s * G) / T)`` averaged over the batch:
  the mean probability mass a subword puts on its guided partners, in both
  directions (each term lies in [0, 1], so the loss lies in [-2, 0]).
- ``co`` (consistency, optional): ``-sum(P_s2t * P_t2s) / min(S, T)``, i.e.
  ``-trace(P_s2t P_t2s^T) / min(S, T)``, which rewards the two directions for
  agreeing. Cheap (same matrices).

Not built: awesome-align's MLM/TLM and parallel-sentence identification (PSI)
need a language-model or classification head; the bundled e5-small ships as a
bare ``BertModel`` with no MLM head, so these would start from random heads.
The paper reports that self-training gives most of the gain.

Special tokens, padding and the text prefix (e.g. e5's ``"passage: "``) take no
part in either softmax. Only the layers up to the align layer run during
training (the layers above get no gradient from these objectives and are
saved unchanged), so fine-tuning layer 6 of a 12-layer encoder costs about half
a full pass.

    cfg = FinetuneConfig(corpus=("train.src-tgt",), output="aligner-ft")
    summary = finetune_aligner(cfg)        # writes aligner-ft/
    WordAligner(AlignConfig(model="aligner-ft", layer=cfg.layer, text_prefix=cfg.text_prefix))

Corpus specs (``FinetuneConfig.corpus``, see `read_corpus`): a pre-tokenised
``src ||| tgt`` file (awesome-align's and the gold sets' format), a ``.tsv`` or
``.jsonl`` file of raw pairs (`data_specs.formats`), or two line-aligned raw
text files given as ``SRC_FILE,TGT_FILE``. Raw text is split into words by a
word splitter (whitespace by default; the CLI passes the pipeline's spaCy
tokenizers when given ``--src-lang/--tgt-lang``, so training words match the
pipeline's words).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass

from relbridge.alignment.aligner import SUMMARY_FILE, resolve_model_dir
from relbridge.alignment.embed import tokenize_words
from relbridge.alignment.self_training import (  # noqa: F401 (the objectives, for callers)
    Side,
    bidirectional_softmax,
    consistency_loss,
    pad_side,
    self_training_loss,
    word_guide,
)
from relbridge.data_specs.formats import PAIR_PARSERS, InputError, make_text_pair, open_lines
from relbridge.runtime.batching import length_bucketed_batches
from relbridge.runtime.optim import adamw_param_groups, linear_warmup_decay

logger = logging.getLogger(__name__)

OBJECTIVES = ("so", "co")
WordPair = tuple[list[str], list[str]]
Splitter = Callable[[str], list[str]]


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of alignment fine-tuning.

    Attributes:
      corpus: corpus specs (see `read_corpus`); their pairs are concatenated.
      output: directory for the fine-tuned model, tokenizer and `SUMMARY_FILE`.
      model: encoder name or local directory (`alignment.aligner.resolve_model_dir`);
        ``None`` = the bundled multilingual-e5-small.
      layer: align layer, the hidden state trained and later aligned with
        (same default as `AlignConfig.layer`; awesome-align uses 8 for mBERT).
      text_prefix: text embedded before every sentence and never aligned; use
        the same value as `AlignConfig.text_prefix` at alignment time.
      skip_markers: lone word-start pieces are input but get no targets and no
        loss, as `AlignConfig.skip_markers` leaves them unaligned; use the
        same value as at alignment time.
      softmax_threshold: threshold ``c`` on both softmax directions for the
        self-training targets (awesome-align: 1e-3; useful range 1e-4 to 0.1).
      objectives: ``("so",)`` or ``("so", "co")`` (see module docstring).
      learning_rate: AdamW peak learning rate, 1e-5 to 1e-4. awesome-align uses
        2e-5 for ~20k steps; for one epoch over a few hundred pairs (30-60
        steps) 1e-4 lowered AER more than 2e-5 on all three dev pairs (en-fr,
        ro-en, zh-en; e5-small layer 6), hence the default.
      weight_decay: AdamW weight decay (awesome-align: 0), not applied to
        biases and LayerNorm weights.
      warmup_ratio: share of the steps with linear warm-up; the rest decays
        linearly to 0 (0-0.1).
      batch_size: sentence pairs per optimiser step (awesome-align: 8).
      epochs: passes over the corpus; ``max_steps`` stops earlier when set.
      max_steps: optimiser steps at most (``None`` = ``epochs`` full passes).
      max_length: subwords per side including special tokens and prefix;
        longer sides are truncated (their cut-off words get no targets).
      max_grad_norm: gradient clipping (awesome-align: 1.0; 0 = off).
      freeze_embeddings: keep the word-embedding matrix fixed (default; a
        departure from awesome-align, which trains it). In XLM-R-style
        vocabularies (250k rows, 80% of e5-small's parameters) its dense
        gradient and AdamW update cost more than the rest of a CPU step, and
        on a small corpus only the rows of words seen would move.
      max_pairs: use only the first N pairs of the corpus (``None`` = all).
      seed: seeds data order, dropout and initialisation.
      device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"``.
      bf16: bfloat16 autocast on CUDA and on CPUs with native bf16 (see
        `relbridge.runtime.devices`); other CPUs train in float32.
      num_threads: torch CPU threads (``None`` leaves torch's setting).
      log_every: steps between loss log lines (and history entries).
      save_every: steps between checkpoints in ``output/checkpoint-<step>``
        (0 = only the final model).
      overwrite: allow an ``output`` that already holds a model.
    """

    corpus: tuple[str, ...]
    output: str
    model: str | None = None
    layer: int = 6
    text_prefix: str = ""
    skip_markers: bool = False
    softmax_threshold: float = 1e-3
    objectives: tuple[str, ...] = ("so",)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    batch_size: int = 8
    epochs: int = 1
    max_steps: int | None = None
    max_length: int = 256
    max_grad_norm: float = 1.0
    freeze_embeddings: bool = True
    max_pairs: int | None = None
    seed: int = 42
    device: str = "auto"
    bf16: bool = True
    num_threads: int | None = None
    log_every: int = 10
    save_every: int = 0
    overwrite: bool = False

    def __post_init__(self):
        corpus = (self.corpus,) if isinstance(self.corpus, str) else tuple(self.corpus)
        object.__setattr__(self, "corpus", corpus)
        object.__setattr__(self, "objectives", tuple(dict.fromkeys(self.objectives)))
        if not corpus:
            raise ValueError("corpus: give at least one corpus file")
        if not self.output:
            raise ValueError("output: give a directory")
        if "so" not in self.objectives:
            raise ValueError(f"objectives must include 'so', got {self.objectives}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown objective(s) {unknown}; built: {OBJECTIVES}")
        if self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")
        if not 0.0 < self.softmax_threshold < 1.0:
            raise ValueError(f"softmax_threshold must be in (0, 1), got {self.softmax_threshold}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("batch_size", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_pairs", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.save_every < 0:
            raise ValueError(f"save_every must be >= 0, got {self.save_every}")
        if self.max_length < 4:
            raise ValueError(f"max_length must be >= 4, got {self.max_length}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")


# ---------------------------------------------------------------------------
# Corpus


def read_corpus(
    spec: str, src_split: Splitter | None = None, tgt_split: Splitter | None = None
) -> list[WordPair]:
    """Reads one corpus spec into ``(src_words, tgt_words)`` pairs.

    Args:
      spec: ``SRC_FILE,TGT_FILE`` (two line-aligned raw text files), a ``.tsv``
        or ``.jsonl``/``.json`` file of raw pairs, or otherwise a pre-tokenised
        ``src ||| tgt`` file (words separated by single spaces, as the gold sets).
      src_split, tgt_split: word splitters for raw text (default: whitespace).
        Not used for ``src ||| tgt`` files, which are already split.

    Returns:
      The pairs in file order. Pairs with an empty side are skipped (and counted
      in the log); malformed lines raise `InputError` naming file and line.
    """
    from relbridge.alignment.metrics import parse_pair_line

    src_split = src_split or str.split
    tgt_split = tgt_split or str.split
    lower = spec.lower()
    if "," in spec:
        src_path, tgt_path = spec.split(",", 1)
        with open_lines(src_path) as fs, open_lines(tgt_path) as ft:
            # Only \n ends a line: str.splitlines would also split on U+2028 and
            # friends and shift one side against the other.
            src_lines = [line.rstrip("\r\n") for line in fs]
            tgt_lines = [line.rstrip("\r\n") for line in ft]
        texts = []
        for n in range(max(len(src_lines), len(tgt_lines))):
            s = src_lines[n] if n < len(src_lines) else None
            t = tgt_lines[n] if n < len(tgt_lines) else None
            if s is not None and t is not None and (not s.strip() or not t.strip()):
                continue  # an empty line on either side: nothing to align
            texts.append(make_text_pair(s, t, "finetune", src_path, n + 1))
        pairs = [(src_split(r.src), tgt_split(r.tgt)) for r in texts]
    elif lower.endswith((".tsv", ".jsonl", ".json")):
        parse = PAIR_PARSERS["tsv" if lower.endswith(".tsv") else "jsonl"]
        with open_lines(spec) as f:
            records = [parse(line, "finetune", spec, n) for n, line in enumerate(f, 1)]
        pairs = [(src_split(r.src), tgt_split(r.tgt)) for r in records]
    else:
        pairs = []
        with open_lines(spec) as f:
            for n, line in enumerate(f, 1):
                try:
                    pairs.append(parse_pair_line(line))
                except ValueError as e:
                    raise InputError(spec, n, str(e)) from None
    kept = [(s, t) for s, t in pairs if s and t]
    if len(kept) < len(pairs):
        logger.info("%s: skipped %d pairs with an empty side", spec, len(pairs) - len(kept))
    return kept


# ---------------------------------------------------------------------------
# Batches and losses (plain tensor functions)


@contextmanager
def first_layers(model, top: int):
    """Runs only the first ``top`` encoder layers inside the block, restoring all after."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} keeps no encoder.layer list to truncate")
    if top > len(layers):
        raise ValueError(f"align layer {top} out of range: the encoder has {len(layers)} layers")
    n_config = model.config.num_hidden_layers
    model.encoder.layer = layers[:top]
    model.config.num_hidden_layers = top
    try:
        yield model
    finally:
        model.encoder.layer = layers
        model.config.num_hidden_layers = n_config


def _optimizer(model, cfg: FinetuneConfig):
    """AdamW over the trained parameters; no decay on 1-d ones (`runtime.optim`)."""
    import torch

    if cfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    groups = adamw_param_groups(model.named_parameters(), cfg.learning_rate, cfg.weight_decay)
    return torch.optim.AdamW(groups)


class _Trainer:
    """Holds the model, tokenizer and token layout for one fine-tuning run."""

    def __init__(self, cfg: FinetuneConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from relbridge.alignment.embed import SentenceEmbedder, marker_ids
        from relbridge.runtime.devices import native_bf16, resolve_device

        self.cfg = cfg
        self.model_dir = resolve_model_dir(cfg.model)
        self.device = resolve_device(cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{self.model_dir}: a fast tokenizer is needed for word ids")
        torch.manual_seed(cfg.seed)
        self.model = AutoModel.from_pretrained(self.model_dir, dtype=torch.float32).to(self.device)
        n_layers = self.model.config.num_hidden_layers
        if cfg.layer > n_layers:
            raise ValueError(
                f"layer {cfg.layer} out of range: {self.model_dir} has {n_layers} layers"
            )
        self.markers = marker_ids(self.tokenizer) if cfg.skip_markers else frozenset()
        self.prefix, self.suffix = SentenceEmbedder._special_tokens(self.tokenizer)
        if cfg.text_prefix:
            self.prefix += self.tokenizer(cfg.text_prefix, add_special_tokens=False)["input_ids"]
        if len(self.prefix) + len(self.suffix) >= cfg.max_length:
            raise ValueError(
                f"max_length={cfg.max_length} leaves no room after special tokens and prefix"
            )
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.autocast = cfg.bf16 and native_bf16(self.device)

    def usable(self, pairs: Sequence[WordPair]) -> list[WordPair]:
        """The pairs whose two sides both yield subwords (e.g. a lone U+3000 yields none)."""
        tokenized = tokenize_words(
            self.tokenizer, [side for pair in pairs for side in pair], self.markers
        )
        keep = [p for p, s, t in zip(pairs, tokenized[0::2], tokenized[1::2]) if s[0] and t[0]]
        if len(keep) < len(pairs):
            logger.warning("skipped %d pairs with a side of no subwords", len(pairs) - len(keep))
        return keep

    def sides(self, pairs: Sequence[WordPair]) -> tuple[Side, Side]:
        tokenized = tokenize_words(
            self.tokenizer, [side for pair in pairs for side in pair], self.markers
        )
        args = (self.prefix, self.suffix, self.cfg.max_length, self.pad_id)
        src = pad_side(tokenized[0::2], *args).to(self.device)
        tgt = pad_side(tokenized[1::2], *args).to(self.device)
        return src, tgt

    def probabilities(self, src: Side, tgt: Side):
        """``(p_s2t, p_t2s)`` at the align layer (the caller picks grad and train/eval mode)."""
        import torch

        autocast = (
            torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
            if self.autocast
            else nullcontext()
        )
        with autocast:
            hs = self.model(input_ids=src.ids, attention_mask=src.attention).last_hidden_state
            ht = self.model(input_ids=tgt.ids, attention_mask=tgt.attention).last_hidden_state
        return bidirectional_softmax(hs, ht, src.content, tgt.content)

    def loss(self, pairs: Sequence[WordPair], train: bool = True):
        """One batch's loss: targets from an eval pass, loss from a train-mode pass.

        With ``train=False`` the second pass is in eval mode too (no dropout),
        which makes the loss deterministic (`corpus_loss`).
        """
        import torch

        src, tgt = self.sides(pairs)
        self.model.eval()
        with torch.no_grad():
            guide = word_guide(*self.probabilities(src, tgt), self.cfg.softmax_threshold, src, tgt)
        self.model.train(train)
        p_s2t, p_t2s = self.probabilities(src, tgt)
        src_len, tgt_len = src.content.sum(1).float(), tgt.content.sum(1).float()
        loss = self_training_loss(p_s2t, p_t2s, guide, src_len, tgt_len)
        if "co" in self.cfg.objectives:
            loss = loss + consistency_loss(p_s2t, p_t2s, src_len, tgt_len)
        return loss

    def save(self, path: str, summary: dict) -> None:
        os.makedirs(path, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        with open(os.path.join(path, SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        for entry in os.scandir(path):  # safetensors writes 0600; workers may run as others
            if entry.is_file():
                os.chmod(entry.path, 0o644)


def corpus_loss(cfg: FinetuneConfig, pairs: Sequence[WordPair]) -> float:
    """Mean loss of ``cfg.model`` on ``pairs`` in eval mode (no dropout, no update).

    A deterministic measure of how well the encoder agrees with its own
    alignments; fine-tuning lowers it on the training corpus.
    """
    import torch

    trainer = _Trainer(cfg)
    pairs = trainer.usable(pairs)
    losses = []
    with torch.no_grad(), first_layers(trainer.model, cfg.layer):
        for k in range(0, len(pairs), cfg.batch_size):
            batch = pairs[k : k + cfg.batch_size]
            losses.append(trainer.loss(batch, train=False).item() * len(batch))
    return sum(losses) / len(pairs)


def load_pairs(
    cfg: FinetuneConfig, src_split: Splitter | None = None, tgt_split: Splitter | None = None
) -> list[WordPair]:
    """All pairs of ``cfg.corpus`` (first ``cfg.max_pairs``), read with `read_corpus`."""
    pairs = [p for spec in cfg.corpus for p in read_corpus(spec, src_split, tgt_split)]
    return pairs[: cfg.max_pairs] if cfg.max_pairs is not None else pairs


def finetune_aligner(
    cfg: FinetuneConfig, pairs: Sequence[WordPair] | None = None, progress: bool = True
) -> dict:
    """Fine-tunes the encoder on parallel text and saves it to ``cfg.output``.

    Args:
      cfg: settings.
      pairs: word-split pairs to train on; ``None`` reads ``cfg.corpus`` with
        whitespace word splitting (`load_pairs`).
      progress: show a tqdm bar with the running loss.

    Returns:
      The summary also written to ``output/finetune.json``: the config, the
      resolved base model, pairs, steps, seconds and the loss history
      (``{"step", "loss", "lr"}`` every ``log_every`` steps, loss averaged
      over those steps).

    Raises:
      FileExistsError: ``output`` already holds a model and ``overwrite`` is off.
      ValueError: no pairs, or a layer the encoder does not have.
    """
    import torch
    from tqdm.auto import tqdm

    if os.path.exists(os.path.join(cfg.output, "config.json")) and not cfg.overwrite:
        raise FileExistsError(f"{cfg.output} already holds a model (set overwrite)")
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    pairs = list(pairs) if pairs is not None else load_pairs(cfg)
    if not pairs:
        raise ValueError("the corpus has no sentence pairs")
    trainer = _Trainer(cfg)
    pairs = trainer.usable(pairs)
    if not pairs:
        raise ValueError("no sentence pair of the corpus yields subwords on both sides")
    rng = random.Random(cfg.seed)
    lengths = [len(src) + len(tgt) for src, tgt in pairs]  # words: a proxy for subwords
    steps_per_epoch = math.ceil(len(pairs) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    optimizer = _optimizer(trainer.model, cfg)
    scheduler = linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total), total)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    logger.info(
        "fine-tuning %s at layer %d on %d pairs: %d steps of %d pairs, objectives %s, %s",
        trainer.model_dir,
        cfg.layer,
        len(pairs),
        total,
        cfg.batch_size,
        cfg.objectives,
        trainer.device,
    )

    def summary(step: int) -> dict:
        return {
            "config": asdict(cfg),
            "base_model": trainer.model_dir,
            "pairs": len(pairs),
            "steps": step,
            "seconds": round(time.perf_counter() - start, 1),
            "history": history,
        }

    history: list[dict] = []
    start = time.perf_counter()
    step, window = 0, []
    bar = tqdm(total=total, desc="finetune-aligner", disable=not progress)
    while step < total:
        for batch in length_bucketed_batches(range(len(pairs)), lengths, cfg.batch_size, rng):
            if step >= total:
                break
            with first_layers(trainer.model, cfg.layer):  # the layers above get no gradient
                loss = trainer.loss([pairs[k] for k in batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            window.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.4f}")
            if step % cfg.log_every == 0 or step == total:
                entry = {
                    "step": step,
                    "loss": round(sum(window) / len(window), 5),
                    "lr": scheduler.get_last_lr()[0],
                }
                history.append(entry)
                logger.info("step %d/%d loss %.4f lr %.2e", step, total, entry["loss"], entry["lr"])
                window = []
            if cfg.save_every and step % cfg.save_every == 0 and step < total:
                trainer.save(os.path.join(cfg.output, f"checkpoint-{step}"), summary(step))
    bar.close()
    result = summary(step)
    trainer.save(cfg.output, result)
    logger.info(
        "saved the fine-tuned encoder to %s (%d steps, %.0f s)", cfg.output, step, result["seconds"]
    )
    return result
