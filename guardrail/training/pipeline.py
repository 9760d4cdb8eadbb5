"""data -> train -> ONNX int8 -> parity check -> calibration -> labels.json + metrics + model card.

Every number in the model card is computed here, on the int8 model that ships, through the runtime
classifier (the same windowing and aggregation users get), never on the fp32 training graph.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.classifiers.encoding import EncodingConfig
from guardrail.classifiers.onnx import OnnxClassifier
from guardrail.taxonomy import BY_ID, RESPONSE_CLASS_IDS
from guardrail.training import eval_rows
from guardrail.training.dataset import GROUPING, check_grouping
from guardrail.training.examples import Example
from guardrail.training.measure import (
    calibrate_heads,
    int8_parity,
    language_metrics,
    score_examples,
    set_metrics,
)
from guardrail.training.sources import SOURCES, read_labelled_jsonl


def model_name(layers: int, base: str = "minilm") -> str:
    return f"guardrail-{'me5' if base == 'e5' else 'minilm'}-l{layers}"


def write_model_folder(
    out: Path,
    onnx_path: Path,
    labels: list[str],
    heads: dict[str, dict[str, object]],
    enc: EncodingConfig,
    name: str,
    extra: dict[str, object] | None = None,
) -> None:
    """``extra``: more top-level keys of labels.json (``scripts`` and ``languages`` measured)."""
    out.mkdir(parents=True, exist_ok=True)
    if onnx_path != out / "model.onnx":
        shutil.copy(onnx_path, out / "model.onnx")
    entries = []
    for i, lab in enumerate(labels):
        info = BY_ID.get(lab)
        stages = list(info.stages) if info else ["input", "output"]
        entry: dict[str, object] = {
            "id": lab,
            "index": i,
            "stages": stages,
            "kind": "softmax" if lab in RESPONSE_CLASS_IDS else "sigmoid",
            "description": info.description if info else "custom category",
        }
        entry.update(heads.get(lab, {"threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0}}))
        entries.append(entry)
    from guardrail.training.int8 import weight_bits

    bits = weight_bits(out / "model.onnx")  # 7: no CPU saturates them (classifiers/cpu.py); read, not assumed
    doc: dict[str, object] = {
        "name": name, "encoding": asdict(enc), "weight_bits": bits, "labels": entries, **(extra or {})
    }  # fmt: skip
    (out / "labels.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))


def build_examples(cfg: Any, log: Callable[[str], None] = print) -> list[Example]:
    """The run's rows: the public sources and the user's ``extra_data``, grouped by meaning (embeddings cached
    next to ``out_dir``, so a resumed or continued run rebuilds the same split cheaply)."""
    from guardrail.training import dataset

    extra: list[Example] = []
    for path in cfg.extra_data:
        extra += list(read_labelled_jsonl(Path(path), source=f"user-{Path(path).stem}"))
    embed = _embedder(cfg.threads, Path(cfg.out_dir).parent / ".cache") if cfg.group_by_meaning else None
    examples = dataset.build(
        Path(cfg.data_root), embed, seed=cfg.seed, limit=cfg.limit, extra=extra,
        exclude_restricted=cfg.exclude_noncommercial, split=cfg.split, log=log,
    )  # fmt: skip
    if cfg.keep_out:
        eval_rows.keep_out(examples, cfg.keep_out, log)
    if cfg.system_prompt_pairs:  # last: pairs of the final training rows only (see system_prompts.py)
        from guardrail.training.system_prompts import system_prompt_variants

        pairs = system_prompt_variants(examples, n=cfg.system_prompt_pairs, seed=cfg.seed)
        log(f"system-prompt pairs: {len(pairs)} training rows shown again behind a system prompt")
        examples += pairs
    return examples


def run(cfg_dict: dict[str, object] | None = None, log: Callable[[str], None] = print) -> Path:
    """The whole pipeline; returns the finished model folder."""
    import torch

    from guardrail.training import export, train

    cfg = train.TrainConfig(**(cfg_dict or {}))  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    examples = build_examples(cfg, log)
    labels = train.label_space(examples)
    work = Path(cfg.out_dir)
    work.mkdir(parents=True, exist_ok=True)
    if cfg.base == "e5":
        prepare_e5(examples, cfg, work, log)
    model = train.train(examples, labels, cfg, log=log, work=work)
    train.save_checkpoint(model, labels, cfg, work)

    log("exporting to ONNX and quantising to int8")
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    export.copy_tokenizer(work)

    return finalize(work, examples, labels, cfg, log=log, t0=t0)


def _same_split(recorded: str, cfg: Any, grouping: str = GROUPING) -> None:
    """The run's weights were trained on the split ``recorded`` names, grouped the ``grouping`` way: finishing it
    on another would measure and calibrate it on rows it trained on."""
    if recorded != cfg.split:
        raise ValueError(f"{cfg.out_dir} was trained on a --split {recorded} split; finish it with --split {recorded}")
    check_grouping(grouping, cfg)


def from_checkpoint(cfg_dict: dict[str, object], log: Callable[[str], None] = print) -> Path:
    """Export and finalise the weights an interrupted or stopped run left in ``out_dir`` (its finished
    ``checkpoint.pt``, else the last resumable ``resume.pt``), rebuilding the same data split (same seed and
    embedding cache), so a run cut short by a deadline still yields a measured model folder."""
    import torch

    from guardrail.training import export, train
    from guardrail.training.averaging import WeightAverage
    from guardrail.training.model import SafetyClassifier
    from guardrail.training.unpack import recorded_split

    cfg = train.TrainConfig(**cfg_dict)  # type: ignore[arg-type]
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.out_dir)
    examples = build_examples(cfg, log)
    labels = train.label_space(examples)
    model = SafetyClassifier(len(labels), cfg.layers, kind=cfg.base, keep=train.vocab_keep(work))
    if (work / "checkpoint.pt").exists():
        state = torch.load(work / "checkpoint.pt", weights_only=True)
        log("weights: checkpoint.pt (finished run)")
        meta = json.loads((work / "train_meta.json").read_text()) if (work / "train_meta.json").exists() else {}
        _same_split(recorded_split(work), cfg, str(meta.get("grouping", "batched")))
    else:
        full = torch.load(work / "resume.pt", weights_only=False)
        # neither was recorded before its method changed
        _same_split(str(full.get("split", "random")), cfg, str(full.get("grouping", "batched")))
        state = full["model"]
        log(f"weights: resume.pt at step {full['step']}")
        if full.get("average", {}).get("steps"):  # a cut-short averaging run: the mean of what it collected
            average = WeightAverage()
            average.load(full["average"])
            state = average.result(state)
            log(f"weights: the mean of the {len(average.steps)} states of steps {average.steps} in resume.pt")
    model.load_state_dict(state)
    train.save_checkpoint(model, labels, cfg, work)
    fp32 = export.export_onnx(model, work)
    export.quantize(fp32, work / "model.onnx")
    export.copy_tokenizer(work)
    return finalize(work, examples, labels, cfg, log=log, t0=t0)


def finalize(
    work: Path,
    examples: Sequence[Example],
    labels: list[str],
    cfg: Any,
    *,
    log: Callable[[str], None] = print,
    t0: float | None = None,
    parity: dict[str, float] | None = None,
) -> Path:
    """Score dev/held-out with the int8 model, check parity, calibrate, write labels.json, metrics and card.

    Separate from training so a model folder can be re-calibrated (new dev data, a fixed calibration)
    without retraining.
    """
    t0 = time.time() if t0 is None else t0
    from guardrail.training.train import encoding_config

    base = str(getattr(cfg, "base", "minilm"))
    enc = encoding_config(cfg)  # the layout the weights were trained in, for every base
    name = model_name(int(cfg.layers), base)
    identity: dict[str, dict[str, object]] = {
        lab: {"threshold": 0.5, "calibration": {"a": 1.0, "b": 0.0}} for lab in labels
    }
    write_model_folder(work, work / "model.onnx", labels, identity, enc, name)
    evaluated = [e for e in examples if e.split in ("dev", "holdout")]
    eval_rows.record(work, evaluated)
    clf = OnnxClassifier(work)
    t_eval = time.time()
    logits = score_examples(clf, evaluated)
    log(f"scored {len(evaluated)} dev/held-out examples with the int8 model in {time.time() - t_eval:.0f}s")
    if parity is None and (work / "model.fp32.onnx").exists():
        parity = int8_parity(work, evaluated, labels, logits)
        log(f"parity fp32 vs int8: {parity}")
    elif parity is None and (work / "metrics.json").exists():
        parity = json.loads((work / "metrics.json").read_text()).get("parity")

    log("calibrating (Platt per head, thresholds on hard negatives):")
    heads, metrics = calibrate_heads(labels, evaluated, logits, log)
    write_model_folder(work, work / "model.onnx", labels, heads, enc, name)
    clf = OnnxClassifier(work)
    sets = set_metrics(clf, evaluated, logits, heads)
    for k, v in sets.items():
        log(f"  {k}: {v}")
    languages, scripts = language_metrics(evaluated, logits, heads, labels)
    for lang, v in languages.items():
        log(f"  language {lang}: {v}")
    log(f"  scripts measured: {scripts}")
    extra: dict[str, object] = {}
    if base == "e5":
        # the runtime's unsupported_language check reads these; v3 (MiniLM) states none, so it is never applied
        extra.update(scripts=scripts, languages=languages)
    context = choose_context_reading(clf, evaluated)
    if context is not None:  # how the runtime reads a text with its system prompt (training/context_gate.py)
        extra["context_reading"] = context[0]
        log(f"  context reading: {context[0]} {context[1]}")
    if extra:
        write_model_folder(work, work / "model.onnx", labels, heads, enc, name, extra)
        clf = OnnxClassifier(work)
    counts = Counter((e.source, e.split) for e in examples)
    summary = {
        "name": name,
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "heads": metrics,
        "sets": sets,
        "languages": languages,
        "scripts": scripts,
        "parity": parity or {},
        "context_reading": {"chosen": context[0], "measured": context[1]} if context is not None else None,
        "data": {f"{s}|{sp}": n for (s, sp), n in sorted(counts.items(), key=str)},
        "sources": [
            {"name": s.name, "licence": s.licence, "cap": s.cap, "weight": s.weight, "holdout": s.holdout}
            for s in SOURCES
        ],
        "minutes": round((time.time() - t0) / 60, 1),
    }
    (work / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    from guardrail.training.card import write_card

    write_card(work, summary)
    (work / "model.fp32.onnx").unlink(missing_ok=True)
    log(f"done in {summary['minutes']} min: {work}")
    return work


def choose_context_reading(
    clf: OnnxClassifier, evaluated: Sequence[Example]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The model's ``context_reading`` chosen on its dev rows behind the held-out system prompts (training/
    context_gate.py; ``{"enabled": False}`` when it cannot be shown safe). None for a model without a jailbreak head."""
    from guardrail.training import context_gate
    from guardrail.training.system_prompts import FOLDER, read_prompts

    prompts = read_prompts("heldout") if (FOLDER / "heldout.jsonl").is_file() else []
    return context_gate.choose(clf, evaluated, prompts)


def prepare_e5(examples: Sequence[Example], cfg: Any, work: Path, log: Callable[[str], None] = print) -> None:
    """Choose the kept vocabulary on the corpus and write the run's tokenizer (kept if already there, so an
    interrupted run resumes with the same ids)."""
    from guardrail.training import e5base

    if (work / "vocab_keep.json").exists() and (work / "tokenizer.json").exists():
        log("e5 base: reusing the vocabulary cut in " + str(work))
        return
    f = e5base.read()
    texts: list[str] = []
    for e in examples:
        texts.append(e.text)
        if e.prompt:
            texts.append(e.prompt)
    texts += list(e5base.extra_corpus(Path(cfg.data_root)))
    counts = e5base.piece_counts(f, texts)
    keep = e5base.choose_vocab(f, counts, int(cfg.vocab_size))
    covered = counts[keep].sum() / max(1, counts.sum())
    log(f"e5 base: kept {len(keep)} of {len(f.pieces)} pieces, covering {covered:.4f} of corpus tokens")
    (work / "vocab_keep.json").write_text(json.dumps([int(i) for i in keep]))
    e5base.build_tokenizer(f, keep).save(str(work / "tokenizer.json"))


def _embedder(threads: int, cache_dir: Path) -> Callable[[Sequence[str]], np.ndarray]:
    """Sentence embeddings of the full base encoder (mean pooling) for grouping near-duplicates.

    Runs an int8 ONNX export of the base model (about 5x faster than torch on 2 cores) and caches
    vectors by text hash, so a re-run only embeds new rows. Each text is embedded alone: the int8 graph
    quantises its activations with one range per run, so a text batched with others got a vector that
    depended on which texts were still uncached beside it, and a split rebuilt with another cache history
    could group rows differently.
    """
    from guardrail.classifiers.encoding import encode_windows, pad_batch
    from guardrail.training.examples import text_key
    from guardrail.training.export import minilm_pooled_int8
    from guardrail.training.int8 import exact_session
    from guardrail.training.train import load_tokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = minilm_pooled_int8(cache_dir / "base-encoder.int8.onnx")
    sess = exact_session(onnx_path, threads)  # the same vectors, so the same groups, on every CPU
    tok = load_tokenizer()
    cfg = replace(EncodingConfig(), max_length=64)
    # not embeddings.npz (a saturating CPU computed some) nor embeddings-exact.npz (texts embedded in batches)
    cache_file = cache_dir / "embeddings-alone.npz"
    cache: dict[str, np.ndarray] = dict(np.load(cache_file)) if cache_file.exists() else {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values())
        wins = encode_windows(tok, [texts[i] for i in todo], None, cfg, windows=False)
        for w in wins:  # one text per run (see above)
            b = pad_batch([w])
            (emb,) = sess.run(["emb"], {"input_ids": b.input_ids, "attention_mask": b.attention_mask,
                                        "token_type_ids": b.token_type_ids})  # fmt: skip
            cache[keys[todo[w.item]]] = emb[0].astype(np.float16)
        if todo:
            np.savez(cache_file, **cache)  # type: ignore[arg-type]
        return np.stack([cache[k].astype(np.float32) for k in keys])

    return embed
