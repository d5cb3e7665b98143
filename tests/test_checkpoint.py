"""Training checkpoints are read weights-only: planted, truncated or foreign files are one line."""

import os

import pytest
import torch
from single_thread import one_torch_thread  # noqa: F401 (autouse)
from test_models import write_toy_shards
from test_trainer import _cfg

from relbridge.models.checkpoint import CHECKPOINT, load_checkpoint
from relbridge.models.trainer import train


class _Planted:
    """Unpickling this runs os.makedirs(path): what a planted checkpoint.pt could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_a_planted_pickle_checkpoint_is_refused_unread(tiny_encoder, tmp_path, capsys):
    shards = write_toy_shards(tmp_path / "shards")
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"state": {}, "config": {}, "x": _Planted(str(marker))}, out / CHECKPOINT)
    with pytest.raises(ValueError) as caught:
        train(_cfg(tiny_encoder, shards, out, epochs=1))
    message = str(caught.value)
    assert message.startswith(f"{out / CHECKPOINT}: not a relbridge checkpoint")
    assert "\n" not in message and not marker.exists()  # refused, and nothing ran
    from relbridge.cli.main import main

    argv = ["train", "--shards", shards, "--output", str(out), "--model", tiny_encoder]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{out / CHECKPOINT}: not a relbridge checkpoint" in err and not marker.exists()
    torch.load(out / CHECKPOINT, weights_only=False)  # the plant is real: a full unpickle runs it
    assert marker.is_dir()


def test_truncated_and_foreign_checkpoints_are_one_line_errors(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", stop_after_steps=1)
    train(cfg)
    path = tmp_path / "run" / CHECKPOINT
    assert set(load_checkpoint(str(path))) >= {"model", "optimizer", "rng", "state", "config"}
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="unreadable checkpoint") as caught:
        train(cfg)
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    path.write_bytes(b"not a checkpoint at all\n")
    with pytest.raises(ValueError, match="unreadable checkpoint"):
        load_checkpoint(str(path))
    torch.save(torch.zeros(3), path)  # a torch file, but not a training checkpoint
    with pytest.raises(ValueError, match="not a relbridge training checkpoint"):
        load_checkpoint(str(path))


def test_a_completed_run_keeps_only_a_record_unless_asked(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, save_every=0)
    stats = train(cfg)
    record = load_checkpoint(str(tmp_path / "run" / CHECKPOINT))
    assert stats["completed"] and record["completed"]
    assert not {"model", "optimizer", "average", "rng"} & record.keys()
    kept = train(cfg.replace(output=str(tmp_path / "kept"), keep_checkpoint=True))
    full = load_checkpoint(str(tmp_path / "kept" / CHECKPOINT))
    assert kept["completed"] and {"model", "optimizer", "rng"} <= full.keys()
    small, large = (os.path.getsize(tmp_path / d / CHECKPOINT) for d in ("run", "kept"))
    assert small * 20 < large
    # a rerun of the completed run has nothing to do and returns its statistics
    heads = tmp_path / "run" / "model" / "heads.pt"
    before = heads.stat().st_mtime_ns
    again = train(cfg)
    assert again["global_step"] == stats["global_step"] and heads.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="different settings"):  # other settings are still refused
        train(cfg.replace(lr=cfg.optim.lr / 2))


def test_a_new_run_does_not_replace_a_model_whose_checkpoint_is_gone(tiny_encoder, tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, save_every=0)
    train(cfg)
    os.remove(tmp_path / "run" / CHECKPOINT)  # removed to save space, or the folder was copied
    heads = tmp_path / "run" / "model" / "heads.pt"
    before = heads.read_bytes()
    with pytest.raises(ValueError, match=r"run/model: a model trained with other settings"):
        train(cfg.replace(lr=cfg.optim.lr / 2))  # was: trained and replaced the model
    assert heads.read_bytes() == before
    assert train(cfg.replace(epochs=2, resume=False))["completed"]  # on purpose: replaced


def test_a_rerun_of_a_completed_run_with_its_full_checkpoint_keeps_its_stats(
    tiny_encoder, tmp_path
):
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, keep_checkpoint=True)
    stats = train(cfg)
    saved = (tmp_path / "run" / "train_stats.json").read_text()
    again = train(cfg)  # was: a no-op pass that rewrote the stats (no throughput, no loss)
    assert again == stats and (tmp_path / "run" / "train_stats.json").read_text() == saved
    assert {"model", "optimizer"} <= load_checkpoint(str(tmp_path / "run" / CHECKPOINT)).keys()


def test_a_second_run_into_a_folder_in_training_is_refused(tiny_encoder, tmp_path):
    """Two trainers in one folder would overwrite each other's checkpoint and model."""
    from relbridge.runtime.files import OutputLock

    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, save_every=0)
    with OutputLock(str(tmp_path / "run"), "train (pid 7)"):  # the first run, still training
        with pytest.raises(ValueError, match=r"run is in use by another run \(run train \(pid 7\)"):
            train(cfg)
    assert not (tmp_path / "run" / "model").exists()
    assert train(cfg)["completed"]  # the lock goes with its holder
    assert sorted(os.listdir(tmp_path)) == ["run", "shards"]  # no lock file left beside it


def test_a_saved_model_is_swapped_in_whole(tiny_encoder, tmp_path):
    """The new model replaces the old in one step; leftovers of a crash are cleared."""
    shards = write_toy_shards(tmp_path / "shards")
    cfg = _cfg(tiny_encoder, shards, tmp_path / "run", epochs=1, save_every=0)
    train(cfg)
    (tmp_path / "run" / "model.old").mkdir()  # a crash of an earlier version left it
    train(cfg.replace(epochs=2, resume=False))
    entries = set(os.listdir(tmp_path / "run"))
    assert "model" in entries and not {"model.old", "model.tmp"} & entries
    saved = (tmp_path / "run" / "model" / "train_config.json").read_text()
    assert '"epochs": 2' in saved
