"""Bad config values are refused before any job, with one line naming key, value and what is allowed."""

import copy

import pytest

from skipinit.config import ConfigError, check_config

GOOD = {
    "name": "t",
    "dataset": "synthetic",
    "data_source": "synthetic",
    "data_path": None,
    "pack": 1,
    "training": {"epochs": 1},
    "experiments": {"depth": {"kind": "depth", "grid": {"depth": [10, 16], "lr": [0.1, 0.2]}, "models": [{"variant": "skipinit"}]}},
    "signal": {"models": ["linear-batchnorm"]},
    "imagenet": {"root": None},
}


def refused(change):
    config = copy.deepcopy(GOOD)
    change(config)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_good_config_passes():
    check_config(copy.deepcopy(GOOD))


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("depth", 17, r"depth=17 is not a Wide-ResNet depth; allowed: 6N\+4"),
        ("batch_size", 0, "batch_size=0 must be a positive integer"),
        ("epochs", -1, "epochs=-1 must be a positive integer"),
        ("lr", 0.0, "lr=0.0 must be a positive number"),
        ("variant", "layernorm", "variant='layernorm' is unknown; allowed: batchnorm, skipinit"),
        ("schedule", "linear", "schedule='linear' is unknown; allowed: halving, step, cosine"),
    ],
)
def test_bad_cell_values(key, value, expected):
    def change(config):
        config["experiments"]["depth"]["models"][0][key] = value

    import re

    assert re.search(expected, refused(change))


def test_bad_alpha_init():
    def change(config):
        config["experiments"]["depth"]["models"][0]["alpha_init"] = "sqrt(d)"

    assert "experiments.depth.models[0].alpha_init='sqrt(d)'" in refused(change)


def test_unknown_dataset_source():
    assert "data_source='mnist' is unknown" in refused(lambda c: c.update(data_source="mnist"))


def test_missing_dataset_path_names_remedies(tmp_path):
    message = refused(lambda c: c.update(data_source="imagefolder", data_path=str(tmp_path / "missing.tar.gz")))
    assert "data_path=" in message and "--config data_source=synthetic" in message


def test_pack_that_does_not_divide_the_sweep():
    def four_lrs_in_packs_of_three(config):
        config["experiments"]["depth"]["grid"]["lr"] = [0.05, 0.1, 0.2, 0.4]
        config["pack"] = 3

    message = refused(four_lrs_in_packs_of_three)
    assert "pack=3 does not divide the lr x seed sweep" in message


def test_pack_larger_than_a_sweep_packs_the_whole_sweep():
    from skipinit.grid import all_cells, packs

    config = copy.deepcopy(GOOD)
    config["pack"] = 8
    check_config(config)
    assert sorted(len(members) for members in packs(all_cells(config), 8).values()) == [2, 2]  # two depths, 2 lrs each


def test_imagenet_root_without_train_and_val(tmp_path):
    message = refused(lambda c: c.update(imagenet={"root": str(tmp_path)}))
    assert "imagenet.root=" in message and "train/ and val/" in message


def test_unknown_signal_model():
    assert "signal.models contains 'linear-layernorm'" in refused(lambda c: c["signal"].update(models=["linear-layernorm"]))


@pytest.mark.parametrize("micro_batch, ghost, message", [
    (12, 0, "micro_batch=12 does not divide batch_size=64"),
    (16, 32, "micro_batch=16 is not a multiple of ghost_batch_size=32"),
])
def test_micro_batch_must_split_batches_into_whole_ghost_batches(micro_batch, ghost, message):
    def change(config):
        config["micro_batch"] = micro_batch
        config["training"].update(batch_size=64)
        config["experiments"]["depth"]["models"] = [{"variant": "batchnorm", "ghost_batch_size": ghost}] if ghost else [{"variant": "skipinit"}]

    assert message in refused(change)
