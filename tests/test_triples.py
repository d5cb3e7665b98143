"""Extract records -> KG triples: linking by alias, aggregation, evidence, counts and the CLI."""

import json
import math
import os
import subprocess
import sys

import pytest

from relbridge.cli.main import main
from relbridge.data_specs.kb_format import Entity, KnowledgeBase
from relbridge.models.triples import (
    EntityLinker,
    Link,
    TriplesConfig,
    aggregate_triples,
    stable_id,
)

KB = KnowledgeBase(
    entities={
        "Q1": Entity("Q1", "PER", {"en": ("Angela Merkel", "Merkel"), "de": ("Angela Merkel",)}),
        "Q2": Entity("Q2", "LOC", {"en": ("Hamburg",), "fr": ("Hambourg",)}),
        "Q3": Entity("Q3", "LOC", {"en": ("Paris",)}),
        "Q4": Entity("Q4", "PER", {"en": ("Paris",)}),  # Paris Hilton's alias
        "Q5": Entity("Q5", "LOC", {"en": ("Georgia",)}),
        "Q6": Entity("Q6", "LOC", {"en": ("Georgia",)}),  # the country and the state
    },
    triples=frozenset({("Q1", "per:city_of_birth", "Q2")}),
)


def _rec(subject, relation, obj, p, line, **kw):
    return {"subject": subject, "relation": relation, "object": obj, "confidence": p,
            "source_file": "in.txt", "line": line, "text": f"sentence {line}", **kw}  # fmt: skip


def test_linker_matches_aliases_of_any_language_and_refuses_to_guess():
    linker = EntityLinker(KB)
    assert linker.link("angela  MERKEL").id == "Q1"  # case and spaces
    assert linker.link("Hambourg").id == "Q2"  # a French alias
    assert linker.link("Paris").id is None and linker.link("Paris").candidates == ("Q3", "Q4")
    assert linker.link("Paris", "LOC").id == "Q3"  # the mention's type picks one
    assert linker.link("Georgia", "LOC").candidates == ("Q5", "Q6")  # still two: unlinked
    assert (
        linker.link("Berlin") == linker.link("Berlin", "LOC") and linker.link("Berlin").id is None
    )


CONTEXT_KB = KnowledgeBase(
    entities={
        "Q3": Entity("Q3", "LOC", {"en": ("Paris",)}),
        "Q4": Entity("Q4", "PER", {"en": ("Paris",)}),
        "Q5": Entity("Q5", "LOC", {"en": ("Georgia",)}),  # the country
        "Q6": Entity("Q6", "LOC", {"en": ("Georgia",)}),  # the US state
        "Q7": Entity("Q7", "LOC", {"en": ("Tbilisi",), "ka": ("თბილისი",)}),
        "Q8": Entity("Q8", "LOC", {"en": ("Atlanta",)}),
        "Q9": Entity("Q9", "ORG", {"en": ("Emory University",)}),
        "Q10": Entity("Q10", "LOC", {"en": ("Springfield",)}),
        "Q11": Entity("Q11", "LOC", {"en": ("Springfield",)}),
        "Q12": Entity("Q12", "ORG", {"en": ("Acme",)}),
    },
    triples=frozenset({
        ("Q7", "capital_of", "Q5"),  # Tbilisi - the country
        ("Q6", "contains", "Q8"),  # the state - Atlanta
        ("Q9", "org:stateorprovince_of_headquarters", "Q6"),
        ("Q4", "per:stateorprovinces_of_residence", "Q6"),
        ("Q12", "org:city_of_headquarters", "Q10"),
        ("Q12", "org:members", "Q11"),  # another relation with the other Springfield
    }),
)  # fmt: skip


def test_a_candidate_with_a_kb_fact_beside_the_other_argument_wins():
    linker = EntityLinker(CONTEXT_KB)
    assert linker.link("Georgia").id is None  # alone it is ambiguous
    # the other argument's fact decides, in either direction and in any alias language
    subj, obj = linker.link_pair("თბილისი", "Georgia", "org:country_of_headquarters")
    assert (subj.id, obj.id, obj.how) == ("Q7", "Q5", "facts")
    subj, obj = linker.link_pair("Georgia", "Atlanta", "whatever")
    assert (subj.id, subj.how, obj.id, obj.how) == ("Q6", "facts", "Q8", "alias")
    # both ambiguous: the one pair of candidates that shares a fact links both
    subj, obj = linker.link_pair("Paris", "Georgia", "per:stateorprovinces_of_residence")
    assert (subj.id, obj.id) == ("Q4", "Q6")
    # a fact of the record's own relation beats a fact of another relation
    assert linker.link_pair("Acme", "Springfield", "org:city_of_headquarters")[1].id == "Q10"
    assert linker.link_pair("Acme", "Springfield", "org:members")[1].id == "Q11"
    # two facts of equal weight decide nothing: the candidates are kept
    unresolved = linker.link_pair("Acme", "Springfield", "org:founded_by")[1]
    assert (unresolved.id, unresolved.candidates) == (None, ("Q10", "Q11"))
    # no fact and an unknown partner: unlinked, candidates kept
    assert linker.link_pair("Georgia", "Kim")[0] == Link(None, ("Q5", "Q6"))


def test_type_narrows_before_the_relation_context_decides():
    linker = EntityLinker(CONTEXT_KB)
    subj, obj = linker.link_pair("Paris", "Springfield", "r", ("PER", "LOC"))
    assert (subj.id, subj.how) == ("Q4", "type") and obj.candidates == ("Q10", "Q11")
    subj, _ = linker.link_pair("Paris", "Georgia", "r", ("LOC", ""))  # Q3 has no fact: type wins
    assert (subj.id, subj.how) == ("Q3", "type")
    _, obj = linker.link_pair("Emory University", "Georgia", "r", ("ORG", "LOC"))
    assert (obj.id, obj.how) == ("Q6", "facts")
    records = [
        _rec("Emory University", "org:stateorprovince_of_headquarters", "Georgia", 0.9, 1),
        _rec("Emory University", "org:stateorprovince_of_headquarters", "GEORGIA", 0.8, 2),
        _rec("Acme", "org:founded_by", "Springfield", 0.7, 3),
    ]
    triples, counts = aggregate_triples([("f", r) for r in records], TriplesConfig(), CONTEXT_KB)
    emory, acme = triples
    assert (emory["object"], emory["mentions"], emory["in_kb"]) == ("Q6", 2, True)
    assert acme["object_id"] is None and acme["object_candidates"] == ["Q10", "Q11"]
    # untyped, it takes the type its candidates share: one node with the KB finder's typed mentions
    assert (acme["object"], acme["object_type"]) == (stable_id("Springfield", "LOC"), "LOC")
    assert (counts["linked_by_facts"], counts["arguments_ambiguous"]) == (2, 1)


def test_a_candidate_of_another_type_is_kept_but_never_linked():
    linker = EntityLinker(CONTEXT_KB)
    assert linker.link("Emory University").id == "Q9"  # untyped: the only candidate links
    conflict = linker.link("Emory University", "PER")
    assert (conflict.id, conflict.candidates, conflict.how) == (None, ("Q9",), "type_conflict")
    # a KB fact with the other argument overrides the type no more than it vouches for Georgia
    subj, obj = linker.link_pair("Emory University", "Georgia", "r", ("PER", "LOC"))
    assert (subj.id, subj.how, obj.id, obj.candidates) == (
        None,
        "type_conflict",
        None,
        ("Q5", "Q6"),
    )
    record = _rec("Emory University", "per:employee_of", "Atlanta", 0.9, 1, subject_type="PER")
    (triple,), counts = aggregate_triples([("f", record)], TriplesConfig(), CONTEXT_KB)
    assert (triple["subject_id"], triple["subject_candidates"], counts["type_conflicts"]) == (
        None,
        ["Q9"],
        1,
    )


def test_unlinked_entities_get_one_stable_node_across_spellings_and_runs():
    """The same name and type is one node in every run, whatever its case and spacing."""
    records = [
        _rec("Jean  Dupont", "per:employee_of", "Acme Corp", 0.9, 1, subject_type="PER"),
        _rec("jean dupont", "per:employee_of", "ACME CORP", 0.8, 2, subject_type="PER"),
        _rec("JEAN DUPONT", "per:employee_of", "Acme\u00a0Corp", 0.7, 3, subject_type="PER"),
        _rec("Jean Dupont", "per:employee_of", "Acme Corp", 0.6, 4, subject_type="ORG"),
    ]
    rows = [(f"f:{r['line']}", r) for r in records]
    first, _ = aggregate_triples(rows, TriplesConfig(), CONTEXT_KB)
    again, _ = aggregate_triples(reversed(rows), TriplesConfig())  # another run, no KB
    assert [t["mentions"] for t in first] == [3, 1]  # PER and ORG Jean Dupont are two nodes
    assert [(t["subject"], t["object"]) for t in first] == [
        (t["subject"], t["object"]) for t in again
    ]
    per, org = first
    assert per["subject"] != org["subject"] and per["object"] == org["object"]
    assert per["subject"].startswith("relbridge:") and len(per["subject"]) == len("relbridge:") + 16
    # a fresh interpreter with another hash seed derives the same ids (no Python hash())
    code = "from relbridge.models.triples import stable_id; print(stable_id('JEAN DUPONT', 'per'))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == per["subject"]


def test_mentions_whose_types_the_kb_never_has_for_the_relation_are_left_out():
    assert KB.relation_signatures() == {"per:city_of_birth": frozenset({("PER", "LOC")})}
    records = [
        _rec("Angela Merkel", "per:city_of_birth", "Hamburg", 0.9, 1),  # PER, LOC: the KB's pair
        _rec("Hamburg", "per:city_of_birth", "Angela Merkel", 0.8, 2),  # linked LOC, PER: no
        _rec("Kim", "per:city_of_birth", "Bob", 0.8, 3, subject_type="PER", object_type="PER"),
        _rec("Kim", "per:city_of_birth", "Lyon", 0.8, 4, subject_type="PER"),  # untyped object
        _rec(
            "Kim", "per:spouse", "Lyon", 0.8, 5, subject_type="PER", object_type="LOC"
        ),  # no facts
    ]
    rows = [(f"in.txt:{r['line']}", r) for r in records]
    triples, counts = aggregate_triples(rows, TriplesConfig(), KB)
    assert (counts["records"], counts["used"], counts["type_mismatch"]) == (5, 3, 2)
    assert {t["evidence"][0]["line"] for t in triples} == {1, 4, 5}
    _, unchecked = aggregate_triples(rows, TriplesConfig(check_types=False), KB)
    assert (unchecked["used"], unchecked["type_mismatch"]) == (5, 0)


def test_function_word_arguments_make_no_node():
    records = [
        _rec("his", "per:employee_of", "CDU", 0.9, 1),  # would join every sentence's "his"
        _rec("Angela Merkel", "per:employee_of", "er", 0.9, 2, object_type="ORG"),
        _rec("Er", "per:employee_of", "CDU", 0.9, 3),  # a sentence-initial German pronoun
        _rec("IT", "org:members", "CDU", 0.9, 4),  # capitals: a name, not "it"
        _rec("Angela Merkel", "per:employee_of", "CDU", 0.9, 5),
    ]
    rows = [(f"in.txt:{r['line']}", r) for r in records]
    triples, counts = aggregate_triples(rows, TriplesConfig(langs=("en", "de")))
    assert counts["function_word_argument"] == 3 and counts["used"] == 2
    assert counts["records"] == counts["used"] + counts["function_word_argument"]
    assert {t["subject_name"] for t in triples} == {"IT", "Angela Merkel"}
    _, unchecked = aggregate_triples(rows, TriplesConfig())  # no language: no such check
    assert (unchecked["used"], unchecked["function_word_argument"]) == (5, 0)


def test_mentions_merge_into_one_triple_per_fact():
    records = [
        _rec("Merkel", "per:city_of_birth", "Hamburg", 0.9, 1),
        _rec("Angela Merkel", "per:city_of_birth", "Hambourg", 0.6, 2),
        _rec("Angela Merkel", "per:city_of_birth", "Hamburg", 0.7, 3),
        _rec("Merkel", "per:employee_of", "CDU", 0.8, 4),
        _rec("Merkel", "per:employee_of", "cdu", 0.5, 5),
        _rec("Merkel", "per:spouse", "Joachim Sauer", 0.3, 6),  # below the threshold
        _rec("Paris", "per:city_of_birth", "Hamburg", 0.95, 7, subject_type="PER"),
        _rec("Georgia", "org:members", "Q-Club", 0.55, 8, subject_type="LOC"),
    ]
    rows = [(f"in.txt:{r['line']}", r) for r in records]
    triples, counts = aggregate_triples(rows, TriplesConfig(max_evidence=2), KB)
    assert counts == {"records": 8, "used": 7, "no_relation": 0, "below_threshold": 1,
                      "type_mismatch": 0, "function_word_argument": 0,
                      "triples": 4, "in_kb": 1, "new": 1, "unlinked": 2,
                      "arguments_linked": 10, "arguments_ambiguous": 1, "arguments_unknown": 3,
                      "linked_by_type": 1, "linked_by_facts": 0, "type_conflicts": 0}  # fmt: skip
    assert [t["confidence"] for t in triples] == [0.95, 0.9, 0.8, 0.55]  # most confident first
    paris, merkel, cdu, georgia = triples
    assert (paris["subject"], paris["object"], paris["in_kb"]) == ("Q4", "Q2", False)  # a new fact
    assert (merkel["subject"], merkel["object"], merkel["in_kb"]) == ("Q1", "Q2", True)
    assert merkel["mentions"] == 3 and merkel["subject_name"] in {"Merkel", "Angela Merkel"}
    assert [e["line"] for e in merkel["evidence"]] == [1, 3]  # the two most confident, in order
    assert merkel["evidence"][0] == {"source_file": "in.txt", "line": 1, "text": "sentence 1",
                                     "subject": "Merkel", "object": "Hamburg", "confidence": 0.9}  # fmt: skip
    assert (cdu["object_name"], cdu["object_id"], cdu["mentions"], cdu["in_kb"]) == (
        "CDU",
        None,
        2,
        None,
    )
    assert cdu["object"] == stable_id("cdu") and cdu["object_type"] == ""
    assert (paris["subject_type"], paris["object_type"]) == ("PER", "LOC")
    assert "object_candidates" not in cdu
    assert georgia["subject_id"] is None and georgia["subject_candidates"] == ["Q5", "Q6"]
    noisy, _ = aggregate_triples(rows, TriplesConfig(aggregate="noisy-or"), KB)
    merged = next(t for t in noisy if t["subject"] == "Q1" and t["object"] == "Q2")
    assert merged["confidence"] == pytest.approx(1 - 0.1 * 0.4 * 0.3)
    assert merged["confidence"] > merkel["confidence"]


def test_without_a_kb_entities_are_their_names():
    rows = [
        ("f:1", _rec("Merkel", "r", "Hamburg", 1.0, 1)),
        ("f:2", _rec("merkel", "r", "hamburg", 0.5, 2)),
    ]
    triples, counts = aggregate_triples(rows, TriplesConfig(aggregate="noisy-or"))
    assert counts["triples"] == 1 and counts["unlinked"] == 1 and counts["in_kb"] == 0
    assert triples[0]["confidence"] == 1.0 and triples[0]["in_kb"] is None
    assert triples[0]["subject_id"] is None and triples[0]["subject_name"] in {"Merkel", "merkel"}
    assert triples[0]["subject"] == stable_id("Merkel")
    assert not math.isnan(triples[0]["confidence"])


def test_no_relation_records_are_counted_never_published(tmp_path, capsys):
    """`extract` writes ``relation: "NA"`` for every marked pair it finds unrelated (issue 16)."""
    records = [
        _rec("Merkel", "NA", "Hamburg", 0.99999, 1),  # linked, not a KB fact: would be "new"
        _rec("Kim", "NA", "Lyon", 0.9, 2),
        _rec("Merkel", "per:city_of_birth", "Hamburg", 0.9, 3),
    ]
    rows = [(f"in.txt:{r['line']}", r) for r in records]
    triples, counts = aggregate_triples(rows, TriplesConfig(), KB)
    assert [t["relation"] for t in triples] == ["per:city_of_birth"]
    assert (counts["records"], counts["used"], counts["no_relation"]) == (3, 1, 2)
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "entities.tsv").write_text("Q1\tPER\ten\tMerkel\nQ2\tLOC\ten\tHamburg\n")
    (kb / "triples.tsv").write_text("Q2\tper:city_of_birth\tQ1\n")
    (kb / "relations.json").write_text('{"relations": ["per:city_of_birth"]}')  # not KBP37's
    src, out = tmp_path / "in.jsonl", tmp_path / "kg.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    argv = ["triples", "--input", str(src), "--output", str(out), "--kb", str(kb), "--only-new"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["no_relation"], summary["written"], out.read_text()) == (2, 0, "")


@pytest.mark.parametrize(
    "record,message",
    [({"subject": "a", "relation": "r"}, "f:3: expected an extract record"),
     ({"subject": "a", "relation": "r", "object": "b", "confidence": 2}, "f:3: confidence"),
     ({"subject": None, "relation": "r", "object": "b", "confidence": 1}, "f:3: subject must"),
     ({"subject": "a", "relation": ["r"], "object": "b", "confidence": 1}, "f:3: relation must"),
     ({"subject": "a", "relation": "r", "object": 7, "confidence": 1}, "f:3: object must"),
     ({"subject": "a", "relation": "r", "object": "b", "confidence": True}, "f:3: confidence")],
)  # fmt: skip
def test_bad_records_name_their_line(record, message):
    with pytest.raises(ValueError, match=message):
        aggregate_triples([("f:3", record)])


@pytest.mark.parametrize("line", ["[1, 2]", '{"subject": null, "relation": "r", "object": "b", '
                                  '"confidence": 0.9, "model": ["m"]}'])  # fmt: skip
def test_cli_names_the_line_of_a_record_that_is_no_extract_record(tmp_path, capsys, line):
    """One line, FILE:LINE: reason, and exit status 2: never a traceback."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(_rec("Merkel", "per:city_of_birth", "Hamburg", 0.9, 1)) + "\n"
                   + line + "\n")  # fmt: skip
    argv = ["triples", "--input", str(src), "--output", str(tmp_path / "kg.jsonl")]
    assert main(argv) == 2
    assert f"error: {src}:2: " in capsys.readouterr().err
    assert not (tmp_path / "kg.jsonl").exists()


def test_cli_drops_function_word_arguments_and_refuses_an_unknown_language(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "kg.jsonl"
    rows = [_rec("his", "per:employee_of", "CDU", 0.9, 1),
            _rec("Kim", "per:employee_of", "CDU", 0.9, 2)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["triples", "--input", str(src), "--output", str(out), "--lang", "en"]
    assert main(argv) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["used"], counts["function_word_argument"], counts["written"]) == (1, 1, 1)
    assert main(argv[:-1] + ["enn"]) == 2
    assert "'enn'" in capsys.readouterr().err


def test_cli_links_merges_and_keeps_only_new_facts(tmp_path, capsys):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "entities.tsv").write_text(
        "Q1\tPER\ten\tMerkel\nQ2\tLOC\ten\tHamburg\nQ3\tLOC\ten\tBerlin\n"
    )
    (kb / "triples.tsv").write_text("Q1\tper:city_of_birth\tQ2\n")
    (kb / "relations.json").write_text('{"relations": ["per:city_of_birth"]}')
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(_rec("Merkel", "per:city_of_birth", "Hamburg", 0.9, 1)) + "\n\n")
    second.write_text(
        json.dumps(_rec("Merkel", "per:cities_of_residence", "Berlin", 0.8, 1)) + "\n"
    )
    out = tmp_path / "kg.jsonl"
    argv = ["triples", "--input", str(first), str(second), "--output", str(out), "--kb", str(kb)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["records"], summary["triples"], summary["written"]) == (2, 2, 2)
    assert main([*argv, "--only-new"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 1
    (only,) = map(json.loads, out.read_text().splitlines())
    assert (only["subject"], only["relation"], only["object"]) == (
        "Q1",
        "per:cities_of_residence",
        "Q3",
    )
    second.write_text("{not json\n")
    assert main(argv) == 2
    assert f"{second}:1: invalid JSON" in capsys.readouterr().err
    assert main(["triples", "--input", str(first), "--output", str(out), "--only-new"]) == 2
    assert "--only-new needs --kb" in capsys.readouterr().err


def test_cli_keeps_what_the_records_model_was_calibrated_to_keep(tmp_path, capsys):
    """Without --min-confidence: the threshold beside the records' model, else 0.5."""
    model = tmp_path / "model"
    model.mkdir()
    src, out = tmp_path / "in.jsonl", tmp_path / "kg.jsonl"
    records = [_rec("Merkel", "per:city_of_birth", "Hamburg", 0.3, 1, model=str(model)),
               _rec("Kim", "per:city_of_birth", "Lyon", 0.12, 2, model=str(model))]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["triples", "--input", str(src), "--output", str(out)]

    def written(*extra):
        assert main([*argv, *extra]) == 0
        return json.loads(capsys.readouterr().out)["written"]

    (tmp_path / "kg.jsonl.tmp").write_text("a user's file")  # the old fixed temporary name
    assert written() == 0  # an uncalibrated model: the 0.5 floor
    assert (tmp_path / "kg.jsonl.tmp").read_text() == "a user's file"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["in.jsonl", "kg.jsonl", "kg.jsonl.tmp", "model"]  # no temporary file of ours
    (model / "threshold.json").write_text(json.dumps({"threshold": 0.1}))
    assert written() == 2
    assert written("--min-confidence", "0.2") == 1
