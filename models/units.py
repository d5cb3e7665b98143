"""Training data as sampling units: loading, NA subsampling, encoding, the per-epoch sampler.

`load_training_data` reads the training data and holds out dev; `build_units`
encodes it once into pair, tagging and bag units; `UnitSampler` draws each
epoch's language-balanced, length-bucketed micro-batches from them, as a
function of (seed, epoch) only, which is what makes a resumed run identical.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from relbridge.data_specs import read_shards
from relbridge.data_specs.aliases import name_problem
from relbridge.data_specs.relations import NA
from relbridge.models.data import (
    LanguageBalancedSampler,
    RelationData,
    TagInstance,
    hash_fraction,
    make_bags,
    read_data,
)
from relbridge.models.extractor import Encoded, RelationExtractor
from relbridge.models.negatives import boundary_negatives, unannotated_negatives
from relbridge.models.train_config import TrainConfig
from relbridge.runtime.batching import length_bucketed_batches

logger = logging.getLogger(__name__)


def subsample_na(pairs: Sequence, ratio: float, seed: int) -> list:
    """Every pair with a relation and at most ``ratio`` times as many NA-only pairs, in order."""
    na = [i for i, p in enumerate(pairs) if {p.label_12, p.label_21} <= {NA, None}]
    keep_na = int(ratio * (len(pairs) - len(na)))
    if len(na) <= keep_na:
        return list(pairs)
    dropped = set(na) - set(random.Random(seed).sample(na, keep_na))
    return [p for i, p in enumerate(pairs) if i not in dropped]


def load_training_data(cfg: TrainConfig) -> tuple[RelationData, RelationData]:
    """Reads the training data and the dev split (given files, or a hash split by sentence id)."""
    seed, d = cfg.run.seed, cfg.data
    train = RelationData()
    if d.shards:
        train.extend(read_data(d.shards, "shards"))
    for path in d.relx_train:
        marked = read_data(path, "relx")
        if d.unannotated_negatives:
            negatives = unannotated_negatives(marked.pairs, d.unannotated_negatives, seed)
            logger.info("%s: %d unannotated-pair negatives", path, len(negatives))
            marked = RelationData(marked.pairs + negatives, marked.tags, marked.skipped)
        if d.boundary_negatives:
            negatives = boundary_negatives(marked.pairs, d.boundary_negatives, seed)
            logger.info("%s: %d boundary negatives", path, len(negatives))
            marked = RelationData(marked.pairs + negatives, marked.tags, marked.skipped)
        train.extend(marked)
    if d.tagging_shards:
        train.extend(projected_tagging(d.tagging_shards, train.entity_types()))
    if d.dev:
        dev = RelationData()
        for path in d.dev:
            dev.extend(read_data(path))
    elif d.dev_fraction > 0:
        held = {p.id for p in train.pairs if hash_fraction(p.id, seed) < d.dev_fraction}
        dev = train.filter(held)
        train = RelationData(
            [p for p in train.pairs if p.id not in held],
            [t for t in train.tags if t.id not in held],
        )
    else:
        dev = RelationData()
    if d.max_na_ratio:
        train = RelationData(subsample_na(train.pairs, d.max_na_ratio, seed), train.tags)
    if d.max_train_instances and len(train.pairs) > d.max_train_instances:
        rng = random.Random(seed)
        keep = sorted(rng.sample(range(len(train.pairs)), d.max_train_instances))
        train = RelationData([train.pairs[i] for i in keep], train.tags)
    if d.max_dev_instances and len(dev.pairs) > d.max_dev_instances:
        rng = random.Random(f"{seed}:dev")
        keep = sorted(rng.sample(range(len(dev.pairs)), d.max_dev_instances))
        # The tagging scores follow the sampled pairs: tagging every dev sentence at
        # each evaluation would cost more than the relation scores.
        kept = {dev.pairs[i].id for i in keep}
        dev = RelationData([dev.pairs[i] for i in keep], [t for t in dev.tags if t.id in kept])
    if d.distill_shards:
        if not cfg.optim.distill_from:
            raise ValueError("distill_shards needs distill_from: a teacher to score its pairs")
        train.extend(distillation_pairs(d.distill_shards, train.entity_types()))
    if not train.pairs:
        raise ValueError(f"{training_paths(cfg)}: no training pairs")
    return train, dev


def distillation_pairs(path: str, types: set[str]) -> RelationData:
    """The target-side pairs of shards, unlabelled, for distillation only (`distill_shards`).

    Their entity spans are projected from KB-matched source names; their
    distant labels say mostly NA because the KB lacks the fact, not because the
    sentence does, so they are dropped and the teacher's probabilities are the
    only target. Types that the labelled data lacks become untyped, as in
    `projected_tagging`. They come after the dev split and the subsampling, so
    they never count as dev and never as NA.
    """
    pairs = [
        dataclasses.replace(
            p, label_12=None, label_21=None,
            e1_type=p.e1_type if p.e1_type in types else "",
            e2_type=p.e2_type if p.e2_type in types else "",
        )  # fmt: skip
        for p in read_data(path, "shards").pairs
        if p.side == "tgt"
    ]
    logger.info("%s: %d target-language pairs for distillation", path, len(pairs))
    if not pairs:
        raise ValueError(f"{path}: no target-language pairs to distill on")
    return RelationData(pairs, [])


def training_paths(cfg: TrainConfig) -> str:
    """The training data's paths, for an error about all of it."""
    return " ".join(filter(None, (cfg.data.shards, *cfg.data.relx_train)))


def projected_tagging(path: str, types: set[str]) -> RelationData:
    """The target-language names of shards as tagging instances (`DataConfig.tagging_shards`).

    Only the target side: its mentions are projected from KB-matched source names,
    so they teach the tagger where names begin and end in a language that the
    labelled data lacks (German ``Universität von Minnesota``), while the source
    side's KB-alias boundaries would compete with the labelled data's own. Only
    names (`relbridge.data_specs.aliases.name_problem`: not ``Menschen`` for the
    alias *human*), and not a relation pair. A type that the labelled data lacks
    becomes untyped, so these mentions cannot change the model's entity types.
    Words that no name covers stay unknown to the partial-label CRF.
    """
    tags = []
    for row in read_shards(path):
        spans = tuple(
            (m.start, m.end, m.type if m.type in types else "")
            for m in row.tgt_mentions
            if name_problem(row, m) is None
        )
        if spans:
            tags.append(TagInstance(row.pair_id, row.tgt_lang, tuple(row.tgt_tokens), spans))
    logger.info("%s: %d sentences with projected names %s", path, len(tags),
                dict(Counter(t.lang for t in tags)))  # fmt: skip
    return RelationData(tags=tags)


@dataclass(frozen=True)
class Unit:
    """One sampled training unit: a pair input, a tagging input, or a bag."""

    kind: str  # "pair" | "tag" | "bag"
    index: int
    lang: str


def build_units(
    model: RelationExtractor, data: RelationData, cfg: TrainConfig
) -> tuple[list[Unit], list[Encoded], list[Encoded], list, list]:
    """Encodes the training data once and lists its sampling units.

    Returns (units, pair encodings, tagging encodings, bags, encoded pairs). Pair
    units and bag members index the pair encodings, which hold only the pairs
    that fit ``max_seq_len`` (the encoded pairs, in the same order); ``data``
    itself is left as it was.
    """
    pair_enc, kept = [], []
    for p in data.pairs:
        try:
            enc = model.encode_pair(
                p.tokens, p.e1, p.e2, p.label_12, p.label_21, p.e1_type, p.e2_type
            )
        except ValueError as e:  # an entity longer than max_seq_len: nothing to learn from
            logger.debug("skipping training pair %s: %s", p.id, e)
            continue
        pair_enc.append(enc)
        kept.append(p)
    if len(kept) < len(data.pairs):
        logger.warning(
            "skipped %d of %d training pairs whose entities do not fit max_seq_len=%d",
            len(data.pairs) - len(kept), len(data.pairs), cfg.model.max_seq_len,
        )  # fmt: skip
    tag_enc = []
    if cfg.model.tagging_weight > 0 and cfg.data.tagging_ratio > 0:
        # With the CRF head, words that no mention covers are unknown, not O.
        tag_enc = [model.encode_tags(t.tokens, t.mentions, model.cfg.tag_crf) for t in data.tags]
    units: list[Unit] = []
    bags = []
    if cfg.data.aggregation == "none":
        units += [Unit("pair", i, p.lang) for i, p in enumerate(kept)]
    else:
        bags = make_bags(kept)
        for b, bag in enumerate(bags):
            langs = [kept[i].lang for i, _ in bag.members]
            units.append(Unit("bag", b, max(set(langs), key=langs.count)))
    if not units:  # the sampler would fail with a bare "no instances to sample"
        why = "no pair fits max_seq_len" if not kept else "no bag: no pair has both KB ids"
        raise ValueError(f"{training_paths(cfg)}: no training pairs ({why})")
    units += [Unit("tag", i, t.lang) for i, t in enumerate(data.tags[: len(tag_enc)])]
    return units, pair_enc, tag_enc, bags, kept


class UnitSampler:
    """Per-epoch micro-batches: relation units and tagging units, each language-balanced.

    Relation units (pairs or bags) are drawn once per epoch on average (temperature
    sampling over languages); tagging units add ``tagging_ratio`` times as many
    draws. Within chunks of 32 batches, inputs of similar length share a batch
    (less padding), and the batches are shuffled. The result depends only on
    (seed, epoch), which is what makes a resumed run identical.
    """

    def __init__(self, units: list[Unit], lengths: list[int], cfg: TrainConfig):
        self.units, self.lengths, self.cfg = units, lengths, cfg
        self.rel_idx = [i for i, u in enumerate(units) if u.kind != "tag"]
        self.tag_idx = [i for i, u in enumerate(units) if u.kind == "tag"]
        temperature, seed = cfg.data.lang_temperature, cfg.run.seed
        self.rel = LanguageBalancedSampler([units[i].lang for i in self.rel_idx], temperature, seed)
        n_tags = round(cfg.data.tagging_ratio * len(self.rel_idx)) if self.tag_idx else 0
        self.tag = (
            LanguageBalancedSampler(
                [units[i].lang for i in self.tag_idx], temperature, seed + 1, n_tags
            )
            if n_tags
            else None
        )

    def batches(self, epoch: int) -> list[list[int]]:
        drawn = [self.rel_idx[i] for i in self.rel.order(epoch)]
        if self.tag is not None:
            drawn += [self.tag_idx[i] for i in self.tag.order(epoch)]
        rng = random.Random(f"{self.cfg.run.seed}:batches:{epoch}")
        return length_bucketed_batches(drawn, self.lengths, self.cfg.optim.batch_size, rng)


def unit_lengths(
    units: list[Unit], pair_enc: list[Encoded], tag_enc: list[Encoded], bags: list, max_bag: int
) -> list[int]:
    """Subwords per unit (a bag: its kept members together), for length bucketing."""
    return [
        len(pair_enc[u.index].input_ids)
        if u.kind == "pair"
        else len(tag_enc[u.index].input_ids)
        if u.kind == "tag"
        else sum(len(pair_enc[i].input_ids) for i, _ in bags[u.index].members[:max_bag])
        for u in units
    ]
