"""The KB index matches exactly what the in-memory PhraseMatcher matches, and labels alike.

Both matchers run on the demo corpus against the demo KB and on generated
KBs and sentences built to collide (nested and overlapping aliases, aliases
of several entities, function words, case variants), under every matching
profile; mentions and relation labels must be identical.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from relbridge.data_specs.kb_format import Entity, KnowledgeBase, load_kb
from relbridge.data_specs.tokenizer import make_tokenizer
from relbridge.kb import (
    AliasMatcher,
    KbIndex,
    MatchProfile,
    TextMentions,
    build_index,
    label_relations,
    open_kb,
    resolve_mentions,
)
from relbridge.pipeline.label import LabelConfig, label_tokens

DEMO = os.path.join(os.path.dirname(__file__), "..", "demo", "data")

PROFILES = [
    MatchProfile("en", ("en",)),
    MatchProfile("en", ("en",), case_sensitive=False),
    MatchProfile("en", ("en",), skip_function_words=False),
    MatchProfile("en", (), case_sensitive=False, skip_function_words=False),
]


def save_kb(kb: KnowledgeBase, folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "entities.jsonl", "w", encoding="utf-8") as f:
        for e in kb.entities.values():
            aliases = {lang: list(names) for lang, names in e.aliases.items()}
            f.write(json.dumps({"id": e.id, "type": e.type, "aliases": aliases}) + "\n")
    with open(folder / "triples.jsonl", "w", encoding="utf-8") as f:
        for s, r, o in sorted(kb.triples):
            f.write(json.dumps({"subject": s, "relation": r, "object": o}) + "\n")
    (folder / "relations.json").write_text(json.dumps({"relations": list(kb.relations)}))
    return str(folder)


def reference(kb: KnowledgeBase, profile: MatchProfile) -> AliasMatcher:
    langs = profile.alias_langs or sorted({c for e in kb.entities.values() for c in e.aliases})
    return AliasMatcher(kb, profile.lang, profile.case_sensitive, profile.skip_function_words, langs)


def assert_same(kb: KnowledgeBase, index: KbIndex, sentences, profile: MatchProfile) -> int:
    """Asserts identical candidates, mentions and labels; returns the number of mentions."""
    old, relation_index, total = reference(kb, profile), kb.relation_index(), 0
    cfg = LabelConfig("unused", profile.lang, profile.case_sensitive, 4, profile.skip_function_words)
    for tokens in sentences:
        expected = old(tokens)
        assert index.find_mentions(tokens, profile) == expected, tokens
        mentions, ambiguous = resolve_mentions(expected, tokens, kb, relation_index, 4)
        labels = label_relations(mentions, relation_index)
        if profile.alias_langs == (profile.lang,):
            assert label_tokens(tokens, index, cfg) == (mentions, labels, ambiguous), tokens
        total += len(mentions)
    return total


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    kb = load_kb(os.path.join(DEMO, "kb"))
    path = str(tmp_path_factory.mktemp("demo") / "demo.kbindex")
    build_index(os.path.join(DEMO, "kb"), path, PROFILES)
    return kb, KbIndex.open(path)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_the_index_finds_the_reference_mentions_on_the_demo_corpus(demo_index, profile):
    kb, index = demo_index
    tokenize = make_tokenizer("en")
    with open(os.path.join(DEMO, "relx_ende_train.tsv"), encoding="utf-8") as f:
        sentences = [tokenize(line.split("\t")[1]) for line in f][:300]
    assert assert_same(kb, index, sentences, profile) > 300  # the demo sentences name entities


def generated_kb(rng: random.Random) -> tuple[KnowledgeBase, list[list[str]]]:
    """A KB whose aliases collide, and sentences from the same words."""
    vocab = ["New", "York", "Times", "new", "york", "the", "The", "it", "It", "IT", "US", "us",
             "of", "Bank", "bank", "Paris", "Hilton", "Σ", "ΟΔΟΣ", "İstanbul", "(", ")", "co-op"]
    entities = {}
    for i in range(40):
        names = {" ".join(rng.choices(vocab, k=rng.choice([1, 1, 2, 3, 4]))) for _ in range(2)}
        langs = {"en": tuple(sorted(names))}
        if rng.random() < 0.3:
            langs["de"] = (" ".join(rng.choices(vocab, k=2)),)
        entities[f"E{i}"] = Entity(f"E{i}", rng.choice(["PER", "ORG", "LOC", ""]), langs)
    ids = list(entities)
    triples = frozenset(
        (rng.choice(ids), rng.choice(["per:spouse", "org:members"]), rng.choice(ids))
        for _ in range(60)
    )
    sentences = [rng.choices(vocab + ["x", "y"], k=rng.randint(1, 14)) for _ in range(150)]
    return KnowledgeBase(entities, triples), sentences


@pytest.mark.parametrize("seed", range(4))
def test_the_index_agrees_with_the_reference_on_generated_collisions(tmp_path, seed):
    kb, sentences = generated_kb(random.Random(seed))
    kb_dir = save_kb(kb, tmp_path / "kb")
    index = open_kb(kb_dir, PROFILES)
    found = sum(assert_same(kb, index, sentences, p) for p in PROFILES)
    assert found > 50


def test_an_nfd_or_typographic_apostrophe_spelling_matches_the_kbs_alias(tmp_path):
    # text in NFD or with ’ named no alias written in NFC with ' (the linker's names did)
    import unicodedata

    entities = {
        "P": Entity("P", "PER", {"en": ("Conan O'Brien",)}),
        "L": Entity("L", "LOC", {"en": ("Saint-Étienne",)}),
    }
    kb = KnowledgeBase(entities, frozenset())
    index = open_kb(save_kb(kb, tmp_path / "kb"), [MatchProfile("en", ())])
    text = unicodedata.normalize("NFD", "Conan O’Brien played in Saint-Étienne.")
    for finder in (TextMentions(kb, "en"), TextMentions(index, "en")):
        words, found = finder(text)
        assert [(" ".join(words[s:e]), t) for s, e, t in found] == [
            ("Conan O’Brien", "PER"),
            (unicodedata.normalize("NFD", "Saint - Étienne"), "LOC"),
        ]
        assert all(word in text for word in words)  # the words stay the text's own


def test_text_mentions_and_lookups_agree_with_the_loaded_kb(tmp_path):
    kb, _ = generated_kb(random.Random(7))
    index = open_kb(save_kb(kb, tmp_path / "kb"), [MatchProfile("en", ())])
    text = "The New York Times said it met US bank of Paris Hilton in İstanbul (co-op)."
    assert TextMentions(index, "en")(text) == TextMentions(kb, "en")(text)
    for eid, entity in kb.entities.items():
        assert index.entity(eid) == entity and index.entity(eid).aliases == entity.aliases
    for (s, o), rels in kb.relation_index().items():
        assert index.relations(s, o) == rels
    assert index.relations("E0", "nope") == () and index.entity("nope") is None
    name = kb.entities["E3"].aliases["en"][0]
    assert "E3" in index.link(f"  {name.upper()} ")


def test_a_stale_index_is_rebuilt_and_a_missing_profile_is_named(tmp_path):
    kb, _ = generated_kb(random.Random(1))
    kb_dir = save_kb(kb, tmp_path / "kb")
    first = open_kb(kb_dir, [MatchProfile("en")])
    assert open_kb(kb_dir, [MatchProfile("en")]).path == first.path  # found, not rebuilt
    with open(tmp_path / "kb" / "entities.jsonl", "a") as f:
        f.write(json.dumps({"id": "N1", "type": "PER", "aliases": {"en": ["Zed Zedson"]}}) + "\n")
    second = open_kb(kb_dir, [MatchProfile("en")])
    assert second.path != first.path and second.find_mentions(["Zed", "Zedson"], "en")
    with pytest.raises(ValueError, match=r"no alias table for de:\*:cased"):
        second.matcher(MatchProfile("de"))


def test_extract_with_a_kb_never_imports_beam(tmp_path):
    import subprocess
    import sys

    kb, _ = generated_kb(random.Random(3))
    kb_dir = save_kb(kb, tmp_path / "kb")
    code = (
        "import sys, relbridge.models.extract\n"
        "from relbridge.kb import TextMentions\n"
        f"words, found = TextMentions({kb_dir!r}, 'en')('The New York Times met US bank')\n"
        "assert 'apache_beam' not in sys.modules, 'Beam imported'\n"
        "print(len(words))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        **os.environ, "RELBRIDGE_KB_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "7"


def test_both_ways_of_finding_linked_entities_agree():
    from relbridge.kb.matching import entities_with_facts

    rng = random.Random(11)
    for _ in range(200):
        universe = [f"E{i}" for i in range(12)]
        index = {(rng.choice(universe), rng.choice(universe)): ("r",) for _ in range(rng.randint(0, 30))}
        ids = set(rng.sample(universe, rng.randint(0, 6)))
        brute = {e for e in ids if any((e, o) in index or (o, e) in index for o in ids - {e})}
        assert entities_with_facts(ids, index) == brute
        big = {**index, **{(f"X{i}", f"Y{i}"): ("r",) for i in range(40)}}  # more facts than pairs
        assert entities_with_facts(ids, big) == brute


class FakeFileSystems:
    """Beam's FileSystems for ``mem://`` paths, backed by a local folder."""

    def __init__(self, root):
        self.root = str(root)

    def local(self, path: str) -> str:
        assert path.startswith("mem://"), path
        return os.path.join(self.root, path[len("mem://"):])

    def join(self, *parts):
        return "/".join(p.rstrip("/") for p in parts)

    def match(self, patterns):
        import glob
        from types import SimpleNamespace

        paths = sorted(glob.glob(self.local(patterns[0])))
        found = [SimpleNamespace(path="mem://" + os.path.relpath(p, self.root)) for p in paths]
        return [SimpleNamespace(metadata_list=found)]

    def open(self, path, compression_type=None):
        import gzip

        if path.endswith(".gz") and compression_type is None:
            return gzip.open(self.local(path), "rb")
        return open(self.local(path), "rb")

    def exists(self, path):
        return os.path.exists(self.local(path))

    def create(self, path):
        os.makedirs(os.path.dirname(self.local(path)), exist_ok=True)
        return open(self.local(path), "wb")

    def rename(self, sources, targets):
        for s, t in zip(sources, targets):
            os.replace(self.local(s), self.local(t))


def test_a_remote_kb_is_indexed_once_uploaded_and_copied_to_each_worker(tmp_path, monkeypatch):
    from relbridge.kb import source

    fs = FakeFileSystems(tmp_path / "bucket")
    monkeypatch.setattr(source, "_filesystems", lambda: fs)
    monkeypatch.setenv("RELBRIDGE_KB_CACHE", str(tmp_path / "local-cache"))
    kb, _ = generated_kb(random.Random(5))
    save_kb(kb, tmp_path / "bucket" / "kb")
    profile = MatchProfile("en", ("en",))
    remote = source.ensure_index("mem://kb", [profile], "mem://cache")
    assert remote.startswith("mem://cache/") and fs.exists(remote)
    assert source.ensure_index("mem://kb", [profile], "mem://cache") == remote  # not rebuilt
    index = open_kb(remote, [profile])  # what a worker does: copy once, open locally
    assert index.path.startswith(str(tmp_path / "local-cache"))
    assert source.localize(remote) == index.path
    sentence = ["The", "New", "York", "Times", "met", "US", "bank"]
    assert index.find_mentions(sentence, profile) == reference(kb, profile)(sentence)


def test_the_kb_cache_follows_relbridge_cache_unless_it_has_its_own(tmp_path, monkeypatch):
    from relbridge.kb.source import default_cache_dir

    monkeypatch.delenv("RELBRIDGE_KB_CACHE", raising=False)
    monkeypatch.setenv("RELBRIDGE_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == str(tmp_path / "cache" / "kb")
    monkeypatch.setenv("RELBRIDGE_KB_CACHE", str(tmp_path / "indexes"))
    assert default_cache_dir() == str(tmp_path / "indexes")
    monkeypatch.delenv("RELBRIDGE_CACHE")
    monkeypatch.delenv("RELBRIDGE_KB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "relbridge" / "kb")
