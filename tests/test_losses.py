import math

import pytest
import torch

from ageest.errors import ConfigError
import inspect

from ageest.config import Config, field_names
from ageest.losses import LOSSES, LossSpec, expected_age, get_loss, loss_kwargs, mean_variance_loss, softmax_loss

AGES = torch.tensor([0.0, 1.0, 2.0])


def test_expected_age_by_hand():
    # p = softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2]: mean = 1.25, var = 0.6875
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
    mean, std = expected_age(logits, AGES)
    assert mean.tolist() == pytest.approx([1.25, 1.0])
    assert (std ** 2).tolist() == pytest.approx([0.6875, 2 / 3])


def test_mean_variance_by_hand():
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
    target = torch.tensor([2.0, 0.0])
    out = mean_variance_loss(logits, target, AGES, lambda1=0.2, lambda2=0.05)
    ce = (-math.log(0.5) - math.log(1 / 3)) / 2
    mean_l = (0.5 * 0.75 ** 2 + 0.5 * 1.0 ** 2) / 2  # 0.390625
    var_l = (0.6875 + 2 / 3) / 2
    assert out["ce"].item() == pytest.approx(ce)
    assert out["mean"].item() == pytest.approx(mean_l)
    assert out["var"].item() == pytest.approx(var_l)
    assert out["loss"].item() == pytest.approx(ce + 0.2 * mean_l + 0.05 * var_l)


def test_softmax_alone_and_offset_ages():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    ages = torch.tensor([10.0, 11.0, 12.0])  # min_age = 10
    out = softmax_loss(logits, torch.tensor([10.0]), ages)
    assert out["loss"].item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)))
    assert set(out) == {"loss", "ce"}


def test_gradients_flow_and_bf16_logits():
    logits = torch.randn(4, 3, requires_grad=True)
    mean_variance_loss(logits.bfloat16(), torch.tensor([0.0, 1.0, 2.0, 1.0]), AGES)["loss"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_registry_and_errors():
    assert set(LOSSES) >= {"mean_variance", "softmax"}
    assert get_loss("softmax") is softmax_loss
    with pytest.raises(ConfigError, match="unknown loss 'huber'"):
        get_loss("huber")
    with pytest.raises(IndexError, match="out of bounds"):
        softmax_loss(torch.zeros(1, 3), torch.tensor([5.0]), AGES)


def test_mean_variance_gradient_is_the_analytic_one():
    # p = softmax(z), m = sum p_k a_k, v = sum p_k (a_k - m)^2. Per sample:
    #   d CE / dz_j            = p_j - [j = y]
    #   d (m - y)^2/2 / dz_j   = (m - y) p_j (a_j - m)
    #   d v / dz_j             = p_j ((a_j - m)^2 - v)
    # and the loss averages over the N samples.
    torch.manual_seed(0)
    ages = torch.arange(10.0, 16.0, dtype=torch.float64)
    z = (3 * torch.randn(3, 6, dtype=torch.float64)).requires_grad_()
    y = torch.tensor([10.0, 13.0, 15.0], dtype=torch.float64)
    l1, l2 = 0.2, 0.05
    mean_variance_loss(z, y, ages, lambda1=l1, lambda2=l2)["loss"].backward()
    p = torch.softmax(z.detach(), dim=1)
    m = p @ ages
    d = ages[None, :] - m[:, None]
    v = (p * d ** 2).sum(dim=1)
    onehot = torch.nn.functional.one_hot((y - 10).long(), 6).double()
    analytic = ((p - onehot) + l1 * (m - y)[:, None] * p * d + l2 * p * (d ** 2 - v[:, None])) / 3
    assert z.grad.dtype == torch.float64
    assert torch.allclose(z.grad, analytic, rtol=0, atol=1e-10), (z.grad - analytic).abs().max()
    assert analytic.abs().max() > 1e-2  # the comparison is not between two near-zero tensors


def test_each_loss_declares_its_config_keys():
    for name, spec in LOSSES.items():
        assert isinstance(spec, LossSpec)
        assert set(spec.config_keys) <= set(field_names()), name  # keys the Config has
        params = inspect.signature(spec.fn).parameters
        assert all(k in params for k in spec.config_keys), name  # and the function takes
    c = Config(lambda1=0.7, lambda2=0.3)
    assert loss_kwargs("mean_variance", c) == {"lambda1": 0.7, "lambda2": 0.3}
    assert loss_kwargs("softmax", c) == {}
    logits, target = torch.tensor([[0.0, 0.0, math.log(2)]]), torch.tensor([2.0])
    # The registry entry is callable like the function it holds (LOSSES[name] as before).
    assert LOSSES["mean_variance"](logits, target, AGES, **loss_kwargs("mean_variance", c))["loss"].item() == \
        pytest.approx(mean_variance_loss(logits, target, AGES, lambda1=0.7, lambda2=0.3)["loss"].item())
    with pytest.raises(ConfigError, match="unknown loss 'huber'"):
        loss_kwargs("huber", c)
