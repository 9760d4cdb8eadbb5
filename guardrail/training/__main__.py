"""python -m guardrail.training: the same as `guardrail train` (see guardrail/training/cli.py)."""

from guardrail.training.cli import main

raise SystemExit(main())
