"""Two-input AIL units (Lowe et al., 2022): values, gradients, normalisation and cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evosparse.activations import activation_cost, arity, torch_activation
from evosparse.flops import count_cost
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.library import AIL_COST
from evosparse.network import SparseNetwork


@pytest.mark.parametrize(("name", "x", "y", "want"), [
    ("and_ail", -1.0, -2.0, -3.0), ("and_ail", 1.0, -2.0, -2.0), ("and_ail", 1.0, 2.0, 1.0),
    ("or_ail", 1.0, 2.0, 3.0), ("or_ail", -1.0, 2.0, 2.0), ("or_ail", -1.0, -2.0, -1.0),
    ("xnor_ail", 2.0, -3.0, -2.0), ("xnor_ail", -2.0, -3.0, 2.0), ("xnor_ail", 4.0, 3.0, 3.0),
])
def test_units_follow_their_definitions(name: str, x: float, y: float, want: float) -> None:
    assert arity(name) == 2
    got = torch_activation(name)(torch.tensor([x]), torch.tensor([y]))
    assert float(got) == want


def test_xnor_sign_carries_no_gradient() -> None:
    x = torch.tensor([2.0, -5.0], requires_grad=True)
    y = torch.tensor([-3.0, 1.0], requires_grad=True)
    torch_activation("xnor_ail")(x, y).sum().backward()
    # first: |x| < |y|, d/dx = sign(xy) * sign(x) = -1; second: |y| smaller, d/dx = 0
    assert x.grad.tolist() == [-1.0, 0.0] and y.grad.tolist() == [0.0, -1.0]


@pytest.mark.parametrize("name", ["and_ail_norm", "or_ail_norm", "xnor_ail_norm"])
def test_normalised_units_have_zero_mean_unit_variance_on_normal_inputs(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 400_000, generator=gen, dtype=torch.float64)
    out = torch_activation(name)(x, y)
    assert abs(float(out.mean())) < 0.01 and abs(float(out.std()) - 1.0) < 0.01


def test_a_two_input_unit_costs_a_second_set_of_weights_and_a_second_bias() -> None:
    # inputs 0, 1, 2 -> hidden 4 (and_ail) -> output 3; input 0 -> output 3 as well
    g = Genome.build(
        0,
        (np.array([0, 1, 2, 3, 4]), np.array([INPUT, INPUT, INPUT, OUTPUT, HIDDEN]),
         np.array([0.0, 0.0, 0.0, 1.0, 0.5]),
         np.array(["identity"] * 4 + ["and_ail"])),
        (np.array([0, 1, 2, 3, 4]), np.array([0, 1, 2, 4, 0]), np.array([4, 4, 4, 3, 3]),
         np.ones(5, dtype=bool)),
    )
    cost = count_cost(g, bias=True)
    weights = 3 * 2 + 2  # three in-links with two weights each, two links into the output
    biases = 2 + 1
    assert cost.connections == 5
    assert (cost.params, cost.flops) == (weights + biases,
                                         2 * weights + biases + activation_cost("and_ail"))
    assert activation_cost("and_ail") == AIL_COST
    net = SparseNetwork(g, True, torch.Generator().manual_seed(0))
    params = sum(int(torch.count_nonzero(p)) for p in (net.levels[0].weight,
                                                      net.levels[0].second_weight(),
                                                      net.levels[1].weight))
    assert params == weights, "the compiled network holds exactly the counted weights"
