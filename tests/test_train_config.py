"""TrainConfig: four groups inside, one flat namespace outside (flags, JSON files, checkpoints)."""

import pytest

from relbridge.models.model_config import ModelConfig
from relbridge.models.train_config import FLAT, TrainConfig


def test_flat_and_nested_settings_give_the_same_grouped_config():
    flat = TrainConfig.from_flat(output="o", shards="s", lr=1e-4, model="enc", max_seq_len=64)
    nested = TrainConfig.from_json(
        {"run": {"output": "o"}, "data": {"shards": "s"}, "optim": {"lr": 1e-4},
         "model": {"encoder": "enc", "max_seq_len": 64}}
    )  # fmt: skip
    assert flat == nested
    assert isinstance(flat.model, ModelConfig)  # nested, not copied
    assert (flat.model.encoder, flat.model.max_seq_len, flat.optim.lr) == ("enc", 64, 1e-4)
    assert flat.model.freeze_embeddings and flat.run.output == "o" and flat.data.shards == "s"
    # the flat view is what train_config.json and checkpoints hold, and it loads back
    assert TrainConfig.from_json(flat.flat()) == flat
    assert set(flat.flat()) == set(FLAT) and flat.flat()["model"] == "enc"
    assert flat.replace(lr=2e-4).optim.lr == 2e-4 and flat.optim.lr == 1e-4


def test_unknown_or_misplaced_settings_are_named():
    with pytest.raises(ValueError, match="unknown TrainConfig optim fields: \\['shards'\\]"):
        TrainConfig.from_json({"output": "o", "optim": {"shards": "s"}})
    with pytest.raises(ValueError, match="relations"):  # the data decides them, not a setting
        TrainConfig.from_json({"output": "o", "shards": "s", "model": {"relations": ["NA"]}})
    with pytest.raises(ValueError, match="output is required"):
        TrainConfig.from_flat(shards="s")


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": "3"}, "epochs must be int, got '3'"),
        ({"lr": None}, "lr must be float, got None"),
        ({"progress": 1}, "progress must be bool, got 1"),
        ({"output": 5}, "output must be str, got 5"),
        ({"relx_train": "RELX_en.txt"}, "relx_train must be a list of strings"),  # not its letters
        ({"optim": {"batch_size": 2.5}}, "batch_size must be int, got 2.5"),
    ],
)
def test_a_json_setting_of_the_wrong_type_is_named(setting, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_json({"output": "o", "shards": "s", **setting})


def test_json_numbers_fit_float_settings():
    assert TrainConfig.from_json({"output": "o", "shards": "s", "lr": 1}).optim.lr == 1
