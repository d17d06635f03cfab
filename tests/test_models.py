import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skipinit.models import (
    GhostBatchNorm2d,
    MemberDropout,
    ResidualBlock,
    ScalarGain,
    linear_resnet,
    lr_multipliers,
    resnet50_v2,
    single_stage_resnet,
    wide_resnet,
)
from skipinit.vocab import VARIANTS, alpha_value, wrn_residual_blocks


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


# Table 4/5 and Figure 1 of Zagoruyko & Komodakis (2016), in millions.
@pytest.mark.parametrize(
    "depth, width, millions",
    [(40, 1, 0.6), (40, 2, 2.2), (40, 4, 8.9), (16, 8, 11.0), (22, 8, 17.2), (28, 10, 36.5), (16, 10, 17.1)],
)
def test_batchnorm_wide_resnet_matches_published_parameter_count(depth, width, millions):
    model = wide_resnet(depth, width, "batchnorm")
    assert round(num_parameters(model) / 1e6, 1) == millions


@pytest.mark.parametrize("depth", [10, 100])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_forward_and_backward(variant, depth):
    torch.manual_seed(0)
    model = wide_resnet(depth, 1, variant, num_classes=10)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, torch.tensor([1, 7])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert len(residual_blocks(model)) == wrn_residual_blocks(depth)


def test_construction_is_deterministic_given_the_seed():
    torch.manual_seed(3)
    first = wide_resnet(16, 1, "skipinit")
    torch.manual_seed(3)
    second = wide_resnet(16, 1, "skipinit")
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_skipinit_with_zero_alpha_is_the_identity_on_the_residual_path():
    torch.manual_seed(0)
    model = wide_resnet(16, 2, "skipinit", alpha_init=0.0)
    checked = []

    def check(block, inputs, output):
        (x,) = inputs
        skip = x if block.shortcut is None else block.shortcut(block.preact(x))
        checked.append(torch.equal(output, skip))

    for block in residual_blocks(model):
        block.register_forward_hook(check)
    model(torch.randn(3, 3, 32, 32))
    assert checked == [True] * 6


def test_skipinit_alpha_one_over_sqrt_depth():
    assert alpha_value("1/sqrt(d)", 12) == pytest.approx(1 / math.sqrt(12))
    assert alpha_value(0.25, 12) == 0.25
    with pytest.raises(ValueError):
        alpha_value("1/d", 12)
    model = wide_resnet(28, 1, "skipinit", alpha_init="1/sqrt(d)")
    gains = [m.gain.item() for m in model.modules() if isinstance(m, ScalarGain)]
    assert len(gains) == 12
    assert gains == pytest.approx([1 / math.sqrt(12)] * 12)
    assert all(m.gain.shape == () for m in model.modules() if isinstance(m, ScalarGain))


@pytest.mark.parametrize("depth", [15, 4, 0])
def test_depth_must_be_6n_plus_4(depth):
    with pytest.raises(ValueError, match=rf"6N\+4.*depth={depth}$"):
        wide_resnet(depth, 1, "batchnorm")
    with pytest.raises(ValueError, match=f"depth={depth}"):
        wrn_residual_blocks(depth)


def test_unknown_variant_and_ghost_batch_without_batchnorm_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        wide_resnet(10, 1, "layernorm")
    with pytest.raises(ValueError, match="ghost_batch_size"):
        wide_resnet(10, 1, "skipinit", ghost_batch_size=8)


def chunkwise_batch_norm(x, chunk, bn):
    return torch.cat(
        [F.batch_norm(part, None, None, bn.weight, bn.bias, training=True, eps=bn.eps) for part in x.split(chunk)]
    )


@pytest.mark.parametrize("batch, ghost, chunk", [(16, 4, 4), (24, 8, 8)])
def test_ghost_batch_norm_normalizes_each_chunk_separately(batch, ghost, chunk):
    torch.manual_seed(0)
    bn = GhostBatchNorm2d(5, ghost)
    nn.init.uniform_(bn.weight)
    nn.init.uniform_(bn.bias)
    x = torch.randn(batch, 5, 4, 4) * 3 + 1
    torch.testing.assert_close(bn(x), chunkwise_batch_norm(x, chunk, bn))

    parts = x.split(chunk)
    mean = torch.stack([p.mean((0, 2, 3)) for p in parts]).mean(0)
    var = torch.stack([p.var((0, 2, 3), unbiased=True) for p in parts]).mean(0)
    torch.testing.assert_close(bn.running_mean, 0.9 * torch.zeros(5) + 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 * torch.ones(5) + 0.1 * var)
    assert bn.num_batches_tracked.item() == 1


def test_ghost_batch_norm_refuses_a_batch_it_does_not_divide():
    with pytest.raises(ValueError, match="ghost_batch_size=8 does not divide the batch of 12"):
        GhostBatchNorm2d(5, 8)(torch.randn(12, 5, 4, 4))


def test_ghost_batch_norm_is_plain_batch_norm_for_small_batches_and_in_eval():
    torch.manual_seed(0)
    ghost, plain = GhostBatchNorm2d(3, 8), nn.BatchNorm2d(3)
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(ghost(x), plain(x))
    torch.testing.assert_close(ghost.running_var, plain.running_var)
    ghost.eval(), plain.eval()
    x = torch.randn(32, 3, 4, 4)
    torch.testing.assert_close(ghost(x), plain(x))


def test_ghost_batch_norm_in_a_wide_resnet():
    model = wide_resnet(10, 1, "batchnorm", ghost_batch_size=2)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, GhostBatchNorm2d) for m in norms)
    model(torch.randn(6, 3, 32, 32)).sum().backward()


def test_fixup_initialization():
    torch.manual_seed(0)
    model = wide_resnet(16, 4, "fixup")
    d = wrn_residual_blocks(16)
    for block in residual_blocks(model):
        first, last = [m for m in block.branch.modules() if isinstance(m, nn.Conv2d)]
        assert not last.weight.any()
        he_std = math.sqrt(2 / first.weight[0].numel())
        assert first.weight.std().item() == pytest.approx(he_std / math.sqrt(d), rel=0.1)
    classifier = model.head[-1]
    assert not classifier.weight.any() and not classifier.bias.any()
    assert all(p.any() for n, p in model.named_parameters() if n.endswith("gain"))
    assert not any(p.any() for n, p in model.named_parameters() if n.endswith("bias"))
    assert not model(torch.randn(2, 3, 32, 32)).any()


def test_fixup_alone_trains_its_scalars_and_classifier_bias_at_a_tenth_of_the_lr():
    """The Fixup authors' rule: every parameter named bias or scale (our gain) in a group at lr / 10."""
    for model in (wide_resnet(16, 1, "fixup"), resnet50_v2("fixup")):
        multipliers = lr_multipliers(model, 0.1)
        biases_and_gains = {name for name, _ in model.named_parameters() if name.endswith(("bias", "gain"))}
        assert set(multipliers) == biases_and_gains and set(multipliers.values()) == {0.1}
        assert f"head.{len(model.head) - 1}.bias" in multipliers  # the classifier's bias
        assert all(
            param.dim() == 0 for name, param in model.named_parameters() if name in multipliers and "head" not in name
        )
    for variant in set(VARIANTS) - {"fixup"}:
        assert lr_multipliers(wide_resnet(10, 1, variant), 0.1) == {}  # SkipInit's alpha trains at the full rate


def test_scaled_variant_divides_block_output_by_sqrt2():
    torch.manual_seed(0)
    block = residual_blocks(wide_resnet(10, 1, "scaled"))[0]
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), (x + block.branch(block.preact(x))) / math.sqrt(2))


def test_dropout_sits_before_the_classifier():
    model = wide_resnet(10, 1, "skipinit", dropout=0.3)
    assert isinstance(model.head[-2], MemberDropout) and model.head[-2].p == 0.3 and model.head[-2].features == 64
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_single_stage_resnet_keeps_identity_skips():
    model = single_stage_resnet(7, 8, "batchnorm")
    blocks = residual_blocks(model)
    assert len(blocks) == 7 and all(b.shortcut is None for b in blocks)
    assert model(torch.randn(4, 3, 16, 16)).shape == (4, 10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_resnet50_v2_forward(variant):
    torch.manual_seed(0)
    model = resnet50_v2(variant, num_classes=7)
    assert len(residual_blocks(model)) == 16
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_resnet50_v2_at_imagenet_resolution():
    torch.manual_seed(0)
    model = resnet50_v2("batchnorm")
    assert round(num_parameters(model) / 1e6, 1) == 25.5
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("variant", ["batchnorm", "unnormalized"])
def test_linear_resnet(variant):
    torch.manual_seed(0)
    model = linear_resnet(width=64, blocks=5, variant=variant)
    assert len(model) == 5
    weight = model[0].branch.weight
    assert weight.shape == (64, 64) and model[0].branch.bias is None
    assert weight.std().item() == pytest.approx(1 / 8, rel=0.1)
    assert model(torch.randn(32, 64)).shape == (32, 64)
    has_norm = any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert has_norm == (variant == "batchnorm")
    assert not any(isinstance(m, (nn.ReLU, nn.Conv2d)) for m in model.modules())


def test_plain_variant_has_no_skip_path_anywhere():
    torch.manual_seed(0)
    plain = wide_resnet(16, 2, "plain")
    blocks = residual_blocks(plain)
    assert len(blocks) == wrn_residual_blocks(16) and all(b.shortcut is None and not b.has_skip for b in blocks)
    x = torch.randn(2, 32, 8, 8)  # the second block of the first stage, 16 x 2 channels
    torch.testing.assert_close(blocks[1](x), blocks[1].branch(blocks[1].preact(x)))
    # the same convs as the unnormalized net (with biases, ReLU pre-activations) minus its shortcut convs
    unnormalized = wide_resnet(16, 2, "unnormalized")
    shortcuts = sum(num_parameters(b.shortcut) for b in residual_blocks(unnormalized) if b.shortcut is not None)
    assert num_parameters(plain) == num_parameters(unnormalized) - shortcuts
    assert shortcuts == (16 * 32 + 32) + (32 * 64 + 64) + (64 * 128 + 128)  # all three stages widen at width 2
    with pytest.raises(ValueError, match="skip path"):
        ResidualBlock(nn.Identity(), nn.Identity(), shortcut=nn.Identity(), has_skip=False)


def test_plain_net_signal_does_not_explode_with_depth_unlike_the_unnormalized_residual_net():
    x = torch.randn(16, 3, 32, 32)
    variances = {}
    for variant in ("plain", "unnormalized"):
        torch.manual_seed(0)
        model = wide_resnet(40, 1, variant)
        with torch.no_grad():
            variances[variant] = model.stages(model.stem(x)).var().item()
    assert variances["plain"] < 10 and variances["unnormalized"] > 2**10  # 18 blocks: 2^18 without the shortcuts
