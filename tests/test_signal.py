import numpy as np
import pandas as pd
import pytest
import torch

from skipinit.models import linear_resnet
from skipinit.signal.measure import COLUMNS, MODELS, channel_variance, measure, study
from skipinit.signal.plot import plot


def mean_over_seeds(model_name, depth, seeds, **kw):
    frame = pd.concat([measure(model_name, depth, seed, **kw) for seed in seeds])
    return frame.groupby("block")[["skip_var", "branch_var", "bn_moving_var"]].mean()


def test_unnormalized_linear_skip_variance_doubles_every_block():
    curves = mean_over_seeds("linear-unnormalized", 12, seeds=range(3), width=512, batch_size=256)
    ratio = curves["skip_var"] / 2.0 ** (curves.index - 1)
    assert ratio.between(0.9, 1.1).all(), ratio


def test_batchnorm_linear_skip_variance_grows_linearly_and_branch_variance_is_one():
    curves = mean_over_seeds("linear-batchnorm", 50, seeds=[0], width=512, batch_size=256)
    blocks = curves.index.to_numpy()
    assert (curves["skip_var"] / blocks)[blocks >= 2].between(0.9, 1.1).all()
    assert curves["branch_var"].between(0.9, 1.1).all()
    # the moving variance is the unbiased batch variance of the branch input, i.e. of the skip path
    np.testing.assert_allclose(curves["bn_moving_var"], curves["skip_var"] * 256 / 255, rtol=1e-4)


def test_batchnorm_conv_skip_variance_grows_linearly():
    images = torch.randn(16, 3, 16, 16)  # small images keep the test fast; the theory needs no real ones
    curves = mean_over_seeds("conv-batchnorm", 40, seeds=[0], inputs=images, width=16)
    blocks, skip = curves.index.to_numpy(), curves["skip_var"].to_numpy()
    slope, intercept = np.polyfit(blocks, skip, 1)
    residual = skip - (slope * blocks + intercept)
    r_squared = 1 - (residual**2).sum() / ((skip - skip.mean()) ** 2).sum()
    assert slope > 0 and r_squared > 0.95
    assert curves["branch_var"].between(0.3, 3).all()


def test_contrast_conv_nets():
    skipinit = measure("conv-skipinit", 8, 0, batch_size=8)
    assert np.allclose(skipinit["skip_var"], 1.0) and (skipinit["branch_var"] == 0).all()
    unnormalized = measure("conv-unnormalized", 8, 0, batch_size=8)
    assert unnormalized["skip_var"].is_monotonic_increasing
    assert unnormalized["skip_var"].iloc[-1] > 10


def test_frame_schema():
    frame = measure("linear-unnormalized", 5, 7, width=32, batch_size=64)
    assert list(frame.columns) == COLUMNS
    assert frame["block"].tolist() == [1, 2, 3, 4, 5]
    assert (frame["model"] == "linear-unnormalized").all() and (frame["depth"] == 5).all()
    assert (frame["seed"] == 7).all() and frame["bn_moving_var"].isna().all()
    assert frame["skip_var"].iloc[0] == pytest.approx(1.0)
    assert frame[["skip_var", "branch_var"]].notna().all().all()
    assert measure("conv-batchnorm", 3, 0, batch_size=4, width=8)["bn_moving_var"].notna().all()
    with pytest.raises(ValueError, match="model_name"):
        measure("conv-layernorm", 3, 0)


def test_measure_is_reproducible_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = measure("conv-batchnorm", 3, 5, batch_size=4, width=8)
    assert torch.equal(torch.get_rng_state(), state)
    pd.testing.assert_frame_equal(first, measure("conv-batchnorm", 3, 5, batch_size=4, width=8))


def test_block_by_block_linear_measurement_matches_the_built_network():
    frame = measure("linear-unnormalized", 4, 3, width=64, batch_size=128)
    torch.manual_seed(3)
    x = torch.randn(128, 64)
    network = linear_resnet(width=64, blocks=4, variant="unnormalized")
    x = x / channel_variance(x) ** 0.5
    expected = []
    with torch.no_grad():
        for block in network:
            expected.append(channel_variance(x))
            x = block(x)
    np.testing.assert_allclose(frame["skip_var"], expected, rtol=1e-4)


def test_conv_nets_take_given_images():
    images = torch.randn(6, 3, 32, 32)
    frame = measure("conv-unnormalized", 3, 0, images, width=8)
    assert len(frame) == 3
    with pytest.raises(ValueError, match="inputs"):
        measure("linear-batchnorm", 3, 0, images)


def test_study_and_plot(tmp_path):
    frame = study(MODELS, {m: [4] if m.startswith("linear") else [3] for m in MODELS}, [0, 1], batch_size=8)
    assert list(frame.columns) == COLUMNS
    assert set(frame["model"]) == set(MODELS) and set(frame["seed"]) == {0, 1}
    assert len(frame) == 2 * (2 * 4 + 3 * 3)
    png, pdf = tmp_path / "figures" / "signal.png", tmp_path / "figures" / "signal.pdf"
    plot(frame, "signal-test", png, pdf)
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in png.parent.iterdir()) == ["signal.pdf", "signal.png"]
