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
