"""The multi-task relation extractor: entity markers + entity-start pooling + BIO tagger.

`RelationExtractor(ModelConfig)` wraps any Hugging Face encoder (`AutoModel`) with
two heads trained jointly:

* **relation head**: the two entities of a pair are wrapped in marker tokens
  (``[E1] .. [/E1]`` and ``[E2] .. [/E2]``, or typed ``[E1:PER] .. [/E1:PER]``)
  that are added to the tokenizer as special tokens. The hidden states at the two
  start markers are concatenated and classified (Baldini Soares et al. 2019,
  "entity start"). One encoding scores **both directions** of the pair:
  ``concat(h_e1, h_e2)`` classifies the relation with e1 as subject and
  ``concat(h_e2, h_e1)`` the relation with e2 as subject. The markers only name
  the two entities (E1 is the one given first); the direction comes from the
  concatenation order, so a directed label never leaks through the markers.
* **tagging head**: token-level BIO tags over entity mentions, trained on
  *unmarked* sentences (so it can find mentions in raw text at extraction time).
  Word labels go to the first subword; other subwords and specials get -100.

Distant-supervision bags (OpenNRE's ``scope``) are aggregated by `aggregate_bags`
with selective attention or averaging over instance representations.

Marker embeddings live in a small trainable table of their own, added in place of
the encoder's word embeddings at marker positions, so the (large) word embedding
matrix can stay frozen (``freeze_embeddings``) while the markers still learn. They
start as the encoder's own ``@`` (E1) and ``#`` (E2) embeddings (punctuation
markers, Zhou & Chen 2021).

Usage::

    model = RelationExtractor(ModelConfig(encoder="path/to/encoder", relations=("NA", "per:spouse")))
    out = model(model.collate([model.encode_pair(tokens, (0, 2), (5, 6))]))
    out["relation_logits"]  # (B, 2, R): [:, 0] e1->e2, [:, 1] e2->e1
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from relbridge.models import markers as levitated
from relbridge.models.model_config import (
    CONFIG_FILE, ENCODER_DIR, HEADS_FILE, RELATIONS_FILE, UNTYPED, ModelConfig, check_model_dir,
    marker_tokens,
)  # fmt: skip
from relbridge.models.partial_crf import UNKNOWN as UNKNOWN_TAG
from relbridge.models.partial_crf import not_tag, partial_crf_loss
from relbridge.runtime.loading import load_encoder, load_weights_only, read_json_object
from relbridge.runtime.loading import save_tokenizer

logger = logging.getLogger(__name__)

@dataclass
class Encoded:
    """One model input before padding.

    ``e1_pos``/``e2_pos`` index the start markers (-1 for a tagging-only input);
    ``rel_labels`` are the class ids of (e1->e2, e2->e1), -100 when unknown;
    ``tag_labels`` has one id per subword, -100 where not trained;
    ``position_ids`` and ``groups`` are set for levitated markers (models/markers.py).
    """

    input_ids: list[int]
    e1_pos: int = -1
    e2_pos: int = -1
    rel_labels: tuple[int, int] = (-100, -100)
    tag_labels: list[int] | None = None
    word_ids: list[int | None] | None = None
    position_ids: list[int] | None = None
    groups: list[int] | None = None


class RelationExtractor(nn.Module):
    """Encoder + relation head (entity-start pooling) + BIO tagging head.

    Args:
      cfg: the model configuration (``cfg.encoder``: what `AutoTokenizer` loads).
      encoder_dtype, inference: the dtype of the encoder's stored weights, and whether
        it is loaded for inference only (`relbridge.runtime.loading.load_encoder`).
    """

    def __init__(self, cfg: ModelConfig, encoder_dtype=None, inference: bool = False):
        super().__init__()
        from transformers import AutoTokenizer

        self.cfg = cfg
        self.inventory = cfg.inventory
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.encoder)
        self.encoder = load_encoder(cfg.encoder, encoder_dtype, inference)
        markers = marker_tokens(cfg)
        self.tokenizer.add_tokens(markers, special_tokens=True)
        if self.encoder.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        self.marker_ids = {m: self.tokenizer.convert_tokens_to_ids(m) for m in markers}
        hidden = self.encoder.config.hidden_size
        word_emb = self.encoder.get_input_embeddings()
        self.marker_embeddings = nn.Embedding(len(markers), hidden)
        self.marker_embeddings.weight.data.copy_(self._marker_init(markers))  # (M, H)
        lut = torch.full((word_emb.num_embeddings,), -1, dtype=torch.long)
        for i, m in enumerate(markers):
            lut[self.marker_ids[m]] = i
        self.register_buffer("marker_lut", lut, persistent=False)
        if cfg.freeze_embeddings:
            word_emb.weight.requires_grad_(False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rel_norm = nn.LayerNorm(2 * hidden)
        self.rel_head = nn.Linear(2 * hidden, len(self.inventory))
        # log-odds of NA among annotated pairs minus among all trained pairs (`negatives`)
        self.register_buffer("marked_na_bias", torch.zeros(()))
        # The encoder's hidden states have a tiny spread per dimension (e5-small:
        # std ~0.13 at norm ~5), which a bare linear head at head_lr barely moves
        # off the all-O prior; the relation head has rel_norm for the same reason.
        self.tag_norm = nn.LayerNorm(hidden)
        self.tag_head = nn.Linear(hidden, len(cfg.tags))
        self.tag2id = {t: i for i, t in enumerate(cfg.tags)}
        if cfg.tag_crf:  # (K, K) [previous, next]; zero: the untrained CRF is the softmax
            self.tag_transitions = nn.Parameter(torch.zeros(len(cfg.tags), len(cfg.tags)))
        self.max_len = min(cfg.max_seq_len, _model_max_len(self.encoder, self.tokenizer))
        self.position_offset = levitated.position_offset(self.encoder)

    def _marker_init(self, markers: Sequence[str]) -> torch.Tensor:
        """Initial marker vectors: the encoder's own ``@`` (E1) and ``#`` (E2) embeddings.

        Punctuation the encoder already reads works as well as new marker tokens
        (Zhou & Chen 2021, "typed entity marker (punct)") and, unlike random
        vectors, still means something to frozen lower layers (``freeze_layers``).
        A little noise (5% of the embedding std) keeps each marker distinct. A
        tokenizer without the symbol falls back to the embedding mean. Returns (M, H).
        """
        weight = self.encoder.get_input_embeddings().weight.detach()  # (V, H)
        std = weight[:: max(1, len(weight) // 4096)].float().std()  # 4,096+ rows: 0.27 s less
        noise = torch.randn(len(markers), weight.size(1))  # (M, H)
        rows = []
        for marker, z in zip(markers, noise):
            symbol = "@" if marker.lstrip("[/").startswith("E1") else "#"
            ids = self.tokenizer([symbol], is_split_into_words=True, add_special_tokens=False)
            ids = ids["input_ids"]
            known = bool(ids) and ids[-1] != self.tokenizer.unk_token_id
            base = weight[ids[-1]] if known else weight.mean(0)
            rows.append(base + (0.05 if known else 0.5) * std * z)
        return torch.stack(rows)

    # ------------------------------------------------------------------ inputs

    def _type(self, entity_type: str | None) -> str:
        return entity_type if entity_type in self.cfg.entity_types else UNTYPED

    def _markers(self, which: str, entity_type: str | None) -> tuple[str, str]:
        if self.cfg.marker_style == "untyped":
            return f"[{which}]", f"[/{which}]"
        t = self._type(entity_type)
        return f"[{which}:{t}]", f"[/{which}:{t}]"

    def encode_pair(
        self,
        words: Sequence[str],
        e1: tuple[int, int],
        e2: tuple[int, int],
        label_12: str | None = None,
        label_21: str | None = None,
        e1_type: str = "",
        e2_type: str = "",
    ) -> Encoded:
        """Marks two word spans ``[start, end)`` and tokenizes the sentence.

        Long sentences are cut to a word window around both entities that fits
        ``max_seq_len`` subwords. Labels are relation names (None: unknown).
        """
        (s1, t1), (s2, t2) = e1, e2
        if not (0 <= s1 < t1 <= len(words) and 0 <= s2 < t2 <= len(words)):
            raise ValueError(f"entity spans {e1} {e2} out of range for {len(words)} words")
        if s1 < t2 and s2 < t1:
            raise ValueError(f"entity spans {e1} and {e2} overlap")
        open1, close1 = self._markers("E1", e1_type)
        open2, close2 = self._markers("E2", e2_type)
        inv = self.inventory.rel2id
        labels = tuple(-100 if lab is None else inv[lab] for lab in (label_12, label_21))
        if self.cfg.marker_mode == "levitated":
            packed = levitated.pack(
                levitated.layout(self.tokenizer, words),
                [levitated.PairSpec(e1, e2)],
                [tuple(self.marker_ids[m] for m in (open1, close1, open2, close2))],
                self.position_offset,
                self.max_len - 4,
            )
            if packed is None:
                raise ValueError("the two entities span more subwords than max_seq_len allows")
            ids, positions, groups, [(e1_pos, e2_pos)] = packed
            return Encoded(ids, e1_pos, e2_pos, labels, position_ids=positions, groups=groups)
        inserts = {s1: [open1], t1: [close1], s2: [open2], t2: [close2]}
        if t1 == s2:
            inserts[s2] = [close1, open2]
        if t2 == s1:
            inserts[s1] = [close2, open1]
        marked: list[str] = []
        marker_at: list[int] = []  # positions of the four markers in `marked`
        for i in range(len(words) + 1):
            for m in inserts.get(i, []):
                marker_at.append(len(marked))
                marked.append(m)
            if i < len(words):
                marked.append(words[i])
        gap = (marker_at[1] + 1, marker_at[2])  # words between the two entities
        ids = levitated.fit_inline(
            self.tokenizer, marked, self.max_len, min(marker_at), max(marker_at) + 1, gap
        )
        e1_pos = ids.index(self.marker_ids[open1])
        e2_pos = ids.index(self.marker_ids[open2])
        return Encoded(ids, e1_pos, e2_pos, labels)  # type: ignore[arg-type]

    def encode_tags(
        self,
        words: Sequence[str],
        mentions: Sequence[tuple[int, int, str]] = (),
        partial: bool = False,
    ) -> Encoded:
        """Tokenizes an unmarked sentence with BIO labels on the first subword of each word.

        Args:
          words: the sentence's words.
          mentions: ``(start, end, type)`` word spans ``[start, end)``; overlapping
            later mentions are dropped.
          partial: words outside every mention are unknown, not ``O`` (and the word
            after a mention is known not to continue it); for the CRF head only.
        """
        word_tags = ["?" if partial else "O"] * len(words)
        for start, end, etype in sorted(mentions):
            if any(t not in ("O", "?") for t in word_tags[start:end]):
                continue
            t = self._type(etype)
            word_tags[start] = f"B-{t}"
            for i in range(start + 1, end):
                word_tags[i] = f"I-{t}"
            if end < len(words) and word_tags[end] == "?":
                word_tags[end] = f"!I-{t}"
        enc = self.tokenizer(
            list(words), truncation=True, max_length=self.max_len, is_split_into_words=True
        )
        word_ids = enc.word_ids()
        labels, previous = [], None
        for w in word_ids:
            labels.append(-100 if w is None or w == previous else self._tag_code(word_tags[w]))
            previous = w
        return Encoded(enc["input_ids"], tag_labels=labels, word_ids=word_ids)

    def _tag_code(self, tag: str) -> int:
        if tag == "?":
            return UNKNOWN_TAG
        return not_tag(self.tag2id[tag[1:]]) if tag[0] == "!" else self.tag2id[tag]

    def collate(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Pads a list of inputs (right padding) into a batch of tensors."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(x.input_ids) for x in items)
        n = len(items)
        input_ids = torch.full((n, width), pad, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        tags = torch.full((n, width), -100, dtype=torch.long)
        levitated = any(x.groups is not None for x in items)
        positions = torch.full((n, width), self.position_offset, dtype=torch.long)
        groups = torch.full((n, width), -1, dtype=torch.long)
        for i, x in enumerate(items):
            input_ids[i, : len(x.input_ids)] = torch.tensor(x.input_ids)
            attention[i, : len(x.input_ids)] = 1
            if x.tag_labels is not None:
                tags[i, : len(x.tag_labels)] = torch.tensor(x.tag_labels)
            if levitated:
                k = len(x.input_ids)
                default = range(self.position_offset, self.position_offset + k)
                positions[i, :k] = torch.tensor(x.position_ids or list(default))
                groups[i, :k] = torch.tensor(x.groups or [0] * k)
        extra = {"position_ids": positions, "groups": groups} if levitated else {}
        return {
            **extra,  # levitated markers: (B, T) position ids and attention groups
            "input_ids": input_ids,  # (B, T)
            "attention_mask": attention,  # (B, T)
            "e1_pos": torch.tensor([x.e1_pos for x in items]),  # (B,)
            "e2_pos": torch.tensor([x.e2_pos for x in items]),  # (B,)
            "rel_labels": torch.tensor([x.rel_labels for x in items]),  # (B, 2)
            "tag_labels": tags,  # (B, T)
        }

    # ------------------------------------------------------------------ model

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings with marker positions taken from the marker table. (B, T, H)"""
        embeds = self.encoder.get_input_embeddings()(input_ids)
        marker = self.marker_lut[input_ids]  # (B, T), -1 where not a marker
        is_marker = marker >= 0
        if is_marker.any():
            embeds = embeds.clone()
            embeds[is_marker] = self.marker_embeddings(marker[is_marker]).to(embeds.dtype)
        return embeds

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's last hidden states (B, T, H); levitated batches get their own mask."""
        embeds = self.embed(batch["input_ids"])  # (B, T, H)
        if "groups" not in batch:
            mask = batch["attention_mask"]
            return self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        bias = levitated.attention_bias(batch["groups"], embeds.dtype)  # (B, 1, T, T)
        out = self.encoder(
            inputs_embeds=embeds, attention_mask=bias, position_ids=batch["position_ids"]
        )
        return out.last_hidden_state

    def pair_representations(
        self,
        hidden: torch.Tensor,
        e1_pos: torch.Tensor,
        e2_pos: torch.Tensor,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Entity-start representations of both directions: (N, 2, 2H).

        One pair per row of ``hidden`` (B, T, H), or with ``rows`` (N,) the row of each pair.
        """
        if rows is None:
            rows = torch.arange(hidden.size(0), device=hidden.device)
        h1 = hidden[rows, e1_pos.clamp(min=0)]  # (B, H)
        h2 = hidden[rows, e2_pos.clamp(min=0)]  # (B, H)
        forward = torch.cat([h1, h2], dim=-1)  # (B, 2H): e1 subject
        backward = torch.cat([h2, h1], dim=-1)  # (B, 2H): e2 subject
        return self.rel_norm(torch.stack([forward, backward], dim=1))

    def forward(
        self, batch: dict[str, torch.Tensor], labels: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Runs both heads.

        Args:
          batch: a `collate` output.
          labels: when truthy (or None and the batch has labels), adds
            ``loss`` and the per-task ``relation_loss``/``tagging_loss``.

        Returns:
          ``relation_logits`` (B, 2, R) with [:, 0] = e1->e2 and [:, 1] = e2->e1,
          ``pair_reps`` (B, 2, 2H), ``tag_logits`` (B, T, K), ``has_pair`` (B,),
          and the losses when labels are used.
        """
        hidden = self.dropout(self.encode(batch))  # (B, T, H)
        has_pair = batch["e1_pos"] >= 0  # (B,)
        reps = self.pair_representations(hidden, batch["e1_pos"], batch["e2_pos"])  # (B, 2, 2H)
        result = {
            "relation_logits": self.rel_head(self.dropout(reps)),  # (B, 2, R)
            "pair_reps": reps,
            "tag_logits": self.tag_head(self.tag_norm(hidden)),  # (B, T, K)
            "has_pair": has_pair,
        }
        if labels or (labels is None and "rel_labels" in batch):
            result.update(self.losses(result, batch))
        return result

    def losses(
        self, result: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Weighted sum of the mean relation and tagging cross-entropies (the parts detached)."""
        rel_labels = batch["rel_labels"].masked_fill(
            ~result["has_pair"].unsqueeze(1), -100
        )  # (B, 2)
        rel_loss = masked_cross_entropy(result["relation_logits"], rel_labels)
        tag_loss = self.tagging_loss(result["tag_logits"], batch["tag_labels"])
        loss = self.cfg.relation_weight * rel_loss + self.cfg.tagging_weight * tag_loss
        return {"loss": loss, "relation_loss": rel_loss.detach(), "tagging_loss": tag_loss.detach()}

    def tagging_loss(self, tag_logits: torch.Tensor, tag_labels: torch.Tensor) -> torch.Tensor:
        """Partial-label CRF loss with `tag_crf`, else the mean cross-entropy of the labelled words."""
        if self.cfg.tag_crf:
            return partial_crf_loss(tag_logits, tag_labels, self.cfg.tags, self.tag_transitions)
        return masked_cross_entropy(tag_logits, tag_labels)

    def aggregate_bags(
        self,
        reps: torch.Tensor,
        scope: Sequence[tuple[int, int]],
        mode: str,
        bag_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bag logits from instance representations (OpenNRE's ``scope``).

        Args:
          reps: instance representations, (N, 2H), bag members contiguous.
          scope: one ``(start, end)`` row range per bag.
          mode: ``attention`` (selective attention with the relation-head rows
            as queries) or ``average``.
          bag_labels: (nbags,) gold ids; in training, attention queries with the
            gold relation; without labels every relation attends separately and
            its own logit is kept (OpenNRE's test-time rule).

        Returns:
          (nbags, R) bag logits.
        """
        weight = self.rel_head.weight  # (R, 2H)
        out = []
        for b, (start, end) in enumerate(scope):
            bag = reps[start:end]  # (n, 2H)
            if mode == "average":
                out.append(self.rel_head(self.dropout(bag.mean(0))))
            elif mode == "attention":
                if bag_labels is not None:
                    att = torch.softmax(bag @ weight[bag_labels[b]], dim=0)  # (n,)
                    out.append(self.rel_head(self.dropout(att @ bag)))
                else:
                    att = torch.softmax(bag @ weight.T, dim=0)  # (n, R)
                    bag_reps = att.T @ bag  # (R, 2H)
                    logits = self.rel_head(bag_reps)  # (R, R)
                    out.append(logits.diagonal())
            else:
                raise ValueError(f"unknown bag aggregation {mode!r}")
        return torch.stack(out)  # (nbags, R)

    # ------------------------------------------------------------------ io

    def save_pretrained(self, directory: str) -> None:
        """Writes encoder + tokenizer, heads, ``relations.json`` and the config JSON."""
        os.makedirs(directory, exist_ok=True)
        encoder = self.encoder
        if hasattr(encoder, "merge_and_unload"):  # a peft (LoRA) wrapper: save merged weights
            encoder = copy.deepcopy(encoder).merge_and_unload()
        enc_dir = os.path.join(directory, ENCODER_DIR)
        encoder.save_pretrained(enc_dir)
        save_tokenizer(self.tokenizer, enc_dir)
        heads = {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}
        torch.save(heads, os.path.join(directory, HEADS_FILE))
        self.inventory.save(os.path.join(directory, RELATIONS_FILE))
        cfg = self.cfg.to_json()
        cfg["encoder"] = ENCODER_DIR
        cfg["base_encoder"] = self.cfg.base_encoder or self.cfg.encoder
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)

    @classmethod
    def from_pretrained(cls, directory: str, encoder_dtype=None, inference=False, **overrides):
        """Loads a directory written by `save_pretrained` (in eval mode; `__init__`'s args)."""
        check_model_dir(directory)
        config = os.path.join(directory, CONFIG_FILE)
        data = read_json_object(config, ("encoder", "relations"))
        data["encoder"] = os.path.join(directory, data["encoder"])
        data.update(overrides)
        relations = read_json_object(os.path.join(directory, RELATIONS_FILE), ("relations",))
        if tuple(data["relations"]) != tuple(relations["relations"]):
            raise ValueError(f"{directory}: {RELATIONS_FILE} and {CONFIG_FILE} disagree")
        heads = load_weights_only(os.path.join(directory, HEADS_FILE), "heads file", dict)
        model = cls(ModelConfig.from_json(data), encoder_dtype, inference)
        if not any(k.startswith("tag_norm.") for k in heads):
            logger.warning(
                "%s was trained before the tagging head had its LayerNorm; "
                "loading it as trained (retrain for a better tagger)",
                directory,
            )
            model.tag_norm = nn.Identity()
        try:
            missing, unexpected = model.load_state_dict(heads, strict=False)
        except RuntimeError as error:  # a tensor shaped for another model (a multi-line message)
            missing, unexpected = [], [" ".join(str(error).split())]
        missing = [k for k in missing if not k.startswith("encoder.") and k != "marked_na_bias"]
        if missing or unexpected:
            raise ValueError(f"{directory}/{HEADS_FILE} does not fit: {missing=}, {unexpected=}")
        return model.eval()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labels != -100; a graph-connected zero when there are none."""
    logits = logits.float().reshape(-1, logits.size(-1))  # (N, C)
    labels = labels.reshape(-1)  # (N,)
    if not (labels != -100).any():
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits, labels, ignore_index=-100)


def _model_max_len(encoder: nn.Module, tokenizer: Any) -> int:
    limit = getattr(encoder.config, "max_position_embeddings", 512) or 512
    if getattr(encoder.config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= 2  # positions start after padding_idx
    tok_limit = getattr(tokenizer, "model_max_length", limit) or limit
    return int(min(limit, tok_limit if tok_limit < 1_000_000 else limit))
