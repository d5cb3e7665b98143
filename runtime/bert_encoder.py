"""A BERT-style encoder for inference that loads without transformers' model code.

Any transformers model class imports ``transformers.modeling_utils``, which
pulls in ``torch.distributed.tensor``, ``torch._dynamo``, ``scipy.optimize`` and
the auto-configuration tables: 2.1-2.5 s on 2 EPYC cores, more than a third of
``relbridge extract``'s startup (issue 25: at most 5 s from process start to the
first sentence scored). Inference needs none of it: the encoders relbridge
trains on (e5-small is a ``BertModel``; XLM-R and RoBERTa differ only in where
positions start) are twelve identical post-LayerNorm blocks.

`BertStyleEncoder` is that forward pass and nothing else: the parameter names of
transformers' ``BertModel`` / ``XLMRobertaModel`` (so the same
``model.safetensors`` streams into it), the same operations in the same order
(tests pin its outputs to transformers' on tiny random models, in float32 and
bf16, with padding masks, additive 4-D masks, position ids and a key/value
cache), and the calling convention the extractor uses::

    encoder = load_bert_style(path, torch.bfloat16)     # None: not a supported config
    hidden = encoder(inputs_embeds=x, attention_mask=mask).last_hidden_state  # (B, T, H)

Training keeps transformers' model (dropout, gradient checkpointing, LoRA);
`relbridge.runtime.loading.load_encoder` picks this one only when asked for
inference and `unsupported` finds nothing in the config against it.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, fields
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

ROBERTA_TYPES = ("roberta", "xlm-roberta")
"""Model types whose positions start after the padding index."""


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a Hugging Face ``config.json`` that the forward pass reads."""

    model_type: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"
    is_decoder: bool = False

    @classmethod
    def from_dict(cls, raw: dict) -> EncoderConfig:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


def unsupported(raw: dict) -> str | None:
    """Why a ``config.json`` (as a dict) is not this encoder's, or None when it is."""
    if raw.get("model_type") not in ("bert", *ROBERTA_TYPES):
        return f"model_type {raw.get('model_type')!r}"
    sizes = [f.name for f in fields(EncoderConfig) if f.default is MISSING][1:]
    if any(not isinstance(raw.get(name), int) or raw[name] < 1 for name in sizes):
        return "a size field is missing"
    checks = {
        "hidden_act": raw.get("hidden_act", "gelu") == "gelu",
        "position_embedding_type": raw.get("position_embedding_type", "absolute") == "absolute",
        "is_decoder": not raw.get("is_decoder", False),
        "add_cross_attention": not raw.get("add_cross_attention", False),
        "chunk_size_feed_forward": not raw.get("chunk_size_feed_forward", 0),
        "embedding_size": raw.get("embedding_size", raw["hidden_size"]) == raw["hidden_size"],
        "hidden_size": raw["hidden_size"] % raw["num_attention_heads"] == 0,
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"{bad[0]} is {raw.get(bad[0])!r}" if bad else None


def _node(**children: nn.Module) -> nn.Module:
    """A module that only holds ``children`` under transformers' attribute names."""
    node = nn.Module()
    for name, child in children.items():
        node.add_module(name, child)
    return node


def _embedding(rows: int, width: int, dtype: torch.dtype) -> nn.Embedding:
    """An embedding table left uninitialised: every weight is read from the file, and a
    random init of e5's 250k x 384 table would take longer than reading it."""
    return nn.Embedding(rows, width, _weight=torch.empty(rows, width, dtype=dtype))


def _layer(cfg: EncoderConfig, dtype: torch.dtype) -> nn.Module:
    h, inner = cfg.hidden_size, cfg.intermediate_size
    norm = lambda: nn.LayerNorm(h, eps=cfg.layer_norm_eps, dtype=dtype)  # noqa: E731
    return _node(
        attention=_node(
            self=_node(**{n: nn.Linear(h, h, dtype=dtype) for n in ("query", "key", "value")}),
            output=_node(dense=nn.Linear(h, h, dtype=dtype), LayerNorm=norm()),
        ),
        intermediate=_node(dense=nn.Linear(h, inner, dtype=dtype)),
        output=_node(dense=nn.Linear(inner, h, dtype=dtype), LayerNorm=norm()),
    )


class BertStyleEncoder(nn.Module):
    """The forward pass of transformers' ``BertModel`` / ``XLMRobertaModel`` in eval mode.

    Args:
      cfg: the encoder's configuration.
      pooler: whether to hold the (never computed) pooler weights, when the file has them.
      dtype: the parameters' dtype. They start uninitialised or random: load them.
    """

    def __init__(self, cfg: EncoderConfig, pooler: bool = True, dtype=torch.float32):
        super().__init__()
        h = cfg.hidden_size
        self.config = SimpleNamespace(**{f.name: getattr(cfg, f.name) for f in fields(cfg)})
        self.heads = cfg.num_attention_heads
        self.position_offset = cfg.pad_token_id + 1 if cfg.model_type in ROBERTA_TYPES else 0
        self.embeddings = _node(
            word_embeddings=_embedding(cfg.vocab_size, h, dtype),
            position_embeddings=_embedding(cfg.max_position_embeddings, h, dtype),
            token_type_embeddings=_embedding(cfg.type_vocab_size, h, dtype),
            LayerNorm=nn.LayerNorm(h, eps=cfg.layer_norm_eps, dtype=dtype),
        )
        layers = nn.ModuleList(_layer(cfg, dtype) for _ in range(cfg.num_hidden_layers))
        self.encoder = _node(layer=layers)
        if pooler:
            self.pooler = _node(dense=nn.Linear(h, h, dtype=dtype))

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values=None,
        output_hidden_states: bool = False,
    ) -> SimpleNamespace:
        """``last_hidden_state`` (B, T, H) of ``input_ids`` (B, T) or ``inputs_embeds`` (B, T, H).

        ``attention_mask``: (B, K) with 1 for tokens to attend to, or a prepared
        (B, 1, T, K) boolean or additive mask. ``past_key_values``: transformers'
        cache protocol (``update(keys, values, layer)`` returns the keys and
        values to attend over; ``get_seq_length()``). ``output_hidden_states``
        adds ``hidden_states``: the embeddings' output, then every layer's.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        emb = self.embeddings
        if inputs_embeds is None:
            inputs_embeds = emb.word_embeddings(input_ids)
        batch, width = inputs_embeds.shape[:2]
        if position_ids is None:
            position_ids = self._positions(input_ids, width, past_key_values, inputs_embeds.device)
        token_types = torch.zeros_like(position_ids).expand(batch, width)
        x = inputs_embeds + emb.token_type_embeddings(token_types)
        x = emb.LayerNorm(x + emb.position_embeddings(position_ids))  # (B, T, H)
        mask = _attention_mask(attention_mask)
        states = [x] if output_hidden_states else None  # kept only when asked: memory
        for i, layer in enumerate(self.encoder.layer):
            x = self._block(layer, x, mask, past_key_values, i)
            if states is not None:
                states.append(x)
        if states is not None:
            return SimpleNamespace(last_hidden_state=x, hidden_states=tuple(states))
        return SimpleNamespace(last_hidden_state=x)

    def _positions(self, input_ids, width, cache, device) -> torch.Tensor:
        """transformers' default position ids (B or 1, T), a cache's length included."""
        past = cache.get_seq_length() if cache is not None else 0
        if not self.position_offset:
            return (past + torch.arange(width, device=device)).unsqueeze(0)
        if input_ids is None:  # RoBERTa from embeddings: sequential, the cache not counted
            return (self.position_offset + torch.arange(width, device=device)).unsqueeze(0)
        pad = self.config.pad_token_id  # RoBERTa from ids: pads keep the pad position
        real = input_ids.ne(pad).int()
        return ((torch.cumsum(real, dim=1).type_as(real) + past) * real).long() + pad

    def _block(self, layer, x, mask, cache, index) -> torch.Tensor:
        attn = layer.attention
        shape = (*x.shape[:2], self.heads, -1)
        q = attn.self.query(x).view(shape).transpose(1, 2)  # (B, heads, T, size)
        k = attn.self.key(x).view(shape).transpose(1, 2)
        v = attn.self.value(x).view(shape).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, index)
        scale = q.size(-1) ** -0.5
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        context = context.transpose(1, 2).contiguous().reshape(*x.shape[:2], -1)  # (B, T, H)
        x = attn.output.LayerNorm(attn.output.dense(context) + x)
        inner = F.gelu(layer.intermediate.dense(x))
        return layer.output.LayerNorm(layer.output.dense(inner) + x)


def _attention_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """SDPA's mask: a (B, K) padding mask as (B, 1, 1, K) booleans; None if it hides nothing."""
    if mask is None or mask.dim() == 4:
        return mask
    if bool(mask.all()):
        return None
    return mask.bool()[:, None, None, :]


def load_bert_style(path: str, dtype: torch.dtype | None = None) -> BertStyleEncoder | None:
    """The encoder saved in directory ``path`` (``config.json``, ``model.safetensors``), eval mode.

    Returns None when this module cannot stand in for transformers' model: an
    unsupported configuration, no single safetensors file, or tensor names
    other than ``BertModel``'s. Raises `ValueError` (``PATH: reason``) for a
    damaged file.
    """
    from relbridge.runtime import loading

    config, weights = os.path.join(path, "config.json"), os.path.join(path, loading.WEIGHTS_FILE)
    if not (os.path.isfile(config) and os.path.isfile(weights)):
        return None
    raw = loading.read_json_object(config)
    if unsupported(raw):
        return None
    parsed = loading.safetensors_header(weights)
    pooler = "pooler.dense.weight" in parsed[0]
    encoder = BertStyleEncoder(EncoderConfig.from_dict(raw), pooler, dtype or torch.float32)
    if set(parsed[0]) != set(encoder.state_dict()):
        return None
    loading.read_safetensors_into(weights, encoder.state_dict(), parsed)
    return encoder.eval()
