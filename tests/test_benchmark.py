"""The RELX benchmark end to end on KBP37-shaped toy files, and the CPU preset's frozen layers."""

import json

from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import RELX_TEXT

from relbridge.models.thresholds import CALIBRATED, READINGS
from relbridge.models.benchmark import kbp37_test_ids, relx_benchmark_config, run_relx_benchmark
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.models.optim import freeze_lower as _freeze_lower


def _toy_dirs(tmp_path):
    """KBP37 train/dev/test and RELX en/de/fr from the same four records; RELX-en holds ids 1-2."""
    kbp, relx = tmp_path / "kbp37", tmp_path / "relx"
    kbp.mkdir()
    relx.mkdir()
    for name in ("train", "dev", "test"):
        (kbp / f"{name}.txt").write_text(RELX_TEXT, encoding="utf-8")
    records = RELX_TEXT.split("\n\n\n")
    (relx / "RELX_en.txt").write_text("\n\n\n".join(records[:2]) + "\n", encoding="utf-8")
    for lang in ("de", "fr"):
        (relx / f"RELX_{lang}.txt").write_text(RELX_TEXT, encoding="utf-8")
    return str(kbp), str(relx)


def test_kbp37_test_ids_leave_out_relx(tmp_path):
    kbp, relx = _toy_dirs(tmp_path)
    assert kbp37_test_ids(kbp, relx) == {"3", "4"}


def test_benchmark_runs_and_reports_every_language(tiny_encoder, tmp_path):
    kbp, relx = _toy_dirs(tmp_path)
    out = tmp_path / "bench"
    summary = run_relx_benchmark(
        kbp, relx, str(out), preset="cpu", kbp37_test=True, fast_student=False,
        model=tiny_encoder, freeze_layers=1, max_train_instances=0, max_dev_instances=3,
        eval_every=3, epochs=2, batch_size=2, progress=False,
    )  # fmt: skip
    assert set(summary["relx_f1"]) == {"en", "de", "fr"} and "teacher" not in summary
    assert summary["model_dir"] == str(out / "model") and summary["marker_mode"] == "inline"
    assert summary["scores"]["en"]["pairs"] == 2 and summary["scores"]["de"]["pairs"] == 4
    assert summary["scores"]["kbp37_test_minus_relx"]["pairs"] == 2
    training = summary["training"]
    assert training["dev_pairs"] == 3 and training["tokens_per_s"] > 0
    # 4 pairs + 1 tagging input (tagging_ratio 0.25) / batch 2 = 3 steps per epoch: dev at
    # step 3 (eval_every) and at the last step, 6.
    assert [h["global_step"] for h in summary["history"]] == [3, 6]
    assert json.loads((out / "benchmark.json").read_text())["preset"] == "cpu"
    # The tagger was trained (partial labels) and the raw-text block scores every language.
    assert training["tag_inputs"] == 4 if "tag_inputs" in training else True
    assert set(summary["raw_text"]) == {"en", "de", "fr"}
    en = summary["raw_text"]["en"]
    assert en["sentences"] == 2 and 0 <= en["relx_f1"] <= 100 and 0 <= en["mention_recall"] <= 100
    threshold = json.loads((out / "model" / "threshold.json").read_text())
    assert threshold["threshold"] == summary["raw_text_threshold"]
    assert threshold["chosen_on"].endswith("dev.txt")
    assert len(threshold["curve"]) == len(CALIBRATED) * len(READINGS) * 7 * 20


def test_presets_and_overrides(tmp_path):
    cpu = relx_benchmark_config("k", str(tmp_path), "cpu", lr=2e-5)
    assert cpu.optim.freeze_layers == 2 and cpu.optim.layer_lr_decay == 0.9 and cpu.optim.lr == 2e-5
    assert cpu.optim.epochs == 3 and cpu.optim.ema_decay == 0.995
    assert cpu.model.tagging_weight > 0 and cpu.model.tag_crf
    full = relx_benchmark_config("k", str(tmp_path), "full")
    assert full.optim.freeze_layers == 0 and full.data.max_train_instances == 0
    assert cpu.data.relx_train == ("k/train.txt",) and cpu.data.dev == ("k/dev.txt",)


def test_freeze_lower_stops_gradients_below_the_top_layers(tiny_encoder):
    model = RelationExtractor(ModelConfig(encoder=tiny_encoder, relations=("NA", "r")))
    _freeze_lower(model, 1)
    layers = model.encoder.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    assert not model.marker_embeddings.weight.requires_grad
    assert model.rel_head.weight.requires_grad


def test_the_fast_student_is_delivered_by_default(tiny_encoder, tmp_path):
    kbp, relx = _toy_dirs(tmp_path)
    out = tmp_path / "bench"
    summary = run_relx_benchmark(
        kbp, relx, str(out), languages=("en", "de"), preset="cpu", kbp37_test=True,
        model=tiny_encoder, freeze_layers=1, max_dev_instances=3, eval_every=3, epochs=2,
        batch_size=2, progress=False, raw_text_sentences=2, calibration_sentences=2,
    )  # fmt: skip
    student, teacher = out / "fast" / "model", summary["teacher"]
    assert summary["model_dir"] == str(student) and summary["marker_mode"] == "levitated"
    assert teacher["model_dir"] == str(out / "model") and teacher["marker_mode"] == "inline"
    assert set(summary["relx_f1"]) == set(summary["raw_text"]) == set(teacher["relx_f1"])
    assert set(teacher["relx_f1"]) == {"en", "de"}
    below = (sum(teacher["relx_f1"].values()) - sum(summary["relx_f1"].values())) / 2
    assert abs(summary["relx_f1_mean_below_teacher"] - below) < 0.01
    # KBP37 test is scored for the delivered model; the teacher's raw text is not scored.
    assert summary["scores"]["kbp37_test_minus_relx"]["pairs"] == 2
    assert not (out / "model" / "threshold.json").exists()
    assert (student / "threshold.json").exists()  # its own raw-text calibration
    config = json.loads((student / "extractor_config.json").read_text())
    assert config["marker_mode"] == "levitated"
    trained = json.loads((student / "train_config.json").read_text())
    assert trained["distill_from"] == str(out / "model") and trained["epochs"] == 1
    assert trained["heads_from"] == str(out / "model") and trained["distill_tag_weight"] == 1.0
    assert trained["unannotated_negatives"] == 0.5 and trained["boundary_negatives"] == 0.25
    assert trained["model"] == str(out / "model" / "encoder")
    assert summary["training"]["model_dir"] == str(student)
    written = json.loads((out / "benchmark.json").read_text())
    assert written["teacher"] == teacher and written["relx_f1"] == summary["relx_f1"]


def test_cli_delivers_the_fast_student_unless_told_not_to(monkeypatch, tmp_path, capsys):
    import relbridge.models.benchmark as benchmark
    from relbridge.cli.main import main

    seen = {}

    def fake(kbp37, relx, output, languages, **kw):
        seen.update(kw)
        teacher = {"model_dir": f"{output}/model", "relx_f1": {"en": 51.0}}
        return {
            "model_dir": f"{output}/fast/model", "relx_f1": {"en": 50.0}, "scores": {},
            "teacher": teacher, "relx_f1_mean_below_teacher": 1.0, "history": [],
        }  # fmt: skip

    monkeypatch.setattr(benchmark, "run_relx_benchmark", fake)
    out = str(tmp_path / "bench")
    argv = ["benchmark", "relx", "--kbp37", "k", "--relx", "r", "--output", out]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert seen["fast_student"] is True
    assert printed["model_dir"] == f"{out}/fast/model" and "history" not in printed
    assert printed["teacher"]["relx_f1"] == {"en": 51.0}
    assert printed["relx_f1_mean_below_teacher"] == 1.0
    assert main(argv + ["--no-fast-student"]) == 0 and seen["fast_student"] is False
