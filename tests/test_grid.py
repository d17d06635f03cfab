import pytest
import yaml

from skipinit import grid, profile, vocab

from conftest import REPO

CONFIG = {
    "name": "grid-test",
    "dataset": "synthetic",
    "data_source": "synthetic",
    "training": {"width": 2, "epochs": 3, "batch_size": 64},
    "experiments": {
        "depth": {
            "kind": "depth",
            "grid": {"depth": [16, 100], "lr": [0.1, 0.2], "seed": [0, 1]},
            "models": [{"variant": "batchnorm"}, {"variant": "skipinit", "alpha_init": "1/sqrt(d)"}],
        },
        "batch": {
            "kind": "batch_size",
            "grid": {"depth": [16], "batch_size": [64, 128], "lr": [0.1]},
            "models": [{"variant": "batchnorm"}],
        },
        "imagenet": {
            "kind": "imagenet",
            "grid": {"batch_size": [256]},
            "models": [{"variant": "batchnorm", "arch": "resnet50_v2"}],
        },
    },
}


@pytest.fixture
def resolved(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(
        yaml.safe_dump({**CONFIG, "claims": str(REPO / "config" / "claims.yaml")})
    )  # a workdir without a workflow
    return profile.resolve([path], workdir=tmp_path)


def test_cells_are_the_product_of_grid_and_models_and_shared_across_experiments(resolved):
    assert len(resolved.experiments["depth"]) == 2 * 2 * 2 * 2
    assert "imagenet" in resolved.planned and "imagenet" not in resolved.experiments  # no imagenet.root configured
    cells = resolved.cells
    # depth-16 batchnorm at batch 64, lr 0.1, seed 0 appears in both experiments, once here
    assert len(cells) == 16 + 1
    cell = next(iter(cells.values()))
    assert cell["width"] == 2 and cell["epochs"] == 3 and cell["dataset"] == "synthetic"
    assert set(cell) == set(vocab.CELL_KEYS)


def test_cell_ids_are_readable_paths():
    cell = grid.make_cell(
        {
            "dataset": "synthetic",
            "depth": 100,
            "width": 2,
            "variant": "skipinit",
            "alpha_init": "1/sqrt(d)",
            "batch_size": 64,
            "lr": 0.05,
            "seed": 2,
            "dropout": 0.2,
            "epochs": 200,
        }
    )
    assert grid.cell_id(cell) == "synthetic/wrn-100-2/skipinit-aisqrtd-do0.2/b64-e200-wd0.0005-halving/lr0.05-s2"
    assert grid.model_label(cell) == "SkipInit (alpha=1/sqrt(d)) + dropout 0.2"


def test_settings_that_do_not_apply_are_normalized_away():
    bn = grid.make_cell({"variant": "batchnorm", "alpha_init": 1, "ghost_batch_size": 64, "batch_size": 64})
    assert bn["alpha_init"] == "0" and bn["ghost_batch_size"] == 0  # ghost batches need batch > ghost size
    big = grid.make_cell({"variant": "batchnorm", "ghost_batch_size": 64, "batch_size": 256})
    assert big["ghost_batch_size"] == 64 and grid.model_slug(big) == "batchnorm-gbn64"
    assert grid.make_cell({"variant": "skipinit", "alpha_init": 1})["alpha_init"] == "1"
    with pytest.raises(ValueError):
        vocab.canonical_alpha("sqrt(d)")


def test_packs_group_lr_and_seed_sweeps(resolved):
    cells = resolved.cells
    packs = grid.packs(cells, pack_size=4)
    assert sum(len(members) for members in packs.values()) == len(cells)
    for key, members in packs.items():
        shared = {grid.cell_id(m).rsplit("/", 1)[0] for m in members}
        assert len(shared) == 1 and len(members) <= 4
        assert key.endswith("+".join(grid.member_slug(m) for m in members))
    assert set(grid.packs(cells, pack_size=1)) == set(cells)
