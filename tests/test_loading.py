"""Loading for inference: encoder weights streamed into bf16, tokenizer config with added tokens."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.models.scoring import load_for_inference
from relbridge.runtime import loading
from relbridge.runtime.loading import load_encoder, read_safetensors_into, save_tokenizer


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), name


def test_streamed_bf16_encoder_equals_converted_one(tiny_encoder, monkeypatch):
    """Read in small chunks, the weights are exactly transformers' model cast to bf16."""
    monkeypatch.setattr(loading, "CHUNK_BYTES", 96)  # many chunks per tensor, some partial
    expected = AutoModel.from_pretrained(tiny_encoder).to(torch.bfloat16).eval()
    streamed = load_encoder(tiny_encoder, torch.bfloat16)
    assert not streamed.training
    _same_state(streamed, expected)
    assert torch.equal(streamed.embeddings.position_ids, expected.embeddings.position_ids)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.inference_mode():
        assert torch.equal(streamed(ids).last_hidden_state, expected(ids).last_hidden_state)


def test_float32_and_renamed_weights_load_through_transformers(tiny_encoder, tmp_path):
    """float32 is transformers' own load; tensor names it must map are left to it too."""
    _same_state(load_encoder(tiny_encoder), AutoModel.from_pretrained(tiny_encoder))
    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_encoder, renamed)
    weights = load_file(str(renamed / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()}, str(renamed / "model.safetensors"))
    expected = AutoModel.from_pretrained(tiny_encoder).to(torch.bfloat16)
    _same_state(load_encoder(str(renamed), torch.bfloat16), expected)


def test_broken_weight_files_are_refused_with_their_path(tiny_encoder, tmp_path):
    model = AutoModel.from_pretrained(tiny_encoder)
    targets = {k: torch.empty_like(v) for k, v in model.state_dict().items()}
    data = open(os.path.join(tiny_encoder, "model.safetensors"), "rb").read()
    cases = {
        "truncated": data[: len(data) // 2],
        "garbage": b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + data[24:],
        "empty": b"",
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=f"{name}.safetensors: "):
            read_safetensors_into(str(path), targets)
    with pytest.raises(ValueError, match="not the model's"):
        read_safetensors_into(os.path.join(tiny_encoder, "model.safetensors"), {"x": torch.empty(1)})


def test_saved_tokenizer_config_names_the_added_tokens(tiny_encoder, tmp_path):
    """The config lists the added tokens, so loading need not parse tokenizer.json in Python."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    tokenizer.add_tokens(["[E1]", "[/E1]"], special_tokens=True)
    save_tokenizer(tokenizer, str(tmp_path))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    decoder = config["added_tokens_decoder"]
    assert decoder[str(tokenizer.convert_tokens_to_ids("[E1]"))]["content"] == "[E1]"
    assert decoder[str(tokenizer.convert_tokens_to_ids("[E1]"))]["special"] is True
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "[E1] Merkel [/E1] lives in Berlin"
    assert len(reloaded) == len(tokenizer)
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_inference_model_is_loaded_in_bf16_as_converted(tiny_encoder, tmp_path):
    """`load_for_inference` at bf16 gives the model `for_inference` made from a float32 load."""
    torch.manual_seed(0)
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=("NA", "per:spouse")))
    model.save_pretrained(str(tmp_path / "model"))
    loaded = load_for_inference(str(tmp_path / "model"), "bf16")
    reference = RelationExtractor.from_pretrained(str(tmp_path / "model"))
    reference.encoder.to(torch.bfloat16)
    assert next(loaded.encoder.parameters()).dtype == torch.bfloat16
    assert next(loaded.rel_head.parameters()).dtype == torch.float32
    _same_state(loaded, reference)


class _Planted:
    """Unpickling this runs os.makedirs(path): what a planted heads.pt could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.fixture(scope="module")
def saved_model(tiny_encoder, tmp_path_factory):
    torch.manual_seed(0)
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=("NA", "per:spouse")))
    path = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(str(path))
    return path


def _damaged(saved_model, tmp_path, name, content):
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    if callable(content):
        content(model / name)
    else:
        (model / name).write_bytes(content)
    return model


def _other_shapes(path):
    other = RelationExtractor(ModelConfig(encoder=str(path.parent / "encoder"),
                                          relations=("NA", "per:spouse", "org:founded_by")))  # fmt: skip
    torch.save({k: v for k, v in other.state_dict().items() if not k.startswith("encoder.")}, path)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("heads.pt", b"garbage\n", "heads.pt: unreadable heads file"),
        ("heads.pt", lambda p: p.write_bytes(p.read_bytes()[:200]), "heads.pt: unreadable heads"),
        ("heads.pt", lambda p: torch.save(torch.zeros(2), p), "heads.pt: not a relbridge heads"),
        ("heads.pt", _other_shapes, "heads.pt does not fit"),
        ("extractor_config.json", b"{", "extractor_config.json:1: not JSON"),
        ("extractor_config.json", b"{}", "extractor_config.json: expected a JSON object with"),
        ("relations.json", b"[1]", "relations.json: expected a JSON object"),
    ],
)
def test_a_damaged_model_file_is_a_one_line_error_naming_it(
    saved_model, tmp_path, name, content, reason
):
    model = _damaged(saved_model, tmp_path, name, content)
    with pytest.raises(ValueError) as caught:
        RelationExtractor.from_pretrained(str(model))
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_a_planted_heads_file_is_refused_unread(saved_model, tmp_path):
    marker = tmp_path / "pwned"
    model = _damaged(saved_model, tmp_path, "heads.pt",
                     lambda p: torch.save({"x": _Planted(str(marker))}, p))  # fmt: skip
    with pytest.raises(ValueError, match="heads.pt: not a relbridge heads file: it holds objects"):
        RelationExtractor.from_pretrained(str(model))
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, reason",
    [(b"{bad", "threshold.json:1: not JSON"), (b"[0.5]", "threshold.json: expected a JSON"),
     (b'{"threshold": "high"}', "threshold.json: threshold must be a number")],
)  # fmt: skip
def test_extract_with_a_damaged_threshold_file_exits_2_naming_it(
    saved_model, tmp_path, capsys, content, reason
):
    from relbridge.cli.main import main

    model = _damaged(saved_model, tmp_path, "threshold.json", content)
    (tmp_path / "in.txt").write_text("Angela Merkel was born in Berlin .\n")
    argv = ["extract", "--model", str(model), "--input", str(tmp_path / "in.txt")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 2
    assert reason in capsys.readouterr().err.splitlines()[0]
    assert not (tmp_path / "out.jsonl").exists()
