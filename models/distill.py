"""Knowledge distillation: a trained model's relation probabilities as soft training targets.

Why: a model with levitated entity markers (`relbridge.models.markers`) scores all
of a sentence's candidate pairs in one encoder pass, about 3.5x the speed of an
inline-marker model on news text, but trained on the gold labels alone it reads
relations less well than the inline model it starts from. With ``distill_from``
the trainer also fits the student's relation distribution of each training pair,
both directions, to the teacher's (Hinton et al. 2015, "Distilling the
Knowledge in a Neural Network"): the teacher's probabilities say which wrong
relations are nearly right, which a one-hot label cannot.

`teacher_targets` scores the training pairs once, before the first step, with
the teacher in its own input form (`predict_pairs`); `distillation_loss` is the
temperature-scaled KL term the trainer adds to the relation loss. The tagger
can learn from the teacher too: `start_from_heads` starts it (and the relation
head) from the teacher's, and `teacher_tag_logits` with `tag_distillation_loss`
keep it reading names as the teacher does while the shared encoder moves.

Measured (README, "Distilling the inline model"): with all of these and
unannotated-pair negatives, the levitated student scores 0.06 marked RELX
points below the inline teacher on the mean and 0.54 below on raw text
(without the tagger's terms: 2.4 below on raw text), so `benchmark relx`
trains it and delivers it; `train`'s flags are off by default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from relbridge.data_specs.relations import NA
from relbridge.models.data import PairInstance
from relbridge.models.negatives import is_boundary_negative
from relbridge.runtime.devices import native_bf16

logger = logging.getLogger(__name__)


def teacher_targets(
    path: str,
    pairs: Sequence[PairInstance],
    relations: Sequence[str],
    device: torch.device,
    temperature: float,
    batch_size: int = 64,
) -> torch.Tensor:
    """The teacher's softened relation probabilities of ``pairs``: (N, 2, R), float32, on CPU.

    Args:
      path: the teacher model folder (``relbridge train``'s ``OUT/model``).
      pairs: the training pairs, in the order of the student's pair encodings.
      relations: the student's relation names; the columns follow them.
      device: where the teacher runs (bf16 autocast where the device has it).
      temperature: the distillation temperature (`soften`).

    Raises:
      ValueError: the teacher predicts other relations than the student learns.
    """
    from relbridge.models.evaluate import predict_pairs

    teacher = _load_teacher(path, device)
    names = list(teacher.inventory.names)
    if sorted(names) != sorted(relations):
        raise ValueError(
            f"{path}: the teacher's relations differ from the training data's "
            f"(only the teacher: {sorted(set(names) - set(relations))}, "
            f"only the data: {sorted(set(relations) - set(names))})"
        )
    logger.info("scoring %d training pairs with the teacher %s", len(pairs), path)
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=native_bf16(device.type))
    with torch.inference_mode(), bf16:
        probs = predict_pairs(teacher, pairs, batch_size=batch_size, progress="teacher")
    del teacher
    columns = [names.index(r) for r in relations]
    targets = soften(torch.from_numpy(probs[..., columns]), temperature)
    # the teacher never saw a wrong boundary: a boundary negative's target is NA alone
    rows = [i for i, p in enumerate(pairs) if is_boundary_negative(p)]
    if rows:
        targets[rows] = 0.0
        targets[rows, :, list(relations).index(NA)] = 1.0
    return targets


def _load_teacher(path: str, device: torch.device) -> torch.nn.Module:
    """The teacher for inference, loaded without drawing from the global random stream.

    Building a model draws its marker noise from torch's generator. The
    trainer loads the teacher after restoring a checkpoint's random state, so
    without this a resumed run would draw other dropout masks than the run it
    continues.
    """
    from relbridge.models.extractor import RelationExtractor

    with torch.random.fork_rng(devices=[]):
        return RelationExtractor.from_pretrained(path, inference=True).to(device)


def soften(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log(probs) / temperature)``: the distribution at a higher temperature."""
    logits = torch.log(probs.double().clamp_min(1e-12)) / temperature
    return torch.softmax(logits, dim=-1).float()


def distillation_loss(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(targets || softmax(logits / T))``, the mean over rows and directions.

    ``logits`` (N, 2, R) are the student's, ``targets`` (N, 2, R) softened
    teacher probabilities (any leading shape works: the tagger's are (words, K)).
    The T^2 factor keeps the gradient's scale independent of the temperature
    (Hinton et al.).
    """
    log_student = torch.log_softmax(logits.float() / temperature, dim=-1)
    kl = torch.nn.functional.kl_div(log_student, targets.to(log_student.device), reduction="none")
    return temperature**2 * kl.sum(-1).mean()  # sum over classes, mean over the rest


def start_from_heads(model: torch.nn.Module, path: str) -> list[str]:
    """Copies a trained model's heads into ``model`` where they mean the same; returns their names.

    The student starts from the teacher's encoder and, with this, from its
    heads too: the tagger (LayerNorm, head and CRF transitions: same tags), the
    relation head (same relations, in the same order) and the marker vectors
    (same marker tokens). Trained from a fresh tagger for one epoch, the
    levitated student found about 5 in 100 fewer RELX names in raw text than
    its teacher. Parameters whose meaning differs keep their fresh values.
    """
    from relbridge.models.model_config import CONFIG_FILE, HEADS_FILE, ModelConfig, marker_tokens
    from relbridge.runtime.loading import load_weights_only, read_json_object

    heads = load_weights_only(os.path.join(path, HEADS_FILE), "heads file", dict)
    trained = ModelConfig.from_json(read_json_object(os.path.join(path, CONFIG_FILE), ()))
    same = {
        "tag_": trained.tags == model.cfg.tags,
        "rel_": trained.relations == model.cfg.relations,
        "marker_embeddings.": marker_tokens(trained) == marker_tokens(model.cfg),
    }
    own = model.state_dict()
    copied = [
        name
        for name, value in heads.items()
        if any(name.startswith(p) and ok for p, ok in same.items())
        and name in own
        and own[name].shape == value.shape
    ]
    with torch.no_grad():
        for name in copied:
            own[name].copy_(heads[name])
    logger.info("started from %s's heads: %s", path, ", ".join(copied) or "none fit")
    return copied


def teacher_tag_logits(
    path: str, encoded: Sequence, tags: Sequence[str], device: torch.device, batch_size: int = 64
) -> list[torch.Tensor]:
    """The teacher's tag logits of each tagging input: one (T_i, K) float32 tensor, on CPU.

    ``encoded`` are the student's tagging encodings (`RelationExtractor.encode_tags`):
    plain text, which an inline and a levitated model read alike, so the
    teacher scores the very same token ids. ``tags``: the student's tag names.

    Raises:
      ValueError: the teacher has other tags.
    """
    from relbridge.runtime.progress import ProgressBar

    teacher = _load_teacher(path, device)
    if tuple(teacher.cfg.tags) != tuple(tags):
        raise ValueError(f"{path}: the teacher tags {teacher.cfg.tags}, the student {tuple(tags)}")
    out: list[torch.Tensor] = [torch.empty(0)] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=native_bf16(device.type))
    logger.info("scoring %d tagging inputs with the teacher %s", len(encoded), path)
    with torch.inference_mode(), bf16, ProgressBar(len(order), "teacher tags", "input") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in teacher.collate([encoded[i] for i in idx]).items()}
            logits = teacher(batch, labels=False)["tag_logits"].float().cpu()  # (b, T, K)
            for row, i in enumerate(idx):
                out[i] = logits[row, : len(encoded[i].input_ids)].clone()
            bar.update(len(idx))
    return out


def tag_distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    rows: Sequence[int],
    targets: Sequence[torch.Tensor],
    temperature: float,
) -> torch.Tensor:
    """``T^2 * KL`` from the teacher's tag distribution, the mean over the words of ``rows``.

    ``logits`` (B, T, K) and ``labels`` (B, T) are the student's batch; a word
    is each position whose label is not -100 (a word's first subword, labelled
    or unknown); ``targets[j]`` (T_j, K) are the teacher's logits of row ``rows[j]``.
    Matching the emissions keeps the student's tagger reading names as its
    teacher does, CRF transitions included when both start from the same ones.
    """
    student, teacher = [], []
    for row, target in zip(rows, targets):
        words = labels[row, : len(target)] != -100
        student.append(logits[row, : len(target)][words])
        teacher.append(target.to(logits.device)[words])
    if not sum(len(s) for s in student):  # no words (inputs truncated to nothing): no term
        return logits.sum() * 0.0
    targets = torch.softmax(torch.cat(teacher).float() / temperature, dim=-1)  # (words, K)
    return distillation_loss(torch.cat(student), targets, temperature)
