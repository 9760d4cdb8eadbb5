"""Tail averaging: the shipped weights are the mean of the weights at several late steps of one run.

Why: runs of one recipe that differ only in their seed moved the challenge suite's harmful_response F1 by 0.095
and the calibrated ``self_harm`` threshold from 0.253 to 0.430 (models v10 and v13). The weights a run ends on
are one noisy point of the last stretch of training; their mean over that stretch (stochastic weight
averaging, Izmailov et al. 2018; checkpoint averaging) is a flatter point that costs no extra training time.

The sum is kept in float64 and added in step order, so an average built during training and one built later
from saved snapshots of the same steps are the same tensors. Integer buffers (position ids) are not averaged:
the latest value is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class WeightAverage:
    """A running sum of model states; ``state()`` / ``load()`` carry it through a resumable checkpoint."""

    def __init__(self) -> None:
        self.sum: dict[str, torch.Tensor] = {}
        self.steps: list[int] = []

    def add(self, step: int, state: Mapping[str, torch.Tensor]) -> None:
        for k, v in state.items():
            if not v.is_floating_point():
                self.sum[k] = v.detach().clone()
            elif k in self.sum:
                self.sum[k] += v.detach().double()
            else:
                self.sum[k] = v.detach().double().clone()
        self.steps.append(step)

    def result(self, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The mean, in the dtypes of ``like`` (the model's own state)."""
        if not self.steps:
            raise ValueError("no weights were averaged")
        n = len(self.steps)
        return {k: (s / n).to(like[k].dtype) if s.is_floating_point() else s for k, s in self.sum.items()}

    def state(self) -> dict[str, Any]:
        return {"sum": self.sum, "steps": list(self.steps)}

    def load(self, state: Mapping[str, Any]) -> None:
        self.sum = dict(state["sum"])
        self.steps = list(state["steps"])


def due(step: int, start: int | None, every: int) -> bool:
    """Whether the weights after optimiser step ``step`` join the average (``start``, then every ``every``)."""
    return start is not None and step >= start and (step - start) % every == 0
