"""A PyTorch module factory, importable by name wherever the tests' models load.

Workers and servers started by the tests have ``tests/`` on their path, so
``frameworks.nets:make_net`` names this function there as it would name a
function of an installed package.
"""

from __future__ import annotations

import torch


class Net(torch.nn.Module):
    """Two dense layers: ``features`` inputs, one sigmoid output."""

    def __init__(self, features: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(features, hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(torch.relu(self.hidden(x))))


def make_net(features: int = 3, hidden: int = 4) -> Net:
    return Net(features, hidden)
