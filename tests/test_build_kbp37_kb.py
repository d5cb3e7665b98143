"""benchmarks/build_kbp37_kb.py: a KB from KBP37 train+dev without anything RELX holds."""

import json

from benchmark_scripts import load_benchmark

from relbridge.data_specs.kb_format import load_kb


def _rec(i, text, label):
    return f'{i}\t"{text}"\n{label}\n\n\n'


def test_relx_ids_sentences_and_facts_stay_out(tmp_path):
    kbp, relx = tmp_path / "kbp37", tmp_path / "relx"
    kbp.mkdir()
    relx.mkdir()
    (kbp / "train.txt").write_text(
        _rec(1, " <e1> Billy Hughes </e1> led <e2> Australia </e2> . ", "per:employee_of(e1,e2)")
        + _rec(2, " <e1> Siemens </e1> is in <e2> Munich </e2> . ", "org:city_of_headquarters(e1,e2)")
        + _rec(3, " <e1> Paris </e1> and <e2> Rome </e2> . ", "no_relation"),
        encoding="utf-8",
    )
    (kbp / "dev.txt").write_text(
        _rec(4, " <e1> Anna </e1> works for <e2> Siemens </e2> . ", "per:employee_of(e1,e2)")
        + _rec(5, " Then <e2> IBM </e2> hired <e1> Bob </e1> . ", "per:employee_of(e1,e2)"),
        encoding="utf-8",
    )
    # RELX holds record 5's id, record 2's sentence, and record 1's fact in another sentence.
    (relx / "RELX_en.txt").write_text(
        _rec(5, " x <e1> y </e1> z <e2> w </e2> . ", "no_relation")
        + _rec(9, " <e1> Siemens </e1> is in <e2> Munich </e2> . ", "org:city_of_headquarters(e1,e2)")
        + _rec(8, " <e1> billy hughes </e1> , leader of <e2> Australia </e2> . ",
               "per:employee_of(e1,e2)"),
        encoding="utf-8",
    )  # fmt: skip
    module = load_benchmark("build_kbp37_kb")
    assert module.main(["--kbp37", str(kbp), "--relx", str(relx), "--output", str(tmp_path / "kb")]) == 0
    kb = load_kb(str(tmp_path / "kb"))
    facts = [json.loads(line) for line in (tmp_path / "kb" / "triples.jsonl").read_text().splitlines()]
    assert facts == [{"subject": "kbp37:Anna", "relation": "per:employee_of", "object": "kbp37:Siemens"}]
    entities = {json.loads(line)["id"]: json.loads(line) for line in
                (tmp_path / "kb" / "entities.jsonl").read_text().splitlines()}  # fmt: skip
    assert set(entities) == {"kbp37:Anna", "kbp37:Siemens"} and entities["kbp37:Anna"]["type"] == "PER"
    assert kb is not None
    _, _, counts = module.build_kb(str(kbp), str(relx))
    assert counts["left_out_relx_id"] == 1 and counts["left_out_relx_sentence"] == 1
    assert counts["left_out_relx_fact"] == 1 and counts["no_relation"] == 1
