import math

import pytest
import torch
from torch import nn

from iwgan.losses import gradient_penalty, mmd_imq, reconstruction_error


def test_mmd_of_a_sample_with_itself_is_near_zero():
    torch.manual_seed(0)
    z = torch.randn(500, 5)
    # The estimator's within-sample terms skip the diagonal, so x against itself is
    # -2 (1 - mean off-diagonal k) / n per scale: O(1/n), not exactly 0.
    assert abs(float(mmd_imq(z, z))) < 7 * 2 / 500


def test_mmd_of_two_samples_of_one_law_is_near_zero_and_positive_after_a_shift():
    torch.manual_seed(0)
    x, y = torch.randn(500, 5), torch.randn(500, 5)
    same = float(mmd_imq(x, y))
    shifted = float(mmd_imq(x, y + 1.0))
    assert abs(same) < 0.01
    assert shifted > 0.1 > same


def test_mmd_works_on_image_shaped_tensors_and_unequal_sizes():
    torch.manual_seed(0)
    assert float(mmd_imq(torch.randn(40, 1, 4, 4), torch.randn(30, 1, 4, 4) + 2)) > 0


def linear_critic(slope: torch.Tensor) -> nn.Module:
    critic = nn.Linear(slope.numel(), 1)
    with torch.no_grad():
        critic.weight.copy_(slope.flatten()[None])
    return nn.Sequential(nn.Flatten(), critic)


def test_gradient_penalty_of_a_unit_slope_linear_critic_is_zero():
    torch.manual_seed(0)
    slope = torch.tensor([0.6, 0.8])  # ||slope|| = 1
    gp = gradient_penalty(linear_critic(slope), torch.randn(64, 2), torch.randn(64, 2))
    assert float(gp) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4), (3, 8, 8)])
def test_gradient_penalty_is_slope_minus_one_squared_for_any_shape(shape):
    torch.manual_seed(0)
    slope = torch.randn(*shape)
    slope = 3 * slope / slope.norm()
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape)
    gp = gradient_penalty(linear_critic(slope), real, fake)
    assert float(gp) == pytest.approx((3 - 1) ** 2, rel=1e-5)
    gp.backward()  # differentiable in the critic's parameters


def test_reconstruction_error_is_the_per_sample_l2_norm():
    x = torch.zeros(2, 1, 2, 2)
    x_rec = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    assert reconstruction_error(x, x_rec).tolist() == [5.0, 2.0]
    assert not math.isnan(float(reconstruction_error(x, x).sum()))
