"""ImageNet: the image-folder listing, the streaming input pipeline, and ResNet-50-V2 training through the engine.

A tiny folder of JPEGs of varied sizes (3 classes x 6 train + 2 val images) stands in for
ImageNet; the nets train at 64 px on the CPU in float32, one loader worker.
"""

import copy
import json
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from skipinit import cli, data, profile
from skipinit.data import imagenet
from skipinit.data.batches import Serving
from skipinit.engine import trainer
from skipinit.engine.checkpoint import load_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.grid import make_cell

from conftest import kill_in_second_epoch, train_arguments

CLASSES = ("n01440764", "n01443537", "n01484850")
SIZES = [(80, 60), (60, 80), (100, 100), (72, 96), (120, 50), (64, 64)]  # (width, height)
SIZE = 64
DETERMINISTIC = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1, image_size=SIZE)


def write_folder(root, classes=CLASSES, counts=(("train", 6), ("val", 2))):
    """JPEGs whose colour depends on the class, so the classes are learnable."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        for split, count in counts:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                width, height = SIZES[i % len(SIZES)]
                pixels = 50 + 70 * label + 25 * rng.normal(size=(height, width, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    root / split / name / f"{name}_{i}.JPEG", quality=90
                )
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return imagenet.ImageNetFolder(write_folder(tmp_path_factory.mktemp("imagenet")))


def cell(**overrides):
    settings = {
        "dataset": "imagenet",
        "arch": "resnet50_v2",
        "depth": 50,
        "width": 1,
        "batch_size": 6,
        "epochs": 2,
        "lr": 0.02,
        "seed": 0,
        "weight_decay": 1e-4,
        "schedule": "halving",
    }
    return make_cell({**settings, **overrides})


def stream(folder, cells=None, threads=1, channels_last=True):
    return imagenet.ImageNetStream(
        folder, cells or [cell()], Serving(channels_last, SIZE, threads), torch.device("cpu")
    )


def pixels(x):
    """Normalized inputs back to 0..255 pixel values."""
    mean, std = torch.tensor(imagenet.IMAGENET_MEAN)[:, None, None], torch.tensor(imagenet.IMAGENET_STD)[:, None, None]
    return (x * std + mean) * 255


# ---------------------------------------------------------------------------------------------
# Listing and batches
# ---------------------------------------------------------------------------------------------


def test_listing_is_torchvision_imagefolders(folder):
    from torchvision.datasets import ImageFolder

    assert folder.classes == CLASSES
    for split in ("train", "val"):
        reference = ImageFolder(str(folder.root / split))
        paths = [str(folder.root / p.decode()) for p in folder.files[split]]
        assert list(zip(paths, folder.labels[split].tolist())) == reference.samples
    assert folder.labels["train"].tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert len(folder.sha256) == 64


def test_listing_digest_follows_names_and_sizes(tmp_path):
    root = write_folder(tmp_path / "a")
    before = imagenet.ImageNetFolder(root).sha256
    assert imagenet.ImageNetFolder(root).sha256 == before
    extra = root / "val" / CLASSES[0] / "extra.JPEG"
    Image.new("RGB", (70, 70)).save(extra)
    assert imagenet.ImageNetFolder(root).sha256 != before


def test_a_batch_is_normalized_on_the_device_in_channels_last(folder):
    source = stream(folder)
    assert (source.num_classes, source.num_train, source.num_test, source.steps_per_epoch) == (3, 18, 6, 3)
    batches = list(source.train_batches(0))
    assert len(batches) == 3
    x, y = batches[0]
    assert (
        x.shape == (6, 3, SIZE, SIZE)
        and x.dtype == torch.float32
        and x.is_contiguous(memory_format=torch.channels_last)
    )
    assert y.shape == (6,) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}
    values = pixels(x)
    assert values.min() >= -1e-3 and values.max() <= 255 + 1e-3
    assert torch.allclose(values, values.round(), atol=1e-3)  # uint8 pixels, normalized with ImageNet mean/std
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == [0] * 6 + [1] * 6 + [2] * 6  # every image once


def test_evaluation_is_resize_8_7_then_center_crop_as_torchvision(folder):
    from torchvision import transforms

    reference = transforms.Compose([transforms.Resize(round(SIZE * 8 / 7)), transforms.CenterCrop(SIZE)])
    x, y = next(stream(folder).test_batches())
    assert x.shape == (6, 3, SIZE, SIZE) and y.tolist() == [0, 0, 1, 1, 2, 2]
    for k, path in enumerate(folder.files["val"]):
        with Image.open(folder.root / path.decode()) as image:
            expected = torch.from_numpy(np.asarray(reference(image.convert("RGB")), dtype=np.float32)).permute(2, 0, 1)
        assert torch.allclose(pixels(x[k]), expected, atol=1e-3)


def test_random_resized_crop_box_stays_inside_with_area_and_aspect_in_range():
    import random

    rng = random.Random(0)
    for width, height in SIZES:
        for _ in range(50):
            left, top, right, bottom = imagenet.random_resized_crop_box(width, height, rng)
            w, h = right - left, bottom - top
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            assert 0.08 * width * height * 0.8 <= w * h and 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25  # up to rounding
    # 500 x 20: no crop of 8% of the area at aspect <= 4/3 fits, so it is the central 4/3 crop
    assert imagenet.random_resized_crop_box(500, 20, rng) == (236, 0, 263, 20)


def test_batches_depend_on_seed_and_epoch_only(folder):
    def labels_and_inputs(source, epoch):
        batches = list(source.train_batches(epoch))
        return torch.cat([y for _, y in batches]), torch.cat([x for x, _ in batches])

    first_y, first_x = labels_and_inputs(stream(folder), 0)
    again_y, again_x = labels_and_inputs(stream(folder, threads=2), 0)  # other worker count: same batches
    main_y, main_x = labels_and_inputs(stream(folder, threads=0), 0)  # decoded in the main process
    assert torch.equal(first_y, again_y) and torch.equal(first_x, again_x)
    assert torch.equal(first_y, main_y) and torch.equal(first_x, main_x)
    next_y, next_x = labels_and_inputs(stream(folder), 1)
    assert not torch.equal(first_x, next_x) and not torch.equal(first_y, next_y)  # another order (and crops)
    other_y, other_x = labels_and_inputs(stream(folder, cells=[cell(seed=1)]), 0)
    assert not torch.equal(first_x, other_x)


def test_a_pack_of_several_seeds_is_refused(folder):
    with pytest.raises(ValueError, match="must share one seed"):
        stream(folder, cells=[cell(seed=0), cell(seed=1)])


# ---------------------------------------------------------------------------------------------
# Training through the engine
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """Batch norm and SkipInit + dropout, 2 epochs each, with their final checkpoints."""
    runs = {}
    for name, overrides in {"batchnorm": {}, "skipinit": {"variant": "skipinit", "dropout": 0.2}}.items():
        path = tmp_path_factory.mktemp(name) / "ckpt.pt"
        cells = [cell(**overrides)]
        runs[name] = (
            cells,
            trainer.train_pack(cells, folder, DETERMINISTIC, checkpoint=path, log=lambda line: None),
            load_checkpoint(path),
        )
    return runs


@pytest.mark.parametrize("name", ["batchnorm", "skipinit"])
def test_resnet50_v2_trains_two_epochs_with_a_cifar_shaped_result(trained, name):
    cells, results, state = trained[name]
    result = results[0]
    assert result["status"] == "ok" and not result["diverged"]
    assert result["epochs_completed"] == 2 and result["steps"] == 6 and len(result["curve"]) == 2
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert math.isfinite(result[key]), key
    assert all(math.isfinite(point["train_loss"]) for point in result["curve"])
    assert {k: result[k] for k in cells[0]} == cells[0]
    cifar = trainer.train_pack(
        [make_cell({"depth": 10, "batch_size": 16, "epochs": 1})],
        data.synthetic(32, 16),
        DETERMINISTIC,
        log=lambda line: None,
    )[0]
    assert result.keys() == cifar.keys() and result["curve"][0].keys() == cifar["curve"][0].keys()
    assert state["fingerprint"]["image_size"] == SIZE and state["fingerprint"]["classes"] == 3


def test_resume_from_the_epoch_1_checkpoint_equals_the_uninterrupted_run(folder, trained, tmp_path):
    cells, expected, expected_state = trained["skipinit"]  # dropout too: its masks must be redrawn alike
    path = tmp_path / "ckpt.pt"
    kill_in_second_epoch(lambda log: trainer.train_pack(cells, folder, DETERMINISTIC, checkpoint=path, log=log))
    assert load_checkpoint(path)["epoch"] == 1
    lines = []
    results = trainer.train_pack(cells, folder, DETERMINISTIC, checkpoint=path, log=lines.append)
    assert any("resuming from checkpoint" in line for line in lines)
    assert not any(line.startswith("epoch 1/2") for line in lines)
    state = load_checkpoint(path)
    for key in ("params", "momentum"):
        assert torch.equal(state[key], expected_state[key]), key
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "steps"):
        assert results[0][key] == expected[0][key], key


def test_a_listing_made_once_is_the_folders_listing(folder, tmp_path):
    path = tmp_path / "imagenet.listing.npz"
    cli.main(["list-imagenet", "--root", str(folder.root), "--out", str(path)])
    saved = imagenet.open_imagenet(path)
    assert (saved.root, saved.classes, saved.sha256) == (folder.root, folder.classes, folder.sha256)
    for split in imagenet.SPLITS:
        assert saved.files[split].tolist() == folder.files[split].tolist()
        assert saved.labels[split].tolist() == folder.labels[split].tolist()


def test_cli_trains_an_imagenet_cell_from_its_listing(folder, tmp_path):
    out, checkpoint, listing = tmp_path / "result.json", tmp_path / "ckpt.pt", tmp_path / "imagenet.listing.npz"
    cells = [cell(epochs=1)]
    cli.main(["list-imagenet", "--root", str(folder.root), "--out", str(listing)])
    cli.main([*train_arguments(cells, listing, tmp_path), "--image-size", str(SIZE)])
    result = json.loads(out.read_text())[0]
    assert result["status"] == "ok" and result["steps"] == 3 and result["dataset"] == "imagenet"
    assert result["dataset_sha256"] == folder.sha256
    assert not checkpoint.exists()  # a finished pack leaves its result, not its checkpoint


# ---------------------------------------------------------------------------------------------
# Layout errors
# ---------------------------------------------------------------------------------------------


def one_line_error(root, expected):
    with pytest.raises(imagenet.ImageNetLayoutError) as error:
        imagenet.ImageNetFolder(root)
    message = str(error.value)
    assert "\n" not in message and expected in message
    return message


def test_missing_or_empty_splits_are_one_clear_error(tmp_path):
    no_val = write_folder(tmp_path / "no-val", counts=(("train", 2),))
    message = one_line_error(no_val, f"{no_val / 'val'} is missing")
    assert "train/<class>/*.JPEG" in message
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    one_line_error(empty, f"{empty / 'train'} has no class folders")
    no_images = write_folder(tmp_path / "no-images", counts=(("train", 2), ("val", 0)))
    one_line_error(no_images, f"{no_images / 'val'} has class folders without images ({', '.join(CLASSES)})")


def test_mismatched_class_folders_are_one_clear_error(tmp_path):
    root = write_folder(tmp_path / "mismatch", counts=(("train", 1),))
    write_folder(root, classes=CLASSES[:2] + ("n09999999",), counts=(("val", 1),))
    message = one_line_error(root, f"train/ and val/ of {root} have different class folders")
    assert (
        "only in train/: n01484850 (1)" in message
        and "only in val/: n09999999 (1)" in message
        and "sort val/" in message
    )


CONFIG = {
    "name": "t",
    "dataset": "synthetic",
    "data_source": "synthetic",
    "data_path": None,
    "pack": 1,
    "training": {},
    "experiments": {
        "imagenet": {
            "kind": "imagenet",
            "training": {"arch": "resnet50_v2", "depth": 50},
            "grid": {"lr": [0.1, 0.2], "seed": [0, 1]},
            "models": [{"variant": "batchnorm"}],
        }
    },
    "signal": {"models": []},
}


def test_config_check_refuses_mismatched_classes_and_packs_of_several_seeds(folder, tmp_path):
    def resolve(**changes):
        path = tmp_path / "profile.yaml"
        path.write_text(yaml.safe_dump({**copy.deepcopy(CONFIG), **changes}))
        return profile.resolve([path])

    resolve(imagenet={"root": str(folder.root)})
    root = write_folder(tmp_path / "mismatch", counts=(("train", 1),))
    write_folder(root, classes=CLASSES[:2], counts=(("val", 1),))
    with pytest.raises(
        profile.ProfileError, match=r"profile.yaml: imagenet.root: train/ and val/ of .* have different class folders"
    ):
        resolve(imagenet={"root": str(root)})
    with pytest.raises(profile.ProfileError, match="pack=4 puts ImageNet cells of different seeds into one job"):
        resolve(pack=4, imagenet={"root": str(folder.root)})
    assert len(resolve(pack=2, imagenet={"root": str(folder.root)}).packs) == 2  # one seed's lrs per pack
