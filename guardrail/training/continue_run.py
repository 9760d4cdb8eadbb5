"""Continue a finished run: more steps from its weights, on a chosen mix, measured on its own dev rows.

Why a separate stage: the shipped model is one full run plus a shorter continuation that oversamples what
the full run under-trained (the output stage has ~11k rows against ~80k input rows) and adds data written
after the full run started, within one training budget. The continuation never trains on the previous
run's recorded dev and held-out rows (``eval_rows.jsonl``), nor on any row that the new build groups with
one of them (near-duplicates by meaning), so the before/after comparison on those rows stays honest. It
reuses the previous run's vocabulary cut, so its checkpoint loads unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from guardrail.training.eval_rows import read as read_eval_rows
from guardrail.training.examples import Example

__all__ = [
    "INHERITED",
    "Mix",
    "choose",
    "continuation_pairs",
    "continue_run",
    "not_held",
    "read_eval_rows",
    "record_split_seed",
    "user_dev_rows",
]


@dataclass(frozen=True)
class Mix:
    """What a continuation trains on: every authored row, every user (``--data``) row ``data_repeat`` times,
    every other output row ``output_repeat`` times, and ``input_sample`` of the other input rows."""

    output_repeat: int = 2
    input_sample: int = 30000
    seed: int = 7
    data_repeat: int = 1


def not_held(built: Sequence[Example], held: Sequence[Example]) -> list[Example]:
    """The rows of the build that are neither one of ``held`` nor grouped with one (near-duplicates by meaning)."""
    keys = {e.key for e in held}
    groups = {e.group for e in built if e.key in keys}
    return [e for e in built if e.key not in keys and e.group not in groups]


def choose(built: Sequence[Example], evaluated: Sequence[Example], mix: Mix) -> list[Example]:
    """The training rows of a continuation (returned with ``split="train"``)."""
    pool = [e for e in not_held(built, evaluated) if e.split != "holdout"]
    authored = [e for e in pool if e.source.startswith("authored") and e.stage == "input"]
    users = [e for e in pool if e.source.startswith("user-")]  # both stages: your rows, your repeat
    outputs = [e for e in pool if e.stage == "output" and not e.source.startswith("user-")]
    others = [e for e in pool if e.stage == "input" and not e.source.startswith(("authored", "user-"))]
    rng = random.Random(mix.seed)
    chosen = authored + users * max(1, mix.data_repeat) + outputs * max(1, mix.output_repeat)
    chosen += rng.sample(others, min(len(others), mix.input_sample))
    for e in chosen:
        e.split = "train"
    return chosen


def continuation_pairs(built: Sequence[Example], held: Sequence[Example], n: int, seed: int) -> list[Example]:
    """The system-prompt pairs of a continuation (``--system-prompt-pairs``), made without the rows it is measured
    on: their own pairs would be dropped by :func:`choose` (same group), but their system prompts would still reach
    training behind other rows, since the build's split (its own ``--seed``) calls most of them training rows."""
    if n <= 0:
        return []
    from guardrail.training.system_prompts import system_prompt_variants

    held_prompts = frozenset(e.prompt for e in held if e.prompt)
    return system_prompt_variants(not_held(built, held), n=n, seed=seed, exclude_prompts=held_prompts)


def user_dev_rows(built: Sequence[Example]) -> list[Example]:
    """The ``--data`` rows this build puts in dev (a random tenth of their groups): the previous run never saw
    them, so they are the continuation's own measure of the new data, and its calibration sees them too."""
    return [e for e in built if e.source.startswith("user-") and e.split == "dev"]


# settings that must be the previous run's: they shape the weights or the data the weights may come from
INHERITED = ("base", "layers", "max_length", "vocab_size", "exclude_noncommercial")


def _prepare(cfg_dict: dict[str, object], previous: Path, mix: Mix, log: Callable[[str], None]) -> dict[str, object]:
    """Check the previous run and ``--out``; returns the config with the previous run's inherited settings."""
    if mix.output_repeat < 1 or mix.input_sample < 0 or mix.data_repeat < 1:
        raise ValueError("--output-repeat and --data-repeat must be >= 1, and --input-sample >= 0")
    for name in ("checkpoint.pt", "train_meta.json", "eval_rows.jsonl", "tokenizer.json"):
        if not (previous / name).is_file():
            raise ValueError(f"{previous} is not a finished training run: {name} is missing")
    work = Path(str(cfg_dict["out_dir"]))
    if work.resolve() == previous.resolve():
        raise ValueError("--out must differ from --continue-from (the previous run is read, never overwritten)")
    before = json.loads((previous / "train_meta.json").read_text())["config"]
    cfg = {**cfg_dict, **{k: before[k] for k in INHERITED if k in before}}
    cfg["split"] = before.get("split", "random")  # its start's method (every run before session 17: random)
    if cfg_dict.get("split", cfg["split"]) != cfg["split"]:
        log(f"using the previous run's split method {cfg['split']!r} (given {cfg_dict['split']!r})")
    changed = {
        k: (cfg_dict[k], before[k]) for k in INHERITED if k in before and k in cfg_dict and cfg_dict[k] != before[k]
    }
    if changed:
        log(f"using the previous run's settings {changed} (given -> used)")
    spec = {
        "previous": str(previous.resolve()), "mix": asdict(mix), "epochs": cfg.get("epochs"), "lr": cfg.get("lr"),
        "steps": cfg.get("steps"), "keep_out": [str(p) for p in cfg.get("keep_out") or []],
        "average_from": cfg.get("average_from"), "average_every": cfg.get("average_every"),
    }  # fmt: skip
    if cfg.get("system_prompt_pairs"):  # only when used: a run started before the option still resumes
        spec["system_prompt_pairs"] = cfg["system_prompt_pairs"]
    spec_file = work / "continue_spec.json"
    if (work / "resume.pt").exists() and (not spec_file.exists() or json.loads(spec_file.read_text()) != spec):
        raise ValueError(f"{work} holds a resumable checkpoint of another run; continue into an empty folder")
    work.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec, indent=1))
    for name in ("tokenizer.json", "vocab_keep.json"):  # always the previous run's: its weights use these ids
        if (previous / name).exists():
            shutil.copy(previous / name, work / name)
    return cfg


def continue_run(
    cfg_dict: dict[str, object], previous: Path, mix: Mix = Mix(), log: Callable[[str], None] = print
) -> Path:
    """Train ``cfg.epochs`` over the mix from ``previous``'s weights; export and measure on its dev rows."""
    import torch

    from guardrail.training import export, train
    from guardrail.training.pipeline import build_examples, finalize

    settings = {
        "head_lr": 5e-4,
        **_prepare(cfg_dict, previous, mix, log),
        "init_checkpoint": previous / "checkpoint.pt",
        "output_repeat": 1,  # the mix owns the repeats: choose() already copies output rows
        "authored_repeat": 1,
    }
    cfg = train.TrainConfig(**settings)  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.out_dir)
    evaluated = read_eval_rows(previous / "eval_rows.jsonl")
    # paired below (continuation_pairs), once the rows it is measured on are known
    built = build_examples(dataclasses.replace(cfg, system_prompt_pairs=0), log)
    labels = json.loads((previous / "train_meta.json").read_text())["labels"]
    new = sorted(set(train.label_space(built)) - set(labels))
    if new:
        raise ValueError(f"categories {new} are not heads of {previous}: new categories need a full run")
    missing = len({e.key for e in evaluated} - {e.key for e in built})
    if missing:  # a changed data file or scoring_form: those rows cannot be matched, so cannot be kept out by key
        log(f"warning: {missing} of {len(evaluated)} recorded dev/held-out rows are not in this build")
    # rows another run recorded for evaluation (--keep-out) stay out of the continuation's training too
    kept_out = [e for path in cfg.keep_out for e in read_eval_rows(Path(path))]
    # the dev part of your new rows is held out like any dev split: measured, and calibrated on
    known = {e.key for e in evaluated}  # a continuation of a continuation on the same --data has them already
    new_dev = [e for e in user_dev_rows(built) if e.key not in known]
    if new_dev:
        log(f"held out for measuring and calibration: {len(new_dev)} of your --data rows (their dev split)")
        evaluated = [*evaluated, *new_dev]
    pairs = continuation_pairs(built, [*evaluated, *kept_out], cfg.system_prompt_pairs, cfg.seed)
    if pairs:
        log(f"system-prompt pairs: {len(pairs)} rows shown again behind a system prompt")
    built += pairs
    chosen = choose(built, [*evaluated, *kept_out], mix)
    counts = Counter((e.stage, e.source.split("-")[0] if e.source.startswith("authored") else "public") for e in chosen)
    log(f"continuation from {previous}: {len(chosen)} rows {dict(counts)}")
    model = train.train(chosen, labels, cfg, log=log, work=work)
    train.save_checkpoint(model, labels, cfg, work)
    meta = json.loads((work / "train_meta.json").read_text())
    meta["continued_from"] = {"run": str(previous), "mix": asdict(mix), "rows": len(chosen)}
    (work / "train_meta.json").write_text(json.dumps(meta, indent=2))
    log("exporting to ONNX and quantising to int8")
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    done = finalize(work, evaluated, labels, cfg, log=log, t0=t0)
    record_split_seed(work, previous)
    return done


def record_split_seed(work: Path, previous: Path) -> int:
    """Write the seed of the split the continuation is measured on (its start's, not its own ``--seed``) into
    its train_meta.json and metrics.json, so a later read-back (unpack.py) rebuilds the right held-out rows."""
    before = json.loads((previous / "train_meta.json").read_text())
    seed = int(before.get("split_seed", before["config"]["seed"]))
    for name in ("train_meta.json", "metrics.json"):
        doc = json.loads((work / name).read_text())
        doc["split_seed"] = seed
        (work / name).write_text(json.dumps(doc, indent=1 if name == "metrics.json" else 2))
    return seed
