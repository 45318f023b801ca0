import math

import pytest
import torch
from torch import nn

from iwgan.core.losses import (
    autograd_input_gradient,
    gradient_penalty,
    input_gradient,
    is_relu_mlp,
    mmd_imq,
    reconstruction_error,
)
from iwgan.core.networks import mixture_mlps, mlp


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
    gp = gradient_penalty(linear_critic(slope), torch.randn(64, 2), torch.randn(64, 2),
                          torch.rand(64, 1))
    assert float(gp) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4), (3, 8, 8)])
def test_gradient_penalty_is_slope_minus_one_squared_for_any_shape(shape):
    torch.manual_seed(0)
    slope = torch.randn(*shape)
    slope = 3 * slope / slope.norm()
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape)
    eps = torch.rand(16, *([1] * len(shape)))
    gp = gradient_penalty(linear_critic(slope), real, fake, eps)
    assert float(gp) == pytest.approx((3 - 1) ** 2, rel=1e-5)
    gp.backward()  # differentiable in the critic's parameters


def test_reconstruction_error_is_the_per_sample_l2_norm():
    x = torch.zeros(2, 1, 2, 2)
    x_rec = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    assert reconstruction_error(x, x_rec).tolist() == [5.0, 2.0]
    assert not math.isnan(float(reconstruction_error(x, x).sum()))


def test_the_relu_mlp_critic_is_recognised_and_nothing_else():
    assert is_relu_mlp(mixture_mlps(0.25).critic)
    assert not is_relu_mlp(mixture_mlps(0.25).encoder)      # 5 outputs, not a critic
    assert not is_relu_mlp(linear_critic(torch.ones(2)))     # Flatten first
    assert not is_relu_mlp(nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)))


def test_the_closed_form_input_gradient_of_a_relu_mlp_is_autograds():
    torch.manual_seed(0)
    critic = mlp((2, 16, 8, 4, 1))
    x = torch.randn(64, 2)
    closed = input_gradient(critic, x)
    with autograd_input_gradient():
        auto = input_gradient(critic, x)
    assert torch.allclose(closed, auto, rtol=1e-6, atol=1e-7)


def test_the_closed_form_is_by_hand_for_one_hidden_layer():
    # f(x) = w2 relu(W1 x + b1): grad = W1^T (w2 * [W1 x + b1 > 0]).
    critic = mlp((2, 2, 1))
    with torch.no_grad():
        critic[0].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
        critic[0].bias.zero_()
        critic[2].weight.copy_(torch.tensor([[3.0, 5.0]]))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0]])   # pre-activations (3, 0) and (-1, -2)
    expected = torch.tensor([[3.0, 6.0], [0.0, 0.0]])
    assert torch.equal(input_gradient(critic, x), expected)


def test_the_penalty_has_the_same_parameter_gradient_in_closed_form_and_by_autograd():
    torch.manual_seed(0)
    critic = mixture_mlps(0.25).critic
    real, fake, eps = torch.randn(32, 2), torch.randn(32, 2), torch.rand(32, 1)
    (closed,) = torch.autograd.grad(gradient_penalty(critic, real, fake, eps), critic[0].weight)
    with autograd_input_gradient():
        (auto,) = torch.autograd.grad(gradient_penalty(critic, real, fake, eps),
                                      critic[0].weight)
    assert torch.allclose(closed, auto, rtol=1e-5, atol=1e-8)
