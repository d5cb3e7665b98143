"""Training loop for `RelationExtractor`: `train(TrainConfig) -> dict`.

Reads shards (all languages, both sides) or KBP37/RELX files, holds out a dev
split (given files, or a fraction of sentence ids by stable hash), and trains
the relation and tagging heads jointly with AdamW, linear warm-up and linear
decay, gradient accumulation and early stopping on the dev metric. With
``aggregation`` = ``attention``/``average`` the relation loss is computed on
distant-supervision bags (OpenNRE ``scope``) instead of single instances.

`train` reads as its steps; each lives with its kind:

* settings: `relbridge.models.train_config` (data, model, optim, run groups);
* data and sampling units: `relbridge.models.units`;
* what trains and how fast (freezing, LoRA, AdamW, schedule, weight average):
  `relbridge.models.optim`;
* checkpoints, resume and RNG state: `relbridge.models.checkpoint`
  (``<output>/checkpoint.pt``, weights-only, written atomically: a run killed
  at any point resumes and ends as an uninterrupted one would).

The best model (by dev metric) is ``<output>/model``
(`RelationExtractor.save_pretrained`). Run it with
``relbridge train --shards DIR --output DIR`` or::

    from relbridge.models.trainer import TrainConfig, train
    stats = train(TrainConfig.from_flat(shards="out/shards", output="out/model"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from relbridge.data_specs.relations import RelationInventory
from relbridge.models import checkpoint as ckpt_io
from relbridge.models.checkpoint import CHECKPOINT, TRAIN_CONFIG, TRAIN_STATS
from relbridge.models.data import RelationData
from relbridge.models.distill import (
    distillation_loss,
    start_from_heads,
    tag_distillation_loss,
    teacher_tag_logits,
    teacher_targets,
)
from relbridge.models.extractor import Encoded, RelationExtractor, masked_cross_entropy
from relbridge.models.model_config import MODEL_DIR
from relbridge.models.negatives import marked_na_bias
from relbridge.models.optim import (
    WeightAverage,
    apply_lora,
    freeze_lower,
    make_optimizer,
    make_scheduler,
)
from relbridge.models.train_config import TrainConfig
from relbridge.models.units import (
    Unit,
    UnitSampler,
    build_units,
    load_training_data,
    unit_lengths,
)
from relbridge.runtime.devices import native_bf16, resolve_device
from relbridge.runtime.encoders import resolve_model
from relbridge.runtime.files import OutputLock

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT", "MODEL_DIR", "TRAIN_CONFIG", "TrainConfig", "train"]


def _start(cfg: TrainConfig) -> torch.device:
    """Output folder, threads and seeds; the device the run trains on."""
    os.makedirs(cfg.run.output, exist_ok=True)
    if cfg.run.num_threads:
        torch.set_num_threads(cfg.run.num_threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)
    return torch.device(resolve_device(cfg.run.device))


def _build_model(cfg: TrainConfig, train_data: RelationData, dev_data: RelationData):
    """The model `cfg.model` describes, with the relations and types the data has."""
    inventory = RelationInventory.from_relations(train_data.relations() | dev_data.relations())
    model_cfg = dataclasses.replace(
        cfg.model,
        encoder=str(resolve_model(cfg.model.encoder)),
        relations=inventory.names,
        entity_types=tuple(sorted(train_data.entity_types() - {"ENT"})),
        base_encoder=cfg.model.encoder,
    )
    model = RelationExtractor(model_cfg)
    if cfg.optim.heads_from:
        start_from_heads(model, cfg.optim.heads_from)
    freeze_lower(model, cfg.optim.freeze_layers)
    if cfg.optim.lora:
        apply_lora(model, cfg.optim)
    return model


def _micro_batch_loss(
    model: RelationExtractor,
    units: list[Unit],
    batch_units: Sequence[int],
    pair_enc: list[Encoded],
    tag_enc: list[Encoded],
    bags: list,
    cfg: TrainConfig,
    device: torch.device,
    teacher: torch.Tensor | None = None,
    teacher_tags: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The weighted multi-task loss of one micro-batch of units.

    ``teacher`` (pairs, 2, R): soft targets per pair encoding (`relbridge.models.distill`);
    their KL term joins the relation loss, for single pairs and bag members alike.
    ``teacher_tags``: the teacher's tag logits per tagging encoding; their KL
    term joins the tagging loss.
    """
    max_bag = cfg.data.max_bag_size
    items: list[Encoded] = []
    bag_units = []
    pair_rows: dict[int, int] = {}
    tag_rows: dict[int, int] = {}
    for u in (units[i] for i in batch_units):
        if u.kind == "pair":
            pair_rows[u.index] = len(items)
            items.append(pair_enc[u.index])
        elif u.kind == "tag":
            tag_rows[u.index] = len(items)
            items.append(tag_enc[u.index])
        else:
            bag_units.append(u.index)
            for i, _ in bags[u.index].members[:max_bag]:
                if i not in pair_rows:
                    pair_rows[i] = len(items)
                    # Bag mode: instance labels are replaced by the bag label below.
                    items.append(dataclasses.replace(pair_enc[i], rel_labels=(-100, -100)))
    batch = {k: v.to(device) for k, v in model.collate(items).items()}
    out = model(batch, labels=True)
    distilled = 0.0
    if teacher is not None and pair_rows:
        rows = torch.tensor(list(pair_rows.values()), device=device)
        distilled = distillation_loss(
            out["relation_logits"][rows], teacher[list(pair_rows)], cfg.optim.distill_temperature
        )
        distilled = model.cfg.relation_weight * cfg.optim.distill_weight * distilled
    if teacher_tags is not None and tag_rows:
        tags = tag_distillation_loss(
            out["tag_logits"], batch["tag_labels"], list(tag_rows.values()),
            [teacher_tags[i] for i in tag_rows], cfg.optim.distill_temperature,
        )  # fmt: skip
        distilled = distilled + model.cfg.tagging_weight * cfg.optim.distill_tag_weight * tags
    if not bag_units:
        return out["loss"] + distilled
    # Bags: gather each member's directed representation, then aggregate. (N, 2H)
    rows, dirs, scope = [], [], []
    for b in bag_units:
        members = bags[b].members[:max_bag]
        scope.append((len(rows), len(rows) + len(members)))
        rows += [pair_rows[i] for i, _ in members]
        dirs += [d for _, d in members]
    reps = out["pair_reps"][torch.tensor(rows, device=device), torch.tensor(dirs, device=device)]
    rel2id = model.inventory.rel2id
    bag_labels = torch.tensor([rel2id[bags[b].label] for b in bag_units], device=device)
    bag_logits = model.aggregate_bags(reps, scope, cfg.data.aggregation, bag_labels)  # (nbags, R)
    tag_loss = model.tagging_loss(out["tag_logits"], batch["tag_labels"])
    rel_loss = masked_cross_entropy(bag_logits, bag_labels)
    return model.cfg.relation_weight * rel_loss + model.cfg.tagging_weight * tag_loss + distilled


class _Run:
    """One training run's moving parts and loop state: checkpoints, dev evaluation, steps."""

    def __init__(self, cfg, model, optimizer, scheduler, average, data_id, dev_data):
        self.cfg, self.model, self.dev_data = cfg, model, dev_data
        self.optimizer, self.scheduler, self.average = optimizer, scheduler, average
        self.data_id = data_id
        self.path = os.path.join(cfg.run.output, CHECKPOINT)
        self.state: dict[str, Any] = {
            "epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None, "bad_evals": 0,
            "history": [],
        }  # fmt: skip

    @property
    def losses(self) -> list[float]:
        """Step losses since the last dev evaluation, in the loop state (so in the checkpoint:
        a resumed run's training curve is the uninterrupted run's)."""
        return self.state.setdefault("losses", [])

    def averaged(self):
        """Context in which the model holds the weights to evaluate and keep."""
        return self.average.applied(self.model) if self.average else contextlib.nullcontext()

    def resume(self) -> dict[str, Any] | None:
        """Restores a checkpoint when there is one; returns a finished run's statistics."""
        if not (self.cfg.run.resume and os.path.exists(self.path)):
            return None
        ckpt = ckpt_io.load_checkpoint(self.path)
        ckpt_io.check_resumable(ckpt, self.path, self.cfg, self.data_id)
        if ckpt.get("completed") or "model" not in ckpt:  # a completed run: nothing to resume
            finished = ckpt_io.finished_run(ckpt, self.cfg.run.output)
            if finished is not None:
                logger.info("%s holds this run, completed; nothing to do", self.cfg.run.output)
            return finished
        missing, unexpected = self.model.load_state_dict(ckpt["model"], strict=False)
        if unexpected or [k for k in missing if k in ckpt_io.trainable_state(self.model)]:
            raise ValueError(f"checkpoint does not match the model: {unexpected or missing}")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.average:
            self.average.load_state_dict(ckpt["average"])
        self.state = ckpt["state"]
        ckpt_io.set_rng_state(ckpt["rng"])
        logger.info(
            "resumed from %s at epoch %d step %d",
            self.path, self.state["epoch"], self.state["step_in_epoch"],
        )  # fmt: skip
        return None

    def save(self, completed: bool = False) -> None:
        ckpt = {
            "model": ckpt_io.trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "average": self.average.state_dict() if self.average else None,
            "state": ckpt_io.plain(self.state),
            "rng": ckpt_io.rng_state(),
            "config": ckpt_io.plain(self.cfg.flat()),
            "data": self.data_id,
            "model_config": self.model.cfg.to_json(),
            "completed": completed,  # kept whole (keep_checkpoint), a rerun still has nothing to do
        }
        if completed and not self.cfg.run.keep_checkpoint:
            ckpt = ckpt_io.run_record(ckpt)
        ckpt_io.atomic_save(ckpt, self.path)

    def evaluate_dev(self) -> bool:
        """Evaluates dev, saves the best model; returns True when patience ran out."""
        from relbridge.models.evaluate import evaluate_model

        cfg, state, metric = self.cfg, self.state, self.cfg.run.dev_metric
        if not self.dev_data.pairs:
            return False
        with self.averaged():
            batch_size = 2 * cfg.optim.batch_size
            metrics = evaluate_model(self.model, self.dev_data, batch_size=batch_size)["overall"]
            value = metrics.get(metric, metrics["micro_f1"])
            entry = {"epoch": state["epoch"], "global_step": state["global_step"], **metrics}
            if self.losses:  # the run report's training curve
                entry["train_loss"] = round(sum(self.losses) / len(self.losses), 5)
                self.losses.clear()
            state["history"].append(entry)
            logger.info("dev at step %d: %s=%.2f", state["global_step"], metric, value)
            improved = state["best"] is None or value > state["best"][metric]
            if improved:
                ckpt_io.save_model_dir(self.model, cfg)
        self.model.train()
        if improved:
            state["best"] = {**entry, metric: value}
            state["bad_evals"] = 0
        else:
            state["bad_evals"] += 1
        return cfg.run.patience > 0 and state["bad_evals"] >= cfg.run.patience


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Trains a `RelationExtractor` and returns run statistics.

    Args:
      cfg: the training configuration.

    Returns:
      A dict with ``model_dir`` (the best model), ``best_dev`` (its dev metrics),
      ``history`` (one dev evaluation per entry), counts, wall time, throughput,
      ``completed`` (False when stopped by ``stop_after_steps``) and
      ``stopped_early``.

    Raises:
      ValueError: another run holds ``cfg.run.output`` (a lock beside it, which
        the kernel drops when that run dies), or trained it with other settings.
    """
    with OutputLock(cfg.run.output, f"train (pid {os.getpid()})"):
        return _train(cfg)


def _train(cfg: TrainConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    started = time.perf_counter()
    ckpt_io.check_output(cfg)
    device = _start(cfg)
    train_data, dev_data = load_training_data(cfg)
    model = _build_model(cfg, train_data, dev_data)
    model.marked_na_bias.fill_(marked_na_bias(train_data.pairs))
    model.to(device)
    units, pair_enc, tag_enc, bags, pairs = build_units(model, train_data, cfg)
    lengths = unit_lengths(units, pair_enc, tag_enc, bags, cfg.data.max_bag_size)
    sampler = UnitSampler(units, lengths, cfg)
    steps_per_epoch = math.ceil(len(sampler.batches(0)) / cfg.optim.grad_accum)
    total_steps = steps_per_epoch * cfg.optim.epochs
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, total_steps, cfg.optim)
    average = WeightAverage(model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "training on %d pairs, %d tagging inputs, %d bags (%s); dev %d pairs; %d relations; "
        "%d steps; %.1fM trainable parameters; device %s",
        len(pair_enc), len(tag_enc), len(bags), dict(train_data.languages()), len(dev_data.pairs),
        len(model.inventory), total_steps, n_trainable / 1e6, device,
    )  # fmt: skip
    if device.type == "cuda" and cfg.run.compile:
        model.encoder.compile()  # in place: state-dict keys stay unprefixed
    use_bf16 = cfg.run.bf16 and native_bf16(device.type)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    data_id = ckpt_io.data_fingerprint(train_data, dev_data)
    run = _Run(cfg, model, optimizer, scheduler, average, data_id, dev_data)
    finished = run.resume()
    if finished is not None:
        return finished
    teacher = None  # scored after the resume check: a finished run needs no teacher
    if cfg.optim.distill_from:
        teacher = teacher_targets(
            cfg.optim.distill_from, pairs, model.inventory.names, device,
            cfg.optim.distill_temperature, batch_size=2 * cfg.optim.batch_size,
        )  # fmt: skip
    teacher_tags = None
    if cfg.optim.distill_from and cfg.optim.distill_tag_weight > 0:
        teacher_tags = teacher_tag_logits(
            cfg.optim.distill_from, tag_enc, model.cfg.tags, device, 2 * cfg.optim.batch_size
        )
    state, grad_accum = run.state, cfg.optim.grad_accum

    model.train()
    seen = tokens = 0
    train_s = 0.0  # time in optimizer steps only (dev evaluation and checkpoints excluded)
    last_loss: float | None = None  # training loss of the last optimizer step of this call
    loop_started = time.perf_counter()
    bar = tqdm(
        total=total_steps, initial=state["global_step"], disable=not cfg.run.progress,
        desc="train", unit="step",
    )  # fmt: skip
    stopped_early = state.get("stopped_early", False)
    interrupted = False
    while state["epoch"] < cfg.optim.epochs and not stopped_early and not interrupted:
        batches = sampler.batches(state["epoch"])
        for step in range(state["step_in_epoch"], steps_per_epoch):
            micro = batches[step * grad_accum : (step + 1) * grad_accum]
            if not micro:
                break
            total_units = sum(len(m) for m in micro)
            loss_sum = 0.0
            step_started = time.perf_counter()
            for m in micro:
                with autocast:
                    loss = _micro_batch_loss(
                        model, units, m, pair_enc, tag_enc, bags, cfg, device, teacher,
                        teacher_tags,
                    )  # fmt: skip
                (loss * len(m) / total_units).backward()
                loss_sum += loss.item() * len(m)
            last_loss = loss_sum / total_units
            run.losses.append(last_loss)
            if cfg.optim.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.optim.max_grad_norm
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if average:
                average.update(model)
            train_s += time.perf_counter() - step_started
            state["global_step"] += 1
            state["step_in_epoch"] = step + 1
            seen += total_units
            tokens += sum(lengths[i] for m in micro for i in m)
            bar.set_postfix(
                loss=f"{last_loss:.4f}", ex_s=f"{seen / train_s:.1f}",
                tok_s=f"{tokens / train_s:.0f}", refresh=False,
            )  # fmt: skip
            bar.update(1)
            every = cfg.run.eval_every
            if every and state["global_step"] % every == 0 and run.evaluate_dev():
                stopped_early = True
            saving = cfg.run.save_every and state["global_step"] % cfg.run.save_every == 0
            if stopped_early or saving:
                state["stopped_early"] = stopped_early
                run.save()
            if stopped_early:
                break
            if cfg.run.stop_after_steps and state["global_step"] >= cfg.run.stop_after_steps:
                run.save()
                interrupted = True
                break
        if interrupted or stopped_early:
            break
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        # Every epoch end without eval_every; with it, the final step too unless just evaluated.
        history = state["history"]
        just_evaluated = bool(history) and history[-1]["global_step"] == state["global_step"]
        final = state["epoch"] == cfg.optim.epochs
        if not just_evaluated and (not cfg.run.eval_every or final) and run.evaluate_dev():
            stopped_early = True
        state["stopped_early"] = stopped_early
        run.save()
    bar.close()

    completed = not interrupted
    if completed and (not dev_data.pairs or state["best"] is None):
        with run.averaged():
            ckpt_io.save_model_dir(model, cfg)  # no dev: the final (averaged) model is the result
    stats = {
        "model_dir": os.path.join(cfg.run.output, MODEL_DIR),
        "completed": completed,
        "stopped_early": stopped_early,
        "epochs_run": state["epoch"],
        "global_step": state["global_step"],
        "total_steps": total_steps,
        "train_pairs": len(pair_enc),
        "train_pairs_skipped": len(train_data.pairs) - len(pair_enc),
        "train_tagging_inputs": len(tag_enc),
        "train_bags": len(bags),
        "dev_pairs": len(dev_data.pairs),
        "languages": dict(train_data.languages()),
        "relations": len(model.inventory),
        "trainable_parameters": n_trainable,
        "dev_metric": cfg.run.dev_metric,
        "best_dev": state["best"],
        "history": state["history"],
        "examples_per_s": round(seen / train_s, 2) if train_s > 0 and seen else None,
        "tokens_per_s": round(tokens / train_s, 1) if train_s > 0 and tokens else None,
        "train_step_s": round(train_s, 1),
        "loop_s": round(time.perf_counter() - loop_started, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "device": str(device),
        "hardware": _hardware(device),
        "bf16_autocast": use_bf16,
        "ema_decay": cfg.optim.ema_decay,
        "final_loss": last_loss,
    }
    ckpt_io.write_json(os.path.join(cfg.run.output, TRAIN_STATS), stats)
    ckpt_io.write_json(os.path.join(cfg.run.output, TRAIN_CONFIG), cfg.flat())
    if completed:
        run.save(completed=True)  # a record of the run, or all of it with keep_checkpoint
    return stats


def _hardware(device: torch.device) -> dict[str, Any]:
    """What the run ran on, for reports: CPU cores and threads, or the GPU's name."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
