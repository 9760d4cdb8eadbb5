"""Fine-tune the safety classifier (multi-label heads + the Do-Not-Answer response-class group).

Partial supervision is handled by masking: each example carries the heads its source labels, and
the loss ignores the rest. Rare heads get a bounded positive weight (sqrt of the imbalance, at most
4) so they learn without the probabilities drifting far; calibration fixes the rest afterwards.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from guardrail.classifiers.encoding import EncodingConfig, Window, encode_windows, pad_batch
from guardrail.taxonomy import RESPONSE_CLASS_IDS
from guardrail.training.averaging import WeightAverage, due
from guardrail.training.dataset import GROUPING, check_grouping
from guardrail.training.examples import BINARY_HEADS, Example
from guardrail.training.model import SafetyClassifier, base_model_dir


@dataclass
class TrainConfig:
    data_root: Path = Path("../shared/data")
    out_dir: Path = Path("build/model")
    layers: int = 3
    epochs: float = 2.0
    batch_size: int = 32
    lr: float = 8e-5
    head_lr: float = 1e-3
    warmup: float = 0.05
    seed: int = 0
    limit: int | None = None  # rows per source (smoke runs)
    extra_data: list[Path] = field(default_factory=list)
    max_length: int = 128
    threads: int = 2
    group_by_meaning: bool = True
    exclude_noncommercial: bool = False
    base: str = "e5"  # "e5" (multilingual, v4) or "minilm" (English, v1-v3)
    vocab_size: int = 64000  # e5 only: pieces kept from the 250k XLM-R vocabulary, chosen on the corpus
    freeze_embeddings: bool = True
    checkpoint_every: int = 100  # steps between resumable checkpoints (an interrupted run resumes there)
    steps: int | None = None  # total optimiser steps, overriding epochs: size a run to a time budget
    output_repeat: int = 1  # copies of each output-stage training row (~11k output rows against ~80k input)
    system_prompt_pairs: int = 0  # input rows also shown behind a system prompt (system_prompts.py)
    context_layout: str = "marked"  # how an input row's context is encoded (encoding.py); "pair" = before v24
    split: str = "group-hash"  # how groups go to dev (dataset.assign_splits); "random" = runs before session 17
    authored_repeat: int = 1  # copies of each authored / --data input row (the concepts public data lacks)
    keep_out: list[Path] = field(default_factory=list)  # other runs' eval_rows.jsonl: kept out of training (dev)
    init_checkpoint: Path | None = None  # start from these weights (a finished run's checkpoint.pt), e.g. to
    # continue training on one stage or on your own data without starting from the base again
    average_from: int | None = None  # tail averaging: the final weights are the mean of the weights after step
    average_every: int = 200  # average_from and every average_every steps after it (see averaging.py)


def label_space(examples: Sequence[Example]) -> list[str]:
    """Binary heads in taxonomy order, then users' custom categories, then the response-class group."""
    base = list(dict.fromkeys(BINARY_HEADS["input"] + BINARY_HEADS["output"]))
    custom = sorted({k for ex in examples for k in ex.labels if k not in base})
    return base + custom + list(RESPONSE_CLASS_IDS)


def load_tokenizer(work: Path | None = None) -> Any:
    """The base's tokenizer: the run's own cut-vocabulary tokenizer (e5) when ``work`` holds one."""
    from tokenizers import Tokenizer

    path = work / "tokenizer.json" if work is not None and (work / "tokenizer.json").exists() else None
    tok = Tokenizer.from_file(str(path or base_model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encoding_config(cfg: TrainConfig) -> EncodingConfig:
    """Special ids of the base: XLM-R's <s>=0, <pad>=1, </s>=2 for e5; BERT's [CLS]/[SEP]/[PAD] for MiniLM."""
    if cfg.base == "e5":
        return EncodingConfig(
            max_length=cfg.max_length, cls_id=0, sep_id=2, pad_id=1, context_layout=cfg.context_layout
        )
    return EncodingConfig(max_length=cfg.max_length, context_layout=cfg.context_layout)


def vocab_keep(work: Path) -> list[int] | None:
    path = work / "vocab_keep.json"
    return json.loads(path.read_text()) if path.exists() else None


def encode_examples(tok: Any, examples: Sequence[Example], cfg: EncodingConfig) -> list[Window]:
    out: list[Window] = []
    for s in range(0, len(examples), 4096):
        chunk = examples[s : s + 4096]
        # an input row's prompt is its context (a system prompt an injection only breaks), laid out as
        # cfg.context_layout says; an output row's prompt is the one it answers
        prompts = [ex.prompt for ex in chunk]
        context = [ex.stage == "input" for ex in chunk]
        focus = [ex.focus for ex in chunk]  # a long row with a located part is cut around it (locate_evidence)
        wins = encode_windows(tok, [ex.text for ex in chunk], prompts, cfg, windows=False, context=context, focus=focus)
        out.extend(Window(w.item + s, w.ids, w.segments) for w in wins)
    return out


def targets(examples: Sequence[Example], labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(targets, mask, dna class or -1, weight) arrays; a head is masked when the source does not label it
    or the head is not scored on the example's stage."""
    idx = {lab: i for i, lab in enumerate(labels)}
    n_bin = len(labels) - len(RESPONSE_CLASS_IDS)
    y = np.zeros((len(examples), n_bin), np.float32)
    m = np.zeros((len(examples), n_bin), np.float32)
    dna = np.full(len(examples), -1, np.int64)
    w = np.ones(len(examples), np.float32)
    input_only = {"jailbreak"}
    output_only = {"harmful_response", "refusal"}
    for r, ex in enumerate(examples):
        for lab, v in ex.labels.items():
            if lab in RESPONSE_CLASS_IDS or lab not in idx:
                continue
            if (ex.stage == "input" and lab in output_only) or (ex.stage == "output" and lab in input_only):
                continue
            y[r, idx[lab]] = v
            m[r, idx[lab]] = 1.0
        if ex.response_class is not None:
            dna[r] = ex.response_class
        w[r] = ex.weight
    return y, m, dna, w


def oversample(train_ex: Sequence[Example], cfg: TrainConfig) -> list[Example]:
    """Training rows with repeats: each output row ``output_repeat`` times, each authored or user input row
    ``authored_repeat`` times (repeats, not just loss weight, so the rare rows get more optimiser steps)."""
    if cfg.output_repeat < 1 or cfg.authored_repeat < 1:
        raise ValueError("output_repeat and authored_repeat must be >= 1")
    out: list[Example] = []
    for ex in train_ex:
        if ex.stage == "output":
            out += [ex] * cfg.output_repeat
        elif ex.source.startswith(("authored", "user-")):
            out += [ex] * cfg.authored_repeat
        else:
            out.append(ex)
    return out


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed batches (little padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s : s + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _tensors(windows: Sequence[Window], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = pad_batch(windows, pad_id)
    return torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask), torch.from_numpy(b.token_type_ids)


def predict_logits(model: nn.Module, windows: Sequence[Window], batch_size: int = 64, pad_id: int = 0) -> np.ndarray:
    model.eval()
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].ids))
    out: np.ndarray | None = None
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            logits = model(*_tensors([windows[i] for i in idx], pad_id)).numpy()
            if out is None:
                out = np.zeros((len(windows), logits.shape[1]), np.float32)
            out[idx] = logits
    assert out is not None
    return out


def train(
    examples: Sequence[Example],
    labels: list[str],
    cfg: TrainConfig,
    log: Callable[[str], None] = print,
    work: Path | None = None,
) -> SafetyClassifier:
    """Fine-tune; with ``work``, save a resumable checkpoint every ``cfg.checkpoint_every`` steps and resume
    from one left by an interrupted run (same data, same config)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    enc_cfg = encoding_config(cfg)
    tok = load_tokenizer(work if cfg.base == "e5" else None)
    if cfg.steps is not None and cfg.steps < 1:
        raise ValueError("steps must be >= 1")
    if cfg.average_every < 1:
        raise ValueError("average_every must be >= 1")
    train_ex = oversample([ex for ex in examples if ex.split == "train"], cfg)
    windows = encode_examples(tok, train_ex, enc_cfg)
    y, m, dna, w = targets(train_ex, labels)
    n_bin = y.shape[1]
    pos = (y * m).sum(0)
    neg = ((1 - y) * m).sum(0)
    pos_weight = torch.tensor(np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, 4.0), dtype=torch.float32)

    model = SafetyClassifier(
        len(labels), cfg.layers, kind=cfg.base, keep=vocab_keep(work) if work else None,
        freeze_embeddings=cfg.freeze_embeddings,
    )  # fmt: skip
    if cfg.init_checkpoint is not None:
        model.load_state_dict(torch.load(cfg.init_checkpoint, weights_only=True))
        log(f"initialised from {cfg.init_checkpoint}")
    head_params = list(model.head.parameters())
    enc_params = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": enc_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.head_lr}],
        weight_decay=0.01,
        foreach=True,
    )
    lengths = [len(wi.ids) for wi in windows]
    steps_per_epoch = math.ceil(len(windows) / cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else max(1, int(steps_per_epoch * cfg.epochs))
    warm = max(1, int(total * cfg.warmup))
    if cfg.average_from is not None and not 1 <= cfg.average_from <= total:
        raise ValueError(f"average_from must be a step of the run (1..{total}), got {cfg.average_from}")
    average = WeightAverage()
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm))
    )
    bce = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pos_weight)
    ce = nn.CrossEntropyLoss(reduction="none")
    yt, mt, dt, wt = (torch.from_numpy(a) for a in (y, m, dna, w))
    log(f"training {len(windows)} examples, {len(labels)} labels, {total} steps, {cfg.layers} layers")
    step, t0, running, skip = 0, time.time(), 0.0, 0
    resume = work / "resume.pt" if work is not None else None
    if resume is not None and resume.exists():
        state = torch.load(resume, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, running = int(state["step"]), float(state["running"])
        # the epoch's batch order is rebuilt from the shuffler's state at the epoch's start and the batches
        # already trained are skipped, so a resumed run sees the same batches as one never interrupted
        # (checkpoints older than this, without "epoch_rng", start a fresh order)
        rng.setstate(state.get("epoch_rng", state["rng"]))
        skip = int(state.get("epoch_pos", 0))
        torch.set_rng_state(state["torch_rng"])
        split = state.get("split", "random")  # not recorded before session 17, when every split was random
        if split != cfg.split:
            raise ValueError(
                f"{resume} was trained on a --split {split} split, this run asks for {cfg.split}: resume with the "
                "run's own split or start again into an empty --out"
            )
        check_grouping(str(state.get("grouping", "batched")), cfg)  # not recorded before session 19
        if state.get("n_windows", len(windows)) != len(windows):
            raise ValueError(f"{resume} was written for {state['n_windows']} training windows, this run has "
                             f"{len(windows)}: the data changed; start again into an empty --out")  # fmt: skip
        recorded = state.get("context_layout")  # not recorded before v24: such a run goes on in this code's layout
        if recorded is not None and recorded != enc_cfg.context_layout:
            raise ValueError(
                f"{resume} was trained with --context-layout {recorded}, this run asks for {enc_cfg.context_layout}: "
                "resume with the run's own layout or start again into an empty --out"
            )
        if "average" in state:
            average.load(state["average"])
        wanted = [s for s in range(1, step + 1) if due(s, cfg.average_from, cfg.average_every)]
        if average.steps != wanted:
            raise ValueError(
                f"{resume} averaged the weights of steps {average.steps}; --average-from/--average-every "
                f"now ask for {wanted}: resume with the run's own options or start into an empty --out"
            )
        log(f"resumed from {resume} at step {step}/{total}")
    step0 = step
    model.train()
    while step < total:
        epoch_rng = rng.getstate()
        for pos, batch in enumerate(_batches(lengths, cfg.batch_size, rng)):
            if pos < skip:
                continue
            if step >= total:
                break
            idx = torch.tensor(batch)
            logits = model(*_tensors([windows[i] for i in batch], enc_cfg.pad_id))
            lb = bce(logits[:, :n_bin], yt[idx]) * mt[idx]
            loss_bin = (lb.sum(1) * wt[idx]).sum() / mt[idx].sum().clamp(min=1.0) * 4.0
            d = dt[idx]
            has = d >= 0
            loss = loss_bin
            if bool(has.any()):
                ld = ce(logits[has][:, n_bin:], d[has]) * wt[idx][has]
                loss = loss + 0.5 * ld.mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            lv = float(loss.detach())
            running = 0.98 * running + 0.02 * lv if step > 1 else lv
            if due(step, cfg.average_from, cfg.average_every):
                average.add(step, model.state_dict())
            if resume is not None and (step % cfg.checkpoint_every == 0 or step == total):
                tmp = resume.with_suffix(".tmp")
                torch.save(
                    {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "step": step, "running": running, "rng": rng.getstate(), "torch_rng": torch.get_rng_state(),
                     "average": average.state(), "epoch_rng": epoch_rng, "epoch_pos": pos + 1,
                     "n_windows": len(windows), "context_layout": enc_cfg.context_layout, "split": cfg.split,
                     "grouping": GROUPING},
                    tmp,
                )  # fmt: skip
                tmp.replace(resume)
            if step % 50 == 0 or step == total:
                el = (time.time() - t0) / max(1, step - step0)
                log(f"step {step}/{total} loss {running:.4f} {el:.2f}s/step eta {el * (total - step) / 60:.1f} min")
        skip = 0
    if average.steps:
        model.load_state_dict(average.result(model.state_dict()))
        log(f"weights: the mean of {len(average.steps)} states, steps {average.steps[0]}..{average.steps[-1]}")
    model.eval()
    return model


def save_checkpoint(model: SafetyClassifier, labels: list[str], cfg: TrainConfig, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "checkpoint.pt")
    meta = {"labels": labels, "config": config_meta(cfg), "grouping": GROUPING}
    (path / "train_meta.json").write_text(json.dumps(meta, indent=2))


def config_meta(cfg: TrainConfig) -> dict[str, Any]:
    """The run's settings as JSON values (``train_meta.json``): paths, and lists of paths, as strings."""

    def plain(v: object) -> object:
        if isinstance(v, Path):
            return str(v)
        return [plain(x) for x in v] if isinstance(v, list) else v

    return {k: plain(v) for k, v in asdict(cfg).items()}
