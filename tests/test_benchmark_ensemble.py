"""``benchmarks/ensemble.py`` without ../shared/data: one clear line naming the missing file, exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ensemble.py"


def test_missing_data_is_one_line_naming_the_path_not_a_traceback(tmp_path: Path) -> None:
    """The script run from a checkout that has no ../shared/data next to it (its default data path)."""
    script = tmp_path / "repo" / "benchmarks" / "ensemble.py"
    script.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, script)
    p = subprocess.run([sys.executable, str(script), "--limit", "5"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    missing = tmp_path / "shared" / "data" / "toxicchat-train" / "toxic_chat_train_dedup_vs_holdout.json"
    assert str(missing) in p.stderr and "not found" in p.stderr
