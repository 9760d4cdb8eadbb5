"""Continue a finished run: more steps from its weights, on a chosen mix, measured on its own dev rows.

Why a separate stage: the shipped model is one full run plus a shorter continuation that oversamples what
the full run under-trained (the output stage has ~10k rows against ~70k input rows) and adds data written
after the full run started, within one training budget. The continuation never trains on the previous
run's recorded dev and held-out rows (``eval_rows.jsonl``), nor on any row that the new build groups with
one of them (near-duplicates by meaning), so the before/after comparison on those rows stays honest. It
reuses the previous run's vocabulary cut, so its checkpoint loads unchanged.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from guardrail.training.examples import Example
from guardrail.training.sources import read_labelled_jsonl


@dataclass(frozen=True)
class Mix:
    """What a continuation trains on: every authored and user row, every output row ``output_repeat``
    times, and ``input_sample`` of the other input rows."""

    output_repeat: int = 2
    input_sample: int = 30000
    seed: int = 7


def read_eval_rows(path: Path) -> list[Example]:
    rows: list[Example] = []
    with open(path, encoding="utf-8") as fh:  # line iteration: texts may hold U+2028
        for line in fh:
            r = json.loads(line)
            rows.append(Example(r["text"], r["labels"], r["source"], r["stage"], r["prompt"], r["response_class"],
                                r["group"], kind=r["kind"], split=r["split"], meta=r["meta"]))  # fmt: skip
    return rows


def choose(built: Sequence[Example], evaluated: Sequence[Example], mix: Mix) -> list[Example]:
    """The training rows of a continuation (returned with ``split="train"``)."""
    held_keys = {e.key for e in evaluated}
    held_groups = {e.group for e in built if e.key in held_keys}
    pool = [e for e in built if e.split != "holdout" and e.key not in held_keys and e.group not in held_groups]
    mine = [e for e in pool if e.source.startswith(("authored", "user-")) and e.stage == "input"]
    outputs = [e for e in pool if e.stage == "output"]
    others = [e for e in pool if e.stage == "input" and not e.source.startswith(("authored", "user-"))]
    rng = random.Random(mix.seed)
    chosen = mine + outputs * max(1, mix.output_repeat) + rng.sample(others, min(len(others), mix.input_sample))
    for e in chosen:
        e.split = "train"
    return chosen


def continue_run(
    cfg_dict: dict[str, object], previous: Path, mix: Mix = Mix(), log: Callable[[str], None] = print
) -> Path:
    """Train ``cfg.epochs`` over the mix from ``previous``'s weights; export and measure on its dev rows."""
    import torch

    from guardrail.training import dataset, export, train
    from guardrail.training.pipeline import _embedder, finalize

    cfg = train.TrainConfig(**{"head_lr": 5e-4, **cfg_dict, "init_checkpoint": previous / "checkpoint.pt"})  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "vocab_keep.json"):
        if not (work / name).exists():
            shutil.copy(previous / name, work / name)
    evaluated = read_eval_rows(previous / "eval_rows.jsonl")
    extra: list[Example] = []
    for path in cfg.extra_data:
        extra += list(read_labelled_jsonl(Path(path), source=f"user-{Path(path).stem}"))
    embed = _embedder(cfg.threads, work.parent / ".cache") if cfg.group_by_meaning else None
    built = dataset.build(Path(cfg.data_root), embed, seed=cfg.seed, limit=cfg.limit, extra=extra, log=log)
    chosen = choose(built, evaluated, mix)
    counts = Counter((e.stage, e.source.split("-")[0] if e.source.startswith("authored") else "public") for e in chosen)
    log(f"continuation from {previous}: {len(chosen)} rows {dict(counts)}")
    labels = json.loads((previous / "train_meta.json").read_text())["labels"]
    model = train.train(chosen, labels, cfg, log=log, work=work)
    train.save_checkpoint(model, labels, cfg, work)
    meta = json.loads((work / "train_meta.json").read_text())
    meta["continued_from"] = {"run": str(previous), "mix": mix.__dict__, "rows": len(chosen)}
    (work / "train_meta.json").write_text(json.dumps(meta, indent=2))
    log("exporting to ONNX and quantising to int8")
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    return finalize(work, evaluated, labels, cfg, log=log, t0=t0)
