"""Bad config values are refused before any job, with one line naming key, value and what is allowed."""

import copy
import tempfile
from pathlib import Path

import pytest
import yaml

from skipinit import profile

GOOD = {
    "name": "t",
    "dataset": "synthetic",
    "data_source": "synthetic",
    "data_path": None,
    "pack": 1,
    "training": {"epochs": 1},
    "experiments": {
        "depth": {"kind": "depth", "grid": {"depth": [10, 16], "lr": [0.1, 0.2]}, "models": [{"variant": "skipinit"}]}
    },
    "signal": {"models": ["linear-batchnorm"]},
    "imagenet": {"root": None},
}


def resolve(config: dict) -> profile.Resolved:
    """`config` written as a profile file and resolved as the workflow resolves it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "profile.yaml"
        path.write_text(yaml.safe_dump(config))
        return profile.resolve([path])


def refused(change):
    """The one-line refusal of GOOD changed by `change`, after the profile file's name."""
    config = copy.deepcopy(GOOD)
    change(config)
    with pytest.raises(profile.ProfileError) as error:
        resolve(config)
    message = str(error.value)
    assert "\n" not in message and message.split(": ", 1)[0].endswith("profile.yaml")
    return message.split(": ", 1)[1]


def test_good_config_passes_and_plans_its_cells():
    config = copy.deepcopy(GOOD)
    resolved = resolve(config)
    assert config == GOOD  # resolving changes nothing it is given
    assert (
        resolved.config["training"]["batch_size"] == 128 and resolved.config["synthetic"]["train_size"] == 512
    )  # the schema's defaults
    cells = resolved.experiments["depth"]
    assert [(c["depth"], c["lr"], c["variant"]) for c in cells] == [
        (10, 0.1, "skipinit"),
        (10, 0.2, "skipinit"),
        (16, 0.1, "skipinit"),
        (16, 0.2, "skipinit"),
    ]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("depth", 17, r"depth=17 is not a Wide-ResNet depth; allowed: 6N\+4"),
        ("batch_size", 0, r"models\[0\]: batch_size=0 is not allowed; allowed: an integer >= 1"),
        ("epochs", -1, r"models\[0\]: epochs=-1 is not allowed; allowed: an integer >= 1"),
        ("lr", 0.0, r"models\[0\]: lr=0.0 is not allowed; allowed: a finite number > 0"),
        ("variant", "layernorm", r"variant='layernorm' is not allowed; allowed: batchnorm, skipinit"),
        ("schedule", "linear", r"schedule='linear' is not allowed; allowed: halving, step, cosine"),
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

    assert (
        "experiments.depth.models[0]: alpha_init='sqrt(d)' is not allowed; allowed: a finite number or '1/sqrt(d)'"
        in refused(change)
    )


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
    config = copy.deepcopy(GOOD)
    config["pack"] = 8
    assert sorted(len(members) for members in resolve(config).packs.values()) == [2, 2]  # two depths, 2 lrs each


def test_imagenet_root_without_train_and_val(tmp_path):
    message = refused(lambda c: c.update(imagenet={"root": str(tmp_path)}))
    assert "imagenet.root=" in message and "train/ and val/" in message


def test_unknown_signal_model():
    assert "signal.models contains 'linear-layernorm'" in refused(
        lambda c: c["signal"].update(models=["linear-layernorm"])
    )


def test_a_claims_file_that_does_not_exist_is_refused_before_any_job():
    message = refused(lambda c: c.update(claims="config/claims-typo.yaml"))
    assert message.startswith("claims='config/claims-typo.yaml' is not a file")


@pytest.mark.parametrize(
    "micro_batch, ghost, message",
    [
        (12, 0, "micro_batch=12 does not divide batch_size=64"),
        (16, 32, "micro_batch=16 is not a multiple of ghost_batch_size=32"),
    ],
)
def test_micro_batch_must_split_batches_into_whole_ghost_batches(micro_batch, ghost, message):
    def change(config):
        config["micro_batch"] = micro_batch
        config["training"].update(batch_size=64)
        config["experiments"]["depth"]["models"] = (
            [{"variant": "batchnorm", "ghost_batch_size": ghost}] if ghost else [{"variant": "skipinit"}]
        )

    assert message in refused(change)


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("nesterov", "true", "true or false"),  # a string would have switched the option on
        ("depth", 16.5, "an integer >= 1"),  # would have been truncated to 16
        ("lr", float("inf"), "a finite number > 0"),
        ("lr", float("nan"), "a finite number > 0"),
        ("dropout", 1.5, "a finite number >= 0 and < 1"),
        ("lr", "abc", "a finite number > 0"),  # would have died in float() naming no key
        ("seed", -1, "an integer >= 0"),
        ("momentum", True, "a finite number >= 0 and <= 1"),  # a boolean is not a number
        ("alpha_init", "sqrt(d)", "a finite number or '1/sqrt(d)'"),
    ],
)
def test_grid_values_get_the_checks_of_training_values(key, value, allowed):
    def change(config):
        config["experiments"]["depth"]["grid"][key] = [0.1, value] if key == "lr" else [value]

    message = refused(change)
    index = 1 if key == "lr" else 0
    assert message.startswith(
        f"experiments.depth.grid.{key}[{index}]: {key}={value!r} is not allowed; allowed: {allowed}"
    )


@pytest.mark.parametrize("where", ["training", "models"])
def test_the_same_bad_value_is_refused_in_training_and_models(where):
    def change(config):
        layer = config["training"] if where == "training" else config["experiments"]["depth"]["models"][0]
        layer["nesterov"] = "true"

    location = "training" if where == "training" else "experiments.depth.models.0"
    assert (
        refused(change)
        == f"{location}.nesterov: 'true' is not of type 'boolean'; in a profile write true or false, on the command "
        "line (--config KEY=...) True or False"
    )


def test_integral_floats_and_integers_for_floats_are_still_accepted():
    config = copy.deepcopy(GOOD)
    config["experiments"]["depth"]["grid"].update(depth=[10.0], lr=[1], nesterov=[True, False])
    cells = resolve(config).experiments["depth"]
    assert {type(c["depth"]) for c in cells} == {int} and {type(c["lr"]) for c in cells} == {float}
    assert [c["nesterov"] for c in cells] == [True, False]


def test_schema_cell_settings_mirror_the_vocabulary():
    """Each cell setting: documented with its type in the schema, its default there (`training:`) and only there."""
    from skipinit import schema
    from skipinit.vocab import CELL_DEFAULTS, CELL_SETTINGS

    documented = schema.schema()["definitions"]["cell_settings"]["properties"]
    grid_keys = schema.key("experiments")["additionalProperties"]["properties"]["grid"]["propertyNames"]["enum"]
    settable = [
        setting for setting in CELL_SETTINGS if setting.name != "dataset"
    ]  # the profile's `dataset` key sets it
    assert (
        list(documented)
        == grid_keys
        == list(schema.key("training")["properties"])
        == [setting.name for setting in settable]
    )
    json_type = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "alpha": ["number", "string"]}
    for setting in settable:
        assert (
            documented[setting.name]["type"] == json_type[setting.kind] and documented[setting.name]["description"]
        ), setting.name
        assert "default" not in documented[setting.name], setting.name  # a models: entry must not fill one in
        assert (
            setting.check(schema.key("training")["properties"][setting.name]["default"]) == CELL_DEFAULTS[setting.name]
        )
    assert CELL_DEFAULTS["dataset"] == schema.default("dataset")


def image_folder(root, splits=None):
    splits = splits or {"train": ("cat", "dog"), "test": ("cat", "dog")}
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            (root / split / name / "0.png").write_bytes(b"not read at plan time")
    return root


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: tmp, "has no train/<class>/<image> and test/<class>/<image> in the folder"),  # empty folder
        (lambda tmp: image_folder(tmp, {"train": ("cat",)}), "has no train/<class>/<image> and test/<class>/<image>"),
        (
            lambda tmp: image_folder(tmp, {"train": ("cat", "dog"), "test": ("cat",)}),
            "has train/ and test/ with different class folders (['dog'] in only one)",
        ),
        (
            lambda tmp: (tmp / "notes.txt", (tmp / "notes.txt").write_text("hello"))[0],
            "is not a readable .tar.gz archive (ReadError: file could not be opened successfully)",
        ),
    ],
)
def test_unusable_image_folder_is_refused_at_plan_time(tmp_path, make, expected):
    path = make(tmp_path)
    message = refused(lambda c: c.update(data_source="imagefolder", data_path=str(path)))
    assert message.startswith(f"data_path={str(path)!r} {expected}"), message


def test_image_folder_and_its_archive_one_level_down_pass(tmp_path):
    import tarfile

    image_folder(tmp_path / "pack" / "cifar")
    with tarfile.open(tmp_path / "data.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "pack" / "cifar", arcname="cifar")
    for path in (tmp_path / "pack", tmp_path / "pack" / "cifar", tmp_path / "data.tar.gz"):
        config = copy.deepcopy(GOOD)
        config.update(data_source="imagefolder", data_path=str(path))
        resolve(config)


def documented_defaults() -> dict[str, str]:
    """`key: default` of every row of config/README.md's key tables (`a`, `.b` and `x, y` split pairwise)."""
    from conftest import REPO

    documented = {}
    for line in (REPO / "config" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`") or cells[1] == "(required)":
            continue
        keys = [key.strip().strip("`") for key in cells[0].split(",")]
        keys = [keys[0].rsplit(".", 1)[0] + key if key.startswith(".") else key for key in keys]
        values = [cells[1]] if len(keys) == 1 else [value.strip() for value in cells[1].split(",")]
        documented.update(zip(keys, (value.strip("`") for value in values)))
    return documented


def test_the_documented_defaults_are_the_schemas():
    """config/README.md states each default for the reader; the schema holds it: they may not drift apart."""
    from skipinit import schema

    def schema_default(key: str):
        path = key.split(".")
        spec = schema.key("training")["properties"].get(key) or schema.key(path[0])
        for part in path[1:]:
            spec = spec["properties"][part]
        return spec["default"]

    def same(text: str, value) -> bool:
        parsed = yaml.safe_load(text)
        if isinstance(value, bool) or isinstance(parsed, bool):
            return parsed is value
        if isinstance(value, (int, float)) or isinstance(parsed, (int, float)):
            try:
                return float(text) == float(value)
            except (TypeError, ValueError):
                return False
        return parsed == value

    documented = documented_defaults()
    assert {
        "dataset",
        "synthetic.train_size",
        "resources.train_runtime_max",
        "weight_decay",
        "signal.conv_width",
    } <= set(documented)
    for key, text in documented.items():
        assert same(text, schema_default(key)), (
            f"config/README.md says {key} defaults to {text}, the schema {schema_default(key)!r}"
        )
