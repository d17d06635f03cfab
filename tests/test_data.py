import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from skipinit.data import canonical as data
from skipinit.fileio import IntegrityError

from conftest import REPO


def write_official_cifar10(root, per_batch=20):
    """A small CIFAR-10 in the official python pickle-batch format, as torchvision expects it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        pixels = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": pixels, "labels": labels, "batch_label": name}, handle)
        batches[name] = (pixels, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(data.CIFAR10_CLASSES)}, handle)
    return folder, batches


@pytest.fixture
def official_cifar10(tmp_path):
    """Files in the official format, and torchvision's reader with their checksums in place of the official ones."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import calculate_md5

    folder, batches = write_official_cifar10(tmp_path)

    class TheseFiles(CIFAR10):
        train_list = [[f"data_batch_{i}", calculate_md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
        test_list = [["test_batch", calculate_md5(folder / "test_batch")]]
        meta = {**CIFAR10.meta, "md5": calculate_md5(folder / "batches.meta")}

    return tmp_path, batches, TheseFiles


def test_official_cifar10_format_becomes_canonical(official_cifar10, tmp_path):
    root, batches, reader = official_cifar10
    dataset = data.from_official_cifar10(root, download=False, reader=reader)
    assert dataset.train_images.shape == (100, 32, 32, 3) and dataset.test_images.shape == (20, 32, 32, 3)
    assert dataset.classes == data.CIFAR10_CLASSES
    # Official rows are CHW-flattened; canonical images are HWC.
    first = batches["data_batch_1"][0][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(dataset.train_images[0], first)
    assert dataset.train_labels[:20].tolist() == batches["data_batch_1"][1]
    assert len(dataset.provenance["source_sha256"]) == 64

    path = tmp_path / "out" / "cifar10.npz"
    digest = data.save_canonical(dataset, path)
    loaded = data.load_canonical(path)
    np.testing.assert_array_equal(loaded.test_images, dataset.test_images)
    assert loaded.provenance["canonical_sha256"] == digest


def test_official_cifar10_missing_without_network_names_remedies(tmp_path):
    """A real failed download: the proxy the child process is given refuses every connection."""
    code = (
        f"from skipinit.data import canonical; canonical.from_official_cifar10({str(tmp_path / 'empty')!r}, "
        "download=True)"
    )
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "http_proxy": closed, "https_proxy": closed, "no_proxy": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0 and "DataNotFoundError" in result.stderr and "download failed" in result.stderr, (
        result.stderr[-2000:]
    )
    assert "data_source=imagefolder" in data.remedies("cifar10", "cifar10", str(tmp_path))


def write_image_folder(root, per_class=3, classes=("airplane", "bird", "cat")):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{index:04d}.png")
    return classes


def test_image_folder_tarball_in_the_cifar10_jpeg_layout(tmp_path):
    top = tmp_path / "cifar10-jpeg"
    classes = write_image_folder(top)
    archive = tmp_path / "mini.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="cifar10-jpeg")
    dataset = data.from_image_folder(archive)
    assert dataset.classes == classes
    assert dataset.train_images.shape == (9, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    expected = np.asarray(Image.open(top / "train" / "bird" / "0001.png").convert("RGB"))
    np.testing.assert_array_equal(dataset.train_images[4], expected)
    assert dataset.provenance["source"] == "imagefolder" and len(dataset.provenance["source_sha256"]) == 64
    # The unpacked folder gives the same pixels.
    np.testing.assert_array_equal(data.from_image_folder(top).train_images, dataset.train_images)


def test_canonical_digest_does_not_depend_on_how_the_path_is_spelt(tmp_path, monkeypatch):
    """The same archive named by an absolute and by a relative path: the same canonical bytes and sha256."""
    top = tmp_path / "cifar10-jpeg"
    write_image_folder(top)
    with tarfile.open(tmp_path / "mini.tar.gz", "w:gz") as tar:
        tar.add(top, arcname="cifar10-jpeg")
    absolute = data.save_canonical(data.from_image_folder(tmp_path / "mini.tar.gz"), tmp_path / "a.npz")
    monkeypatch.chdir(tmp_path / "cifar10-jpeg")
    relative = data.save_canonical(data.from_image_folder("../mini.tar.gz"), tmp_path / "b.npz")
    assert absolute == relative
    assert data.load_canonical(tmp_path / "b.npz").provenance["source_name"] == "mini.tar.gz"


def test_missing_image_folder_is_refused(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="does not exist"):
        data.from_image_folder(tmp_path / "nowhere.tar.gz")


def test_synthetic_is_seeded_and_balanced():
    first, second = data.synthetic(100, 50, seed=3), data.synthetic(100, 50, seed=3)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert np.bincount(first.train_labels).tolist() == [10] * 10
    assert not np.array_equal(first.train_images, data.synthetic(100, 50, seed=4).train_images)


def test_altered_or_truncated_canonical_file_is_refused(tmp_path):
    path = tmp_path / "synthetic.npz"
    data.save_canonical(data.synthetic(40, 20), path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(IntegrityError, match=r"synthetic\.npz is corrupt.*rebuild it with"):
        data.load_canonical(path)
    path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="corrupt"):
        data.load_canonical(path)


def test_balanced_subset_takes_classes_in_turn():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    subset = data.balanced_subset(labels, 30)
    assert np.bincount(labels[subset]).tolist() == [10, 10, 10]
    assert data.balanced_subset(labels, 0).tolist() == list(range(100))


def test_truncated_or_altered_archive_is_refused_naming_the_file(tmp_path):
    top = tmp_path / "cifar10-jpeg"
    write_image_folder(top)
    archive = tmp_path / "mini.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="cifar10-jpeg")
    content = archive.read_bytes()
    from skipinit.fileio import sha256_file

    (tmp_path / "SHA256SUMS").write_text(f"{sha256_file(archive)}  mini.tar.gz\n")
    assert data.from_image_folder(archive).train_images.shape[0] == 9  # listed and intact
    archive.write_bytes(content[: len(content) // 2])
    with pytest.raises(IntegrityError, match=r"mini\.tar\.gz does not match its sha256 in .*SHA256SUMS"):
        data.from_image_folder(archive)
    (tmp_path / "SHA256SUMS").unlink()  # no checksum list: the archive itself is found truncated
    with pytest.raises(IntegrityError, match=r"mini\.tar\.gz is truncated or corrupt"):
        data.from_image_folder(archive)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("damage", ["truncated", "not an image", "wrong size"])
def test_unreadable_image_is_one_line_naming_it_and_nothing_is_written(tmp_path, packed, damage):
    import subprocess
    import sys

    root = tmp_path / "cifar10-jpeg"
    write_image_folder(root)
    bad = root / "test" / "bird" / "0001.png"
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    elif damage == "not an image":
        bad.write_text("hello")
    else:
        Image.new("RGB", (16, 16)).save(bad)
    source = root
    if packed:
        source = tmp_path / "cifar10-jpeg.tar.gz"
        with tarfile.open(source, "w:gz") as archive:
            archive.add(root, arcname="cifar10-jpeg")
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "skipinit",
            "prepare-data",
            "--source",
            "imagefolder",
            "--path",
            str(source),
            "--name",
            "cifar10-jpeg",
            "--out",
            str(out),
            "--no-download",
            "--synthetic-train-size",
            "512",
            "--synthetic-test-size",
            "256",
            "--synthetic-seed",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    shown = f"{source}:cifar10-jpeg/test/bird/0001.png" if packed else str(bad)
    assert message.startswith(f"error: {shown} is "), message
    assert message.endswith("remove or replace it, then rerun the same command")
    assert not list(tmp_path.glob("out.npz*")), "a half-written dataset file"
