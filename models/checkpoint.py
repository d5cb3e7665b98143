"""Checkpoints of a training run: save atomically, resume safely, restore RNG states.

Everything a resumed run needs goes into ``<output>/checkpoint.pt``: the
trainable weights, optimizer, scheduler and weight-average state, the loop
state (epoch, step, early stopping), the RNG states, the flat settings and a
fingerprint of the data. It is written to a temporary file and renamed, so a
run killed at any point resumes from its last checkpoint and ends with the
same result as an uninterrupted one.

A checkpoint is read with ``torch.load(weights_only=True)``: it holds only
tensors and plain containers (the numpy RNG state is stored as a tensor), so a
planted ``checkpoint.pt`` cannot run code, and a truncated or foreign file is
one line, ``FILE: reason`` (a `ValueError`; the CLI exits 2).

Once a run completes, the full checkpoint (as large as the trainable weights
twice over, with AdamW's moments) is replaced by a record of the run (settings,
data fingerprint, loop state) unless ``keep_checkpoint`` is set; a rerun into
the same output still refuses other settings or data, and with the same ones
it returns the finished run's statistics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from typing import Any

import numpy as np
import torch

from relbridge.models.model_config import MODEL_DIR
from relbridge.models.train_config import TrainConfig
from relbridge.runtime.files import swap_in
from relbridge.runtime.loading import load_weights_only

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
TRAIN_CONFIG = "train_config.json"
TRAIN_STATS = "train_stats.json"
RESUMABLE_CHANGES = {"stop_after_steps", "resume", "progress", "num_threads", "keep_checkpoint"}
"""Settings that may change between a run and its resumption."""
_PARTS = ("state", "config")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable weights plus all head weights (frozen encoder weights are rebuilt from the base)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {
        k: v
        for k, v in model.state_dict().items()
        if k in trainable or not k.startswith("encoder.")
    }


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain tuples."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plain(value: Any) -> Any:
    """``value`` as JSON types (numpy scalars become Python numbers), for a weights-only file."""
    return json.loads(json.dumps(value, default=lambda o: o.item()))


def load_checkpoint(path: str) -> dict[str, Any]:
    """Reads a checkpoint without unpickling code; a bad file is ``ValueError('PATH: reason')``."""
    ckpt = load_weights_only(path, "checkpoint", advice="remove it or use another output")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _PARTS):
        raise ValueError(f"{path}: not a relbridge training checkpoint (no {' or '.join(_PARTS)})")
    return ckpt


def data_fingerprint(train_data, dev_data) -> str:
    """A hash of every training and dev instance, so a resume can tell the data changed.

    The settings alone cannot: a refresh or a rerun of the pipeline rewrites
    the same shard folder, and resuming would then mix two datasets.
    """
    digest = hashlib.sha1()
    for data in (train_data, dev_data):
        for item in (*data.pairs, *data.tags):
            digest.update(repr(item).encode())
        digest.update(b"|")
    return digest.hexdigest()


def config_diff(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Flat settings that differ between a checkpoint and ``cfg`` (and forbid resuming).

    A setting the checkpoint does not have was added to `TrainConfig` after
    it was written; the run that wrote it behaved as the setting's default
    does, so only a non-default value counts as a change.
    """
    now = plain(cfg.flat())
    missing = object()
    diff = []
    for name, value in now.items():
        if name in RESUMABLE_CHANGES:
            continue
        old = saved.get(name, missing)
        if old is missing:
            old = plain(cfg.setting_default(name))
        if old != value:
            diff.append(name)
    return diff


def check_resumable(ckpt: dict[str, Any], path: str, cfg: TrainConfig, data_id: str) -> None:
    """Raises when ``ckpt`` was written with other settings or trained on other data."""
    diff = config_diff(ckpt["config"], cfg)
    if diff:
        raise ValueError(f"{path} was written with different settings ({diff}); use another output")
    if ckpt.get("data", data_id) != data_id:  # checkpoints before this check have none
        d = cfg.data
        raise ValueError(
            f"{path} was trained on other data: "
            f"{' '.join(filter(None, (d.shards, *d.relx_train, *d.dev)))} changed "
            "since (rewritten or refreshed shards?); use another output or --no-resume"
        )


def check_output(cfg: TrainConfig) -> None:
    """Refuses an output whose model another run trained, when no checkpoint there says so.

    With a checkpoint, `check_resumable` compares the settings; without one (it
    was removed, or the folder came from elsewhere) the model's own
    ``train_config.json`` does, so that a new run cannot silently replace a
    model trained with other settings. ``resume`` off replaces it on purpose.
    """
    output = cfg.run.output
    model_dir = os.path.join(output, MODEL_DIR)
    if not cfg.run.resume or os.path.exists(os.path.join(output, CHECKPOINT)):
        return
    if not os.path.isdir(model_dir):
        return
    try:
        with open(os.path.join(model_dir, TRAIN_CONFIG), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):  # no or an unreadable record: not known to be this run's
        saved = None
    if not isinstance(saved, dict) or config_diff(saved, cfg):
        raise ValueError(
            f"{model_dir}: a model trained with other settings, and no {CHECKPOINT} beside it; "
            "use another output, or --no-resume to replace it"
        )


def save_model_dir(model, cfg: TrainConfig) -> str:
    """Writes ``<output>/model`` via a temporary directory, swapped in for the old one.

    A reader sees the old model or the new one, never neither (`swap_in`: one
    atomic exchange on Linux). The training config goes beside the model
    (``train_config.json``), so every saved model says how it was trained.
    """
    final = os.path.join(cfg.run.output, MODEL_DIR)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final + ".old", ignore_errors=True)  # what a crash in earlier versions left
    model.save_pretrained(tmp)
    write_json(os.path.join(tmp, TRAIN_CONFIG), cfg.flat())
    swap_in(tmp, final)
    return final


def write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def run_record(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What stays of a completed run's checkpoint: no weights, no optimizer."""
    return {k: ckpt[k] for k in ("state", "config", "data", "model_config") if k in ckpt} | {
        "completed": True
    }


def finished_run(ckpt: dict[str, Any], output: str) -> dict[str, Any] | None:
    """The statistics of a completed run (record or full checkpoint), or None to train afresh."""
    if not ckpt.get("completed"):
        return None
    stats = os.path.join(output, TRAIN_STATS)
    if os.path.isfile(stats) and os.path.isdir(os.path.join(output, MODEL_DIR)):
        with open(stats, encoding="utf-8") as f:
            return json.load(f)
    return None
