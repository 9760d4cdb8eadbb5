"""`guardrail train` refuses a run that would silently train on almost nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
