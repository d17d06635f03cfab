"""The training engine: packing, divergence, resume, faults, schedules and augmentation.

Everything runs on the CPU in float32 with WRN-10-1 on a few hundred synthetic images.

Packed and solo runs round differently (grouped convolutions reorder float32 sums), and a
ReLU whose input sits within rounding of zero can flip, changing that step's gradient by ~1e-3
relative; momentum SGD then amplifies it. Checked against a solo run perturbed by 1e-8: the same
growth. So the comparisons use small learning rates (0.01-0.02) and batch 32, where 20 steps keep
the gap at 3e-6..1.2e-5 (both packings, both members), inside 1e-4, while a real packing bug (a
mixed-up batch, lr, or BN buffer) moves parameters by 1e-2 or more.
"""

import dataclasses
import math

import pytest
import torch

from skipinit import data
from skipinit.data import batches, ondevice
from skipinit.data.batches import Serving
from skipinit.engine import members, schedule, sgd, trainer
from skipinit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skipinit.engine.options import EngineOptions
from skipinit.grid import make_cell

from conftest import kill_in_second_epoch

TRAIN, TEST, BATCH = 320, 200, 32  # 10 steps per epoch
DETERMINISTIC = EngineOptions(device="cpu", precision="fp32", deterministic=True, threads=1)


@pytest.fixture(scope="module")
def dataset():
    return data.synthetic(train_size=TRAIN, test_size=TEST, num_classes=10, seed=0)


def cell(**overrides):
    settings = {
        "dataset": "synthetic",
        "depth": 10,
        "width": 1,
        "batch_size": BATCH,
        "epochs": 2,
        "lr": 0.02,
        "seed": 0,
        "weight_decay": 5e-4,
        "schedule": "halving",
    }
    return make_cell({**settings, **overrides})


def run(cells, dataset, path=None, options=DETERMINISTIC, lines=None):
    log = lines.append if lines is not None else lambda line: None
    return trainer.train_pack(cells, dataset, options, checkpoint=path, log=log)


def member_params(checkpoint, member: int) -> dict[str, torch.Tensor]:
    """Each parameter of one member, read back from the engine's checkpoint."""
    state = load_checkpoint(checkpoint)
    flat = state["params"][member]
    return {name: flat[offset : offset + math.prod(shape)].view(shape) for name, shape, offset in state["layout"]}


def assert_params_close(packed: dict, solo: dict, tolerance=1e-4):
    """Relative distance of the whole parameter vectors, and every tensor against the vector's scale."""
    assert packed.keys() == solo.keys()
    a, b = torch.cat([packed[n].reshape(-1) for n in solo]), torch.cat([solo[n].reshape(-1) for n in solo])
    assert (a - b).norm().item() <= tolerance * b.norm().item()
    rms = b.norm().item() / b.numel() ** 0.5
    for name in solo:
        assert (packed[name] - solo[name]).abs().max().item() <= 10 * tolerance * max(
            rms, solo[name].abs().max().item()
        ), name


# ---------------------------------------------------------------------------------------------
# Packed == separate
# ---------------------------------------------------------------------------------------------


def packed_run(mode, cells, dataset, path, lines=None):
    """Train `cells` as one pack, packed by channel stacking (the default) or by torch.vmap."""
    return run(cells, dataset, path, options=dataclasses.replace(DETERMINISTIC, packing=mode), lines=lines)


@pytest.fixture(scope="module")
def packed_and_solo(dataset, tmp_path_factory):
    """A pack of two cells (different lr and seed: each member its own batch) and each cell alone."""
    folder = tmp_path_factory.mktemp("pack")
    cells = [cell(lr=0.02, seed=0), cell(lr=0.01, seed=1)]
    packed = {mode: packed_run(mode, cells, dataset, folder / f"{mode}.pt") for mode in ("channels", "vmap")}
    solos = [run([c], dataset, folder / f"solo{i}.pt")[0] for i, c in enumerate(cells)]
    return folder, cells, packed, solos


@pytest.mark.parametrize("mode", ["channels", "vmap"])
def test_packed_members_follow_their_solo_parameters_for_20_steps(packed_and_solo, mode):
    folder, cells, packed, solos = packed_and_solo
    assert [r["steps"] for r in packed[mode]] == [20, 20] and solos[0]["steps"] == 20
    for i in range(len(cells)):
        assert_params_close(member_params(folder / f"{mode}.pt", i), member_params(folder / f"solo{i}.pt", 0))


@pytest.mark.parametrize("mode", ["channels", "vmap"])
def test_packed_members_match_solo_metrics_after_2_epochs(packed_and_solo, mode):
    _, cells, packed, solos = packed_and_solo
    for result, solo, c in zip(packed[mode], solos, cells):
        assert {k: result[k] for k in c} == c  # the cell's own keys come back
        assert result["status"] == "ok" and result["pack_size"] == 2 and solo["pack_size"] == 1
        assert result["epochs_completed"] == 2 and len(result["curve"]) == 2
        assert abs(result["train_loss"] - solo["train_loss"]) <= 0.01 * solo["train_loss"]
        assert abs(result["test_loss"] - solo["test_loss"]) <= 0.01 * solo["test_loss"]
        assert abs(result["test_acc"] - solo["test_acc"]) <= 0.5
        assert abs(result["train_acc"] - solo["train_acc"]) <= 0.5
    assert solos[0]["train_loss"] < math.log(10)  # it learned something
    assert packed[mode][0]["curve"][-1]["test_acc"] == packed[mode][0]["test_acc"]


@pytest.mark.parametrize("mode", ["channels", "vmap"])
@pytest.mark.parametrize(
    "overrides",
    [
        {"variant": "skipinit", "alpha_init": "0"},
        {"variant": "fixup"},
        {"variant": "batchnorm", "ghost_batch_size": 4},
    ],
    ids=["skipinit", "fixup", "ghost-bn"],
)
def test_every_variant_packs_like_solo(tmp_path, overrides, mode):
    """Scalar parameters (alpha, Fixup gains and biases) and ghost batch norm, packed, for 3 steps."""
    small = data.synthetic(train_size=48, test_size=20, seed=1)
    cells = [
        cell(lr=0.02, seed=0, epochs=1, batch_size=16, **overrides),
        cell(lr=0.01, seed=1, epochs=1, batch_size=16, **overrides),
    ]
    lines = []
    packed_run(mode, cells, small, tmp_path / "pack.pt", lines=lines)
    assert not any("packing unavailable" in line for line in lines)
    for i, c in enumerate(cells):
        run([c], small, tmp_path / f"solo{i}.pt")
        assert_params_close(member_params(tmp_path / "pack.pt", i), member_params(tmp_path / f"solo{i}.pt", 0))


def test_a_fixup_cell_trains_like_torch_optim_with_the_fixup_authors_param_groups(dataset, tmp_path):
    """The engine against a textbook loop: torch.optim.SGD, every bias and scale in a group at lr / 10.

    Same initialization, batches and schedule; only the update rule is written independently.
    """
    fixup = cell(variant="fixup", epochs=1, lr=0.05)  # 10 steps
    run([fixup], dataset, tmp_path / "engine.pt")
    torch.manual_seed(fixup["seed"])
    model = members.build_model(fixup, dataset.num_classes)
    named = dict(model.named_parameters())
    slow = [p for n, p in named.items() if n.endswith(("bias", "gain"))]  # Fixup's code: names with "bias" or "scale"
    fast = [p for n, p in named.items() if not n.endswith(("bias", "gain"))]
    optimizer = torch.optim.SGD(
        [{"params": fast, "lr": 0.05}, {"params": slow, "lr": 0.005}], momentum=0.9, weight_decay=5e-4
    )
    batches = ondevice.OnDeviceData(dataset, [fixup], Serving(), torch.device("cpu")).train_batches(0)
    for step, (x, y) in enumerate(batches):
        for group, base in zip(optimizer.param_groups, (0.05, 0.005)):
            group["lr"] = base * schedule.lr_factor("halving", step, 10)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert_params_close(
        member_params(tmp_path / "engine.pt", 0), {n: p.detach() for n, p in named.items()}, tolerance=1e-5
    )


def test_channel_packing_refuses_a_model_it_would_get_wrong():
    """A container that mixes channels fails the construction-time check; vmap takes over."""

    class ChannelMixer(torch.nn.Module):
        def forward(self, x):
            return x + x.mean(dim=1, keepdim=True)  # couples every member's channels when stacked

    def build_with_mixer(cell, num_classes):
        model = members.build_model(cell, num_classes)
        model.stem = torch.nn.Sequential(model.stem, ChannelMixer())
        return model

    lines = []
    packed = members.Members(
        [cell(seed=0), cell(seed=1)], 10, torch.device("cpu"), DETERMINISTIC, log=lines.append, build=build_with_mixer
    )
    assert packed.mode == "vmap" and any("packing unavailable" in line for line in lines)
    assert members.Members([cell(seed=0), cell(seed=1)], 10, torch.device("cpu"), DETERMINISTIC).mode == "channels"


# ---------------------------------------------------------------------------------------------
# Micro-batches: a batch too large for the device, in pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, tolerance",
    [
        # No batch norm: the same gradient summed in another order (measured gap 2e-8 after 20 steps).
        ({"variant": "skipinit", "alpha_init": "0.1"}, 1e-6),
        # Ghost BN of the micro-batch size: the same normalization, by plain BN's kernel instead of the
        # ghost path's; float32 rounding grows through the BN net (measured 4e-6 after 10 steps, 3e-5 after 20).
        ({"variant": "batchnorm", "ghost_batch_size": 8}, 1e-4),
    ],
    ids=["skipinit", "ghost-bn"],
)
def test_micro_batches_train_like_the_whole_batch(dataset, tmp_path, overrides, tolerance):
    cells = [cell(lr=0.05, seed=0, **overrides), cell(lr=0.02, seed=0, **overrides)]
    whole = run(cells, dataset, tmp_path / "whole.pt")
    pieces = run(
        cells, dataset, tmp_path / "pieces.pt", options=dataclasses.replace(DETERMINISTIC, micro_batch=BATCH // 4)
    )
    assert [r["micro_batch"] for r in whole] == [BATCH] * 2 and [r["micro_batch"] for r in pieces] == [BATCH // 4] * 2
    for member in range(2):
        assert_params_close(
            member_params(tmp_path / "pieces.pt", member),
            member_params(tmp_path / "whole.pt", member),
            tolerance=tolerance,
        )
        assert pieces[member]["train_loss"] == pytest.approx(whole[member]["train_loss"], rel=1e-5)


def test_micro_batch_that_does_not_divide_the_batch_is_refused(dataset):
    with pytest.raises(ValueError, match="micro_batch=12 does not divide batch_size=32"):
        run([cell()], dataset, options=dataclasses.replace(DETERMINISTIC, micro_batch=12))


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------


def test_diverged_member_is_recorded_at_its_step_while_its_pack_mate_goes_on(dataset, tmp_path):
    healthy = cell(variant="unnormalized", lr=0.02, seed=0)
    exploding = cell(variant="unnormalized", lr=1e4, seed=0)  # same seed: one shared batch, in_dims=None
    lines = []
    packed = run([exploding, healthy], dataset, tmp_path / "pack.pt", lines=lines)
    solo_bad = run([exploding], dataset)[0]
    solo_good = run([healthy], dataset, tmp_path / "solo.pt")[0]

    assert solo_bad["diverged"] and solo_bad["status"] == "diverged"
    assert isinstance(solo_bad["diverged_step"], int) and solo_bad["diverged_step"] >= 1
    assert packed[0]["diverged"] and packed[0]["status"] == "diverged"
    assert packed[0]["diverged_step"] == solo_bad["diverged_step"]
    assert any("DIVERGED at step" in line for line in lines)

    assert not packed[1]["diverged"] and packed[1]["status"] == "ok" and packed[1]["diverged_step"] is None
    assert packed[1]["epochs_completed"] == 2 and packed[1]["steps"] == 20
    assert abs(packed[1]["train_loss"] - solo_good["train_loss"]) <= 1e-3 * solo_good["train_loss"]
    assert abs(packed[1]["test_acc"] - solo_good["test_acc"]) <= 0.5
    assert_params_close(member_params(tmp_path / "pack.pt", 1), member_params(tmp_path / "solo.pt", 0))
    frozen = load_checkpoint(tmp_path / "pack.pt")
    assert frozen["alive"].tolist() == [False, True]


def test_a_pack_that_diverges_entirely_stops_early(dataset):
    results = run([cell(variant="unnormalized", lr=1e4, epochs=3)], dataset)
    assert results[0]["status"] == "diverged" and results[0]["epochs_completed"] == 1
    assert results[0]["steps"] == trainer.DIVERGENCE_POLL_STEPS  # stopped at the first look, mid-epoch
    assert results[0]["curve"][-1]["test_acc"] is not None  # still evaluated once, at the stop


# ---------------------------------------------------------------------------------------------
# Resume, corruption, determinism
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return data.synthetic(train_size=160, test_size=100, num_classes=10, seed=2)  # 5 steps per epoch


@pytest.fixture(scope="module")
def uninterrupted(small, tmp_path_factory):
    """A pack (stacked parameters, buffers and batches) trained 3 epochs without a break."""
    path = tmp_path_factory.mktemp("full") / "ckpt.pt"
    cells = [cell(epochs=3, lr=0.1, seed=0, dropout=0.2), cell(epochs=3, lr=0.05, seed=1, dropout=0.2)]
    return cells, run(cells, small, path), load_checkpoint(path)


def interrupted_checkpoint(cells, dataset, path):
    """Run until the first checkpoint is on disk, then 'kill' the process."""
    kill_in_second_epoch(lambda log: trainer.train_pack(cells, dataset, DETERMINISTIC, checkpoint=path, log=log))
    assert load_checkpoint(path)["epoch"] == 1


def assert_identical(results, expected, state, expected_state):
    for got, want in zip(results, expected):
        for key in ("test_acc", "test_loss", "train_loss", "train_acc", "steps", "epochs_completed", "diverged_step"):
            assert got[key] == want[key], key
        assert [{k: v for k, v in p.items() if k != "seconds"} for p in got["curve"]] == [
            {k: v for k, v in p.items() if k != "seconds"} for p in want["curve"]
        ]
    assert torch.equal(state["params"], expected_state["params"])
    assert torch.equal(state["momentum"], expected_state["momentum"])
    for name, value in expected_state["buffers"].items():
        assert torch.equal(state["buffers"][name], value), name


def test_resume_after_a_kill_is_bit_identical_to_an_uninterrupted_run(small, uninterrupted, tmp_path):
    cells, expected, expected_state = uninterrupted
    path = tmp_path / "ckpt.pt"
    interrupted_checkpoint(cells, small, path)
    lines = []
    results = run(cells, small, path, lines=lines)
    assert any("resuming from checkpoint" in line and "epoch 1/3" in line for line in lines)
    assert not any(line.startswith("epoch 1/3") for line in lines)  # epoch 1 was not trained again
    assert_identical(results, expected, load_checkpoint(path), expected_state)


def test_corrupt_checkpoint_is_reported_and_training_restarts_from_scratch(small, uninterrupted, tmp_path):
    cells, expected, expected_state = uninterrupted
    path = tmp_path / "ckpt.pt"
    interrupted_checkpoint(cells, small, path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    lines = []
    results = run(cells, small, path, lines=lines)
    assert any("corrupt" in line and "starting from scratch" in line for line in lines)
    assert any(line.startswith("epoch 1/3") for line in lines)
    assert_identical(results, expected, load_checkpoint(path), expected_state)


def test_checkpoint_of_another_pack_is_not_resumed(small, tmp_path):
    path = tmp_path / "ckpt.pt"
    run([cell(epochs=1, lr=0.3)], small, path)
    lines = []
    results = run([cell(epochs=1, lr=0.1)], small, path, lines=lines)
    assert any("belongs to another run" in line for line in lines)
    assert results[0]["epochs_completed"] == 1 and results[0]["status"] == "ok"


def test_truncated_or_foreign_checkpoints_raise_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 1, "x": torch.arange(3)})
    assert load_checkpoint(path)["epoch"] == 1
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_deterministic_cpu_runs_repeat_bit_for_bit(small):
    c = cell(epochs=1, seed=3, lr=0.1, dropout=0.3)
    first, second = run([c], small)[0], run([c], small)[0]
    for key in ("test_acc", "test_loss", "train_loss", "train_acc"):
        assert first[key] == second[key]
    assert first["precision"] == "fp32" and first["device"] == "cpu" and first["torch_version"] == torch.__version__


# ---------------------------------------------------------------------------------------------
# Faults, results, progress
# ---------------------------------------------------------------------------------------------


def test_out_of_memory_marks_every_member_failed_with_a_hint(dataset):
    """A real allocation failure: width 4000 asks the CPU allocator for ~150 GB for one convolution's weights."""
    lines = []
    cells = [cell(lr=0.1, width=4000), cell(lr=0.2, width=4000)]
    results = run(cells, dataset, lines=lines)
    assert [r["status"] for r in results] == ["failed", "failed"]
    for result, c in zip(results, cells):
        assert result["lr"] == c["lr"] and result["diverged"] is False and result["test_acc"] is None
        assert (
            "can't allocate memory" in result["error"]
            and "pack:" in result["error"]
            and "micro_batch" in result["error"]
        )
    assert any("failed" in line for line in lines)


def test_eval_every_leaves_gaps_but_always_evaluates_the_last_epoch(small):
    options = EngineOptions(device="cpu", eval_every=2, threads=1)
    result = run([cell(epochs=3)], small, options=options)[0]
    assert [p["test_acc"] is None for p in result["curve"]] == [True, False, False]
    assert [p["epoch"] for p in result["curve"]] == [1, 2, 3] and [p["step"] for p in result["curve"]] == [5, 10, 15]
    assert result["test_acc"] == result["curve"][-1]["test_acc"] and result["images_per_second"] > 0


def test_the_final_evaluation_reads_the_whole_test_set_and_keeps_each_images_correctness(small):
    """The curve reads the class-balanced test subset; the result (the paper's quantity) the whole test set, with the
    per-image hits whose mean is its accuracy; a diverged member scores 0 on every image."""
    from skipinit.record import unpack_hits

    options = EngineOptions(device="cpu", eval_every=1, threads=1)
    live, dead = run(
        [cell(epochs=2, test_subset=50, lr=0.05), cell(epochs=2, test_subset=50, lr=1e6)], small, options=options
    )
    hits = unpack_hits(live["test_correct"], live["test_images"])
    assert live["test_images"] == 100 and len(hits) == 100
    assert live["test_acc"] == pytest.approx(100.0 * hits.mean())
    assert all(point["test_acc"] * 50 / 100 == pytest.approx(round(point["test_acc"] / 2)) for point in live["curve"])
    assert dead["diverged"] and not unpack_hits(dead["test_correct"], 100).any()
    # a pack whose every member diverged skips the final pass: no accuracy, every image wrong
    (alone,) = run([cell(epochs=2, test_subset=50, lr=1e6)], small, options=options)
    assert alone["diverged"] and alone["test_acc"] is None and not unpack_hits(alone["test_correct"], 100).any()


def test_one_progress_line_per_epoch_per_cell(small):
    lines = []
    run([cell(epochs=1, lr=0.1, seed=0), cell(epochs=1, lr=0.05, seed=1)], small, lines=lines)
    epoch_lines = [line for line in lines if line.startswith("epoch 1/1")]
    assert len(epoch_lines) == 2
    assert "lr=0.05 seed=1" in epoch_lines[1] and "img/s" in epoch_lines[1] and "ETA" in epoch_lines[1]


def test_cells_of_a_pack_must_differ_only_in_lr_and_seed(dataset):
    with pytest.raises(ValueError, match="batch_size"):
        run([cell(batch_size=16), cell(batch_size=32)], dataset)


# ---------------------------------------------------------------------------------------------
# Schedules, SGD, augmentation
# ---------------------------------------------------------------------------------------------


def test_halving_schedule_is_constant_for_half_the_budget_then_halves_every_twentieth():
    total = 200
    factors = [schedule.lr_factor("halving", step, total) for step in range(total)]
    assert factors[0] == factors[99] == 1.0
    assert factors[100] == factors[109] == 0.5
    assert factors[110] == 0.25
    assert factors[190] == factors[199] == 0.5**10


def test_step_and_cosine_schedules():
    total = 100
    assert [schedule.lr_factor("step", s, total) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    assert schedule.lr_factor("cosine", 0, total) == 1.0
    assert schedule.lr_factor("cosine", 50, total) == pytest.approx(0.5)
    assert schedule.lr_factor("cosine", 99, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    table = schedule.lr_table("step", [0.1, 0.4], total, torch.device("cpu"))
    assert table.shape == (total, 2) and table[60].tolist() == pytest.approx([0.01, 0.04])
    with pytest.raises(ValueError):
        schedule.lr_factor("linear", 0, total)


def test_sgd_step_matches_torch_optim_and_freezes_inactive_members():
    torch.manual_seed(0)
    params, grads = torch.randn(2, 5), torch.randn(2, 5)
    for nesterov in (False, True):
        reference = params.clone().requires_grad_()
        optimizer = torch.optim.SGD([reference], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
        flat, buffer = params.clone(), torch.zeros(2, 5)
        for _ in range(3):
            reference.grad = grads.clone()
            optimizer.step()
            sgd.sgd_step(
                flat, grads.clone(), buffer, torch.tensor([0.1, 0.1]), torch.tensor([True, True]), 0.01, 0.9, nesterov
            )
        assert torch.allclose(flat, reference.detach(), atol=1e-6)
    scale = torch.tensor([1.0, 0.1, 1.0, 0.1, 1.0])  # columns 1 and 3 train like a param group at lr / 10
    columns = [params[:, j].clone().requires_grad_() for j in range(5)]
    optimizer = torch.optim.SGD(
        [{"params": [c], "lr": 0.1 * float(scale[j])} for j, c in enumerate(columns)], momentum=0.9, weight_decay=0.01
    )
    flat, buffer = params.clone(), torch.zeros(2, 5)
    for _ in range(3):
        for j, column in enumerate(columns):
            column.grad = grads[:, j].clone()
        optimizer.step()
        sgd.sgd_step(
            flat, grads.clone(), buffer, torch.tensor([0.1, 0.1]), torch.tensor([True, True]), 0.01, 0.9, False, scale
        )
    assert torch.allclose(flat, torch.stack([c.detach() for c in columns], dim=1), atol=1e-6)
    frozen, buffer = params.clone(), torch.zeros(2, 5)
    bad = grads.clone()
    bad[0] = float("nan")
    sgd.sgd_step(frozen, bad, buffer, torch.tensor([0.1, 0.2]), torch.tensor([False, True]), 0.0, 0.9, False)
    assert torch.equal(frozen[0], params[0]) and torch.equal(buffer[0], torch.zeros(5))
    assert torch.allclose(frozen[1], params[1] - 0.2 * grads[1])


def test_augment_crops_and_flips_exactly():
    images = torch.arange(2 * 4 * 4 * 1, dtype=torch.uint8).view(2, 4, 4, 1)
    padded = torch.zeros(2, 8, 8, 1, dtype=torch.uint8)
    padded[:, 2:6, 2:6] = images  # a 2-pixel border for a 4 x 4 "image"
    index, dy, dx = torch.tensor([1, 0]), torch.tensor([2, 0]), torch.tensor([2, 3])
    plain = ondevice.augment(padded, index, dy, dx, torch.tensor([False, False]), size=4)
    assert plain.shape == (2, 4, 4, 1) and plain.dtype == torch.uint8
    assert torch.equal(plain[0], images[1])  # offset (2, 2) is the uncropped image
    assert torch.equal(plain[1], padded[0, 0:4, 3:7])  # shifted: zero rows on top
    assert torch.equal(plain[1, :2], torch.zeros(2, 4, 1, dtype=torch.uint8))
    flipped = ondevice.augment(padded, index, dy, dx, torch.tensor([True, False]), size=4)
    assert torch.equal(flipped[0], images[1].flip(1)) and torch.equal(flipped[1], plain[1])
    stacked = ondevice.augment(
        padded, index.expand(3, 2), dy.expand(3, 2), dx.expand(3, 2), torch.zeros(3, 2, dtype=torch.bool), size=4
    )
    assert stacked.shape == (3, 2, 4, 4, 1) and torch.equal(stacked[2], plain)


def test_epoch_plan_is_seeded_by_seed_and_epoch(dataset):
    device = torch.device("cpu")
    a, b = ondevice.epoch_plan(50, 0, 1, device), ondevice.epoch_plan(50, 0, 1, device)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["index"], ondevice.epoch_plan(50, 0, 2, device)["index"])
    assert not torch.equal(a["index"], ondevice.epoch_plan(50, 1, 1, device)["index"])
    assert sorted(a["index"].tolist()) == list(range(50))
    assert 0 <= int(a["dy"].min()) and int(a["dx"].max()) <= 2 * ondevice.PAD


def test_normalize_layouts_and_values():
    scale = 1 / (255 * torch.tensor(ondevice.CIFAR_STD))
    shift = -torch.tensor(ondevice.CIFAR_MEAN) / torch.tensor(ondevice.CIFAR_STD)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    x = batches.normalize(images, scale, shift, channels_last=True)
    assert x.shape == (4, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    expected = (
        images.permute(0, 3, 1, 2).float() / 255 - torch.tensor(ondevice.CIFAR_MEAN)[:, None, None]
    ) / torch.tensor(ondevice.CIFAR_STD)[:, None, None]
    assert torch.allclose(x, expected, atol=1e-5)
    assert batches.normalize(images, scale, shift, channels_last=False).is_contiguous()
    stacked = batches.normalize(images.view(2, 2, 32, 32, 3), scale, shift, channels_last=True)  # 2 members x 2 images
    assert stacked.shape == (2, 6, 32, 32) and stacked.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(stacked[1, 3:], expected[3], atol=1e-5) and torch.allclose(
        stacked[0, :3], expected[0], atol=1e-5
    )


def test_train_subset_is_balanced_and_smaller(small):
    result = run([cell(epochs=1, train_subset=80)], small)[0]
    assert result["steps"] == 80 // BATCH and result["status"] == "ok"
