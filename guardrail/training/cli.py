"""`guardrail train`: retrain the bundled model, or extend it with your own labelled data.

Your JSONL rows use the authored schema (guardrail/training/authored/README.md): ``text``, ``labels``
(positive ids; new ids become new custom categories), optional ``stage``/``prompt``. The result is a
model folder that a policy's ``model:`` can point at.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="folder of the public datasets")
    p.add_argument("--data", type=Path, action="append", default=[], help="your labelled JSONL (repeatable)")
    p.add_argument("--out", type=Path, default=Path("build/model"), help="output model folder")
    p.add_argument("--layers", type=int, default=6, help="encoder layers kept (speed/quality trade-off)")
    p.add_argument("--base", choices=["e5", "minilm"], default="e5", help="e5: multilingual (default); minilm: English")
    p.add_argument("--vocab-size", type=int, default=64000, help="e5: pieces kept from the 250k vocabulary")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="rows per source (smoke runs)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--from-checkpoint", action="store_true",
        help="export and measure the weights a stopped run left in --out (same data options), without training",
    )  # fmt: skip
    p.add_argument(
        "--continue-from", type=Path, default=None, metavar="RUN",
        help="continue a finished run (its checkpoint.pt, vocabulary and eval_rows.jsonl), or a model folder such as "
        "the bundled one (read back into OUT-start first), for --epochs more over a mix of all authored/--data rows, "
        "every output row --output-repeat times and --input-sample other input rows",
    )  # fmt: skip
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="total optimiser steps (overrides --epochs: size a run to a time budget)",
    )
    p.add_argument(
        "--output-repeat", type=int, default=None,
        help="copies of each output-stage training row (default 1; 2 with --continue-from)",
    )  # fmt: skip
    p.add_argument(
        "--keep-out", type=Path, action="append", default=[], metavar="EVAL_ROWS",
        help="another run's eval_rows.jsonl: those rows (and, with grouping by meaning, their near-duplicates) join "
        "dev, never training, so the two models compare cleanly on them (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--system-prompt-pairs", type=int, default=0, metavar="N",
        help="also show N training input rows again behind a system prompt, labels unchanged (for "
        "input.system_context: true); with --continue-from, pairs of authored and --data rows all join the mix "
        "(--data ones --data-repeat times), and pairs of public rows are drawn by --input-sample with the others",
    )  # fmt: skip
    p.add_argument(
        "--context-layout", choices=("marked", "pair"), default="marked",
        help="how an input read with its system prompt is encoded: marked (its own layout, the default since v24) or "
        "pair (the output stage's, as models up to v19b were trained: to finish or continue such a run as it began)",
    )  # fmt: skip
    p.add_argument(
        "--split", choices=("group-hash", "random"), default="group-hash",
        help="how groups go to dev: group-hash (by a hash of each group: adding rows moves only the groups they join; "
        "the default since session 17) or random (a seeded draw over all groups, as earlier runs: to repeat or "
        "resume one)",
    )  # fmt: skip
    p.add_argument("--authored-repeat", type=int, default=1, help="copies of each authored / --data input row")
    p.add_argument(
        "--average-from", type=int, default=None, metavar="STEP",
        help="tail averaging: the model is the mean of the weights after STEP and every --average-every steps after it",
    )  # fmt: skip
    p.add_argument("--average-every", type=int, default=200, metavar="N", help="steps between averaged weights")
    p.add_argument("--input-sample", type=int, default=30000, help="with --continue-from: public input rows drawn")
    p.add_argument("--data-repeat", type=int, default=1, help="with --continue-from: copies of each --data row")
    p.add_argument(
        "--eval-rows", type=Path, default=None, metavar="EVAL_ROWS",
        help="with --continue-from a model folder: rows its model never trained on (an eval_rows.jsonl) to measure "
        "and calibrate on, instead of rebuilding its dev split from its recorded seed and today's data",
    )  # fmt: skip
    p.add_argument("--no-group-by-meaning", action="store_true", help="skip embedding-based near-duplicate grouping")
    p.add_argument(
        "--no-public-data", action="store_true",
        help="train without the public datasets (--data-root may be missing): the authored rows and your --data only",
    )  # fmt: skip
    p.add_argument(
        "--exclude-noncommercial", action="store_true",
        help="drop non-commercial, copyleft and unlicensed sources (for weights you may use commercially)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        from guardrail.training.pipeline import from_checkpoint
        from guardrail.training.pipeline import run as run_pipeline
    except ImportError as exc:  # torch / transformers missing
        print(f"guardrail train needs the [train] extra: pip install 'guardrail-sdk[train]' ({exc})", file=sys.stderr)
        return 2
    from guardrail.training.source_io import NO_PUBLIC_DATA

    if args.no_public_data:  # no public source is read, even from a data root that is there (or from a wheel)
        args.data_root = NO_PUBLIC_DATA
    cfg = {
        "data_root": args.data_root,
        "out_dir": args.out,
        "layers": args.layers,
        "base": args.base,
        "vocab_size": args.vocab_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "limit": args.limit,
        "extra_data": list(args.data),
        "max_length": args.max_length,
        "threads": args.threads,
        "group_by_meaning": not args.no_group_by_meaning,
        "exclude_noncommercial": args.exclude_noncommercial,
        "steps": args.steps,
        "keep_out": list(args.keep_out),
        "average_from": args.average_from,
        "average_every": args.average_every,
        "system_prompt_pairs": args.system_prompt_pairs,
        "context_layout": args.context_layout,
        "split": args.split,
    }

    def log(line: str) -> None:
        print(line, flush=True)

    if args.system_prompt_pairs < 0:
        print("--system-prompt-pairs must be >= 0", file=sys.stderr)
        return 2
    if args.continue_from is not None:
        from guardrail.training.continue_run import Mix, continue_run
        from guardrail.training.unpack import is_model_folder, stale_start, unpack

        if args.authored_repeat != 1:
            print("--authored-repeat is for full runs (a continuation trains every authored row once)", file=sys.stderr)
            return 2
        repeat = 2 if args.output_repeat is None else args.output_repeat
        previous = args.continue_from
        if args.eval_rows is not None and not is_model_folder(previous):
            print("--eval-rows is for --continue-from a model folder (a run has its eval_rows.jsonl)", file=sys.stderr)
            return 2
        if _no_data(args):
            return 2
        if is_model_folder(previous):  # no torch checkpoint: read its weights and dev rows back first
            start = args.out.parent / f"{args.out.name}-start"
            if (start / "eval_rows.jsonl").is_file():
                why = stale_start(start, previous, args.eval_rows)
                if why:
                    print(f"{start} {why}: remove it or choose another --out", file=sys.stderr)
                    return 2
                log(f"reusing {start}, read back from {previous} earlier")
            else:
                if args.eval_rows is None and not _same_public_data(args, previous / "metrics.json", "--eval-rows"):
                    return 2
                unpack(previous, start, args.data_root, log=log, eval_rows_file=args.eval_rows)
            previous = start
        mix = Mix(repeat, args.input_sample, data_repeat=args.data_repeat)
        continue_run(cfg, previous, mix, log=log)
    else:
        cfg["output_repeat"] = 1 if args.output_repeat is None else args.output_repeat
        cfg["authored_repeat"] = args.authored_repeat
        if args.data_repeat != 1 or args.eval_rows is not None:
            print("--data-repeat and --eval-rows are for --continue-from", file=sys.stderr)
            return 2
        if _no_data(args):
            return 2
        if args.from_checkpoint and not _same_public_data(args, args.out / "train_meta.json"):
            return 2
        (from_checkpoint if args.from_checkpoint else run_pipeline)(cfg, log=log)
    return 0


def _same_public_data(args: argparse.Namespace, record: Path, other: str = "") -> bool:
    """Whether this run reads the public datasets as the run ``record`` describes did (a ``config.data_root``): its
    split is rebuilt from them, and another split would measure and calibrate it on rows it trained on. Says why
    not on stderr; a record that is not there (or names no data root) is nothing to compare. Without ``other`` (a
    way round), a recorded root that is not a folder here may have been as missing then (a run that began with
    --no-public-data before it had its own root): the run is let finish, as it could before."""
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))["config"]["data_root"]
    except (OSError, ValueError, KeyError, TypeError):
        return True
    from guardrail.training.source_io import NO_PUBLIC_DATA

    without = str(recorded) == str(NO_PUBLIC_DATA)
    if without == args.no_public_data or (not other and not without and not Path(str(recorded)).is_dir()):
        return True
    flag = "with --no-public-data" if without else "without --no-public-data"
    print(
        f"guardrail train: {record.parent} was trained {'without' if without else 'on'} the public datasets, so its "
        f"dev split cannot be rebuilt {'with' if without else 'without'} them (another split would measure and "
        f"calibrate it on rows it trained on): run {flag}{f', or give its eval rows with {other}' if other else ''}",
        file=sys.stderr,
    )
    return False


def _no_data(args: argparse.Namespace) -> bool:
    """A data root that is not there, unless --no-public-data (checked last of the usage errors, before any work):
    a forgotten --data-root used to skip every public source, one line each, and then train for an hour."""
    if args.data_root.is_dir() or args.no_public_data:
        return False
    print(
        f"guardrail train: --data-root {args.data_root} is not a folder (the public datasets the model is trained and "
        "measured on); pass --data-root PATH, or --no-public-data to train on the authored rows and your --data only",
        file=sys.stderr,
    )
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="guardrail train", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
