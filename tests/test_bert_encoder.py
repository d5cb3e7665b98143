"""`BertStyleEncoder` computes what transformers' BertModel / XLMRobertaModel compute."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, BertConfig, XLMRobertaConfig

from relbridge.runtime.bert_encoder import BertStyleEncoder, load_bert_style, unsupported

SIZES = dict(
    vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=48, max_position_embeddings=40,
)  # fmt: skip


@pytest.fixture(scope="module", params=["bert", "xlm-roberta"])
def saved(request, tmp_path_factory) -> str:
    """A tiny random encoder of each supported family, saved as transformers saves it."""
    torch.manual_seed(0)
    config = (BertConfig if request.param == "bert" else XLMRobertaConfig)(**SIZES, pad_token_id=1)
    path = tmp_path_factory.mktemp(request.param)
    AutoModel.from_config(config).save_pretrained(path)
    return str(path)


class _Recorder:
    """transformers' cache protocol as `relbridge.models.prefix` uses it."""

    def __init__(self, past: int = 0):
        self.past, self.seen = past, []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.past

    def update(self, keys, values, layer_idx, *args, **kwargs):
        self.seen.append((layer_idx, keys.clone()))
        return keys, values


def _calls(width: int = 7):
    torch.manual_seed(1)
    ids = torch.randint(3, 50, (3, width))
    padding = torch.ones(3, width, dtype=torch.long)
    padding[1, 5:] = 0
    padding[2, 2:] = 0
    ids[padding == 0] = 1
    embeds = torch.randn(3, width, 32)
    bias = torch.zeros(3, 1, width, width)
    bias[:, :, :3, 4:] = torch.finfo(torch.float32).min  # a levitated-style block mask
    positions = torch.tensor([[2, 3, 4, 5, 3, 4, 6]]).expand(3, width)
    return {
        "ids": dict(input_ids=ids),
        "ids, padding": dict(input_ids=ids, attention_mask=padding),
        "embeds, padding": dict(inputs_embeds=embeds, attention_mask=padding),
        "embeds, no padding": dict(inputs_embeds=embeds, attention_mask=torch.ones_like(padding)),
        "embeds, 4-D bias, positions": dict(
            inputs_embeds=embeds, attention_mask=bias, position_ids=positions
        ),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_outputs_equal_transformers_model(saved, dtype):
    """Same weights, same numbers, for every way the extractor calls an encoder."""
    reference = AutoModel.from_pretrained(saved).to(dtype).eval()
    ours = load_bert_style(saved, dtype)
    assert isinstance(ours, BertStyleEncoder) and not ours.training
    for name, tensor in reference.state_dict().items():
        if name in ours.state_dict():
            assert torch.equal(ours.state_dict()[name], tensor), name
    with torch.inference_mode():
        for case, kwargs in _calls().items():
            kwargs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in kwargs.items()}
            want = reference(**kwargs, output_hidden_states=True)
            got = ours(**kwargs, output_hidden_states=True)
            assert got.last_hidden_state.dtype == dtype, case
            assert len(got.hidden_states) == len(want.hidden_states) == 3, case
            for a, b in zip(got.hidden_states, want.hidden_states):
                assert torch.equal(a, b), (case, (a - b).abs().max())
            assert torch.equal(got.last_hidden_state, want.last_hidden_state), case


def test_cache_sees_the_same_keys_and_positions_count_the_past(saved):
    """A key/value cache gets each layer's keys, and BERT positions start after its length."""
    reference, ours = AutoModel.from_pretrained(saved).eval(), load_bert_style(saved)
    embeds = torch.randn(2, 5, 32)
    with torch.inference_mode():
        for past in (0, 3):
            want, got = _Recorder(past), _Recorder(past)
            a = reference(inputs_embeds=embeds, past_key_values=want).last_hidden_state
            b = ours(inputs_embeds=embeds, past_key_values=got).last_hidden_state
            assert torch.equal(a, b)
            assert [i for i, _ in got.seen] == [0, 1]
            assert all(torch.equal(x, y) for (_, x), (_, y) in zip(want.seen, got.seen))
    assert ours.config.model_type == reference.config.model_type
    assert ours.get_input_embeddings().num_embeddings == 50


def test_other_encoders_are_left_to_transformers(saved, tmp_path):
    """An unsupported config, other tensor names or a missing file give None, not a guess."""
    config = json.load(open(f"{saved}/config.json"))
    assert unsupported(config) is None
    assert unsupported({**config, "hidden_act": "relu"}) == "hidden_act is 'relu'"
    assert unsupported({**config, "model_type": "t5"}) == "model_type 't5'"
    assert unsupported({**config, "num_attention_heads": 5}) is not None
    assert unsupported({**config, "position_embedding_type": "relative_key"}) is not None
    assert unsupported({k: v for k, v in config.items() if k != "hidden_size"}) is not None
    renamed = tmp_path / "renamed"
    shutil.copytree(saved, renamed)
    weights = load_file(str(renamed / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()}, str(renamed / "model.safetensors"))
    assert load_bert_style(str(renamed)) is None
    (renamed / "model.safetensors").unlink()
    assert load_bert_style(str(renamed)) is None


def test_without_pooler_weights_it_loads_and_holds_none(saved, tmp_path):
    lean = tmp_path / "lean"
    shutil.copytree(saved, lean)
    weights = load_file(str(lean / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("pooler.")},
              str(lean / "model.safetensors"))  # fmt: skip
    encoder = load_bert_style(str(lean))
    assert encoder is not None and not hasattr(encoder, "pooler")


def test_importing_it_leaves_transformers_model_code_unloaded(saved):
    """The point of the module: loading and running it never imports ``modeling_utils``."""
    code = (
        "import sys, torch\n"
        "from relbridge.runtime.bert_encoder import load_bert_style\n"
        f"e = load_bert_style({saved!r}, torch.bfloat16)\n"
        "e(input_ids=torch.tensor([[2, 5, 3]]))\n"
        "print('transformers.modeling_utils' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_inference_loads_it_and_extracts_what_transformers_model_extracts(tiny_encoder, tmp_path):
    """`load_for_inference` takes this encoder; every record and confidence stays the same."""
    from relbridge.models import extract
    from relbridge.models.extractor import RelationExtractor
    from relbridge.models.model_config import ModelConfig
    from relbridge.models.scoring import load_for_inference

    torch.manual_seed(0)
    cfg = ModelConfig(encoder=tiny_encoder, relations=("NA", "r", "s"), dropout=0.0)
    RelationExtractor(cfg).save_pretrained(str(tmp_path / "model"))
    ours = load_for_inference(str(tmp_path / "model"), "fp32")
    reference = RelationExtractor.from_pretrained(str(tmp_path / "model"))
    assert isinstance(ours.encoder, BertStyleEncoder)
    assert type(reference.encoder).__name__ == "BertModel"
    text = ["Angela Merkel was born in Berlin and Macron in Paris", "Paris is in France ."]
    spans = {text[0]: [(0, 2, "PER"), (5, 6, "LOC"), (9, 10, "LOC")], text[1]: [(0, 1), (3, 4)]}
    kb = lambda s: (s.split(), [(*m[:2], "LOC") for m in spans[s]])  # noqa: E731
    records = [extract.extract(m, text, threshold=0.0, mentions_of=kb) for m in (ours, reference)]
    assert len(records[0]) >= 4 and records[0] == records[1]
