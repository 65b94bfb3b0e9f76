import math

import pytest
import torch

from ageest.errors import ConfigError
from ageest.losses import LOSSES, expected_age, get_loss, mean_variance_loss, softmax_loss

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
