"""Read an exported model folder back into a finished training run, so ``--continue-from`` can start from it.

Why: a model folder (the bundled one included) ships int8 ONNX weights and a tokenizer, never the torch
checkpoint it was exported from. Extending the shipped model on your own data, or continuing the project's
recipe from the bundled weights when the original checkpoint is gone, needs those weights back in torch.

What comes back, and how close it is:
- every quantised matrix (per-channel int8) and every float tensor, read by the ONNX node that uses it
  (``/encoder/encoder/layer.3/attention/self/query/MatMul_quant`` is ``...layer.3.attention.self.query``);
- the word embeddings are the base model's rows (they are frozen in training, so the base file holds them
  exactly); the folder's dequantised rows must match them within one quantisation step, or the folder was
  not trained from this base and is refused;
- the vocabulary cut is read from the folder's tokenizer (its pieces, in id order, in the full vocabulary).

The run's dev and held-out rows are rebuilt from its recorded settings (seed, data root) with the data as it
is now, by its recorded split method (``recorded_split``: "random" for folders from before it was recorded). That
is the folder's own split only if the data and the build code are those it was trained with: under the random
method the dev groups are a random sample of all groups, so one group more or less reshuffles most of the split, and
the folder's model would have trained on most of the "dev" rows. Otherwise rebuild the split at the folder's commit
and pass it with ``--eval-rows``. (For the bundled v10 the rebuild today and at its commit, 66b6868, give the
same 16,434 rows; v10 also kept v4's recorded rows out, which are lost, so they are not among them.)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.classifiers.onnx import ModelInfo

__all__ = [
    "is_model_folder", "keep_from_tokenizer", "onnx_weights", "read_weights", "recorded_split", "stale_start", "unpack",
]  # fmt: skip

# settings a folder's metrics.json records as strings; these decide the weights' shape or the data split
_SETTINGS: dict[str, Callable[[str], object]] = {
    "layers": int, "base": str, "max_length": int, "vocab_size": int, "seed": int,
    "exclude_noncommercial": lambda s: s == "True", "group_by_meaning": lambda s: s == "True",
}  # fmt: skip


def is_model_folder(path: Path) -> bool:
    """An exported folder (no torch checkpoint) rather than a training run."""
    return (path / "model.onnx").is_file() and not (path / "checkpoint.pt").is_file()


def _settings(folder: Path) -> dict[str, object]:
    try:
        doc = json.loads((folder / "metrics.json").read_text())
        recorded = doc["config"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{folder}: metrics.json with the run's config is needed to continue from it ({exc})") from exc
    out = {k: parse(str(recorded[k])) for k, parse in _SETTINGS.items() if k in recorded}
    # the layout its weights read context in, as the runtime reads it ("pair" for folders from before it was kept)
    labelled = (folder / "labels.json").is_file()
    out["context_layout"] = ModelInfo.load(folder).encoding.context_layout if labelled else "pair"
    out["split"] = recorded_split(folder)
    if "split_seed" in doc:  # a continuation is measured on its start's split, not on its own --seed's
        out["seed"] = int(doc["split_seed"])
    if out.get("base") != "e5":
        raise ValueError(f"{folder}: only e5-based folders can be read back (base {out.get('base')!r})")
    return out


def recorded_split(folder: Path) -> str:
    """How the model in ``folder`` (a model folder or a run) had its dev split drawn: what its record says, else
    "random", the method of every run before the method was recorded. A rebuilt dev split must use it, or the rows
    a model is measured on are mostly rows it trained on."""
    for name in ("metrics.json", "train_meta.json"):
        try:
            config = json.loads((folder / name).read_text())["config"]
        except (OSError, KeyError, ValueError):
            continue
        return str(config.get("split", "random"))
    return "random"


def _labels(folder: Path) -> list[str]:
    doc = json.loads((folder / "labels.json").read_text())
    return [h["id"] for h in sorted(doc["labels"], key=lambda h: int(h["index"]))]


def keep_from_tokenizer(tokenizer_json: Path, pieces: list[str]) -> list[int]:
    """The full-vocabulary index of each of the folder's pieces, in the folder's id order."""
    vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    where = {p: i for i, p in enumerate(pieces)}
    missing = [p for p, _ in vocab if p not in where]
    if missing:
        raise ValueError(f"{tokenizer_json}: {len(missing)} pieces are not in the base vocabulary, e.g. {missing[:3]}")
    return [where[p] for p, _ in vocab]


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight of an exported classifier, dequantised, under its torch name and in torch's layout."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out: dict[str, np.ndarray] = {}
    for name, value in inits.items():
        if value.dtype == np.float32 and not name.endswith("_scale") and not name.startswith("onnx::"):
            out[name] = value
    for node in graph.node:
        if node.op_type == "MatMulInteger":  # y = x @ W: W[in, out], per-channel over out
            weight = node.input[1].removesuffix("_quantized")
            q, zero, scale = inits[node.input[1]], inits[weight + "_zero_point"], inits[weight + "_scale"]
            w = (q.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)
            module = node.name.removesuffix("_quant").removesuffix("/MatMul").removesuffix("/Gemm_MatMul")
            out[module.strip("/").replace("/", ".") + ".weight"] = np.ascontiguousarray(w.T)
    for name, q in inits.items():  # Gather-quantised embedding tables: per tensor
        if name.endswith("_quantized") and not name.startswith(("onnx::", "head.")):
            base = name.removesuffix("_quantized")
            zero, scale = inits[base + "_zero_point"], inits[base + "_scale"]
            out[base] = (q.astype(np.float32) - np.float32(zero)) * np.float32(scale)
    return out


def read_weights(folder: Path) -> tuple[Any, list[str], list[int], dict[str, object]]:
    """The folder's classifier as a torch model, with its labels, vocabulary cut and recorded settings."""
    import torch

    from guardrail.training import e5base
    from guardrail.training.model import SafetyClassifier

    settings = _settings(folder)
    labels = _labels(folder)
    f = e5base.read()
    keep = keep_from_tokenizer(folder / "tokenizer.json", f.pieces)
    model = SafetyClassifier(len(labels), int(str(settings["layers"])), kind="e5", keep=keep)
    state: dict[str, Any] = model.state_dict()
    read = onnx_weights(folder / "model.onnx")
    word = "encoder.embeddings.word_embeddings.weight"
    step = float(np.abs(read[word]).max()) / 127.0
    drift = float(np.abs(read.pop(word) - state[word].numpy()).max())
    if drift > step:
        raise ValueError(f"{folder}: its word embeddings are not the base model's (off by {drift:.4f})")
    missing = sorted(set(state) - set(read) - {word})
    unknown = sorted(set(read) - set(state))
    if missing or unknown:
        raise ValueError(f"{folder}: weights missing {missing[:4]}, unexpected {unknown[:4]}")
    for name, value in read.items():
        if tuple(value.shape) != tuple(state[name].shape):
            raise ValueError(f"{folder}: {name} has shape {value.shape}, expected {tuple(state[name].shape)}")
        state[name] = torch.from_numpy(value.copy())
    model.load_state_dict(state)
    return model, labels, keep, settings


def stale_start(start: Path, folder: Path, eval_rows_file: Path | None) -> str | None:
    """Why an earlier read-back in ``start`` is not the one asked for now (another folder, other eval rows),
    or None when it can be reused."""
    meta = json.loads((start / "train_meta.json").read_text()).get("read_back_from", {})

    def same(recorded: object, given: Path | None) -> bool:
        if not recorded or given is None:
            return not recorded and given is None
        return Path(str(recorded)).resolve() == given.resolve()

    if not same(meta.get("folder"), folder):
        return f"holds a read-back of {meta.get('folder')!r}, not of {str(folder)!r}"
    if not same(meta.get("eval_rows"), eval_rows_file):
        was, now = meta.get("eval_rows") or "rebuilt", str(eval_rows_file or "rebuilt")
        return f"was measured on eval rows {was!r}, not {now!r}"
    return None


def unpack(
    folder: Path, out: Path, data_root: Path, log: Callable[[str], None] = print, *, eval_rows_file: Path | None = None
) -> Path:
    """Write ``out`` as a finished run of ``folder``'s weights: checkpoint.pt, train_meta.json, the vocabulary
    and tokenizer, and eval_rows.jsonl: ``eval_rows_file`` (rows the folder's model never trained on) if given,
    else its dev and held-out rows rebuilt from its recorded seed and today's data. Returns ``out``."""
    from guardrail.training import eval_rows, train
    from guardrail.training.pipeline import build_examples

    model, labels, keep, settings = read_weights(folder)
    cfg = train.TrainConfig(data_root=data_root, out_dir=out, **settings)  # type: ignore[arg-type]
    train.save_checkpoint(model, labels, cfg, out)
    meta = json.loads((out / "train_meta.json").read_text())
    # the settings above are what shapes the weights and the split; the folder's own record is kept beside them
    recorded = json.loads((folder / "metrics.json").read_text())["config"]
    rows = str(eval_rows_file.resolve()) if eval_rows_file else ""
    meta["read_back_from"] = {"folder": str(folder.resolve()), "config": recorded, "eval_rows": rows}
    (out / "train_meta.json").write_text(json.dumps(meta, indent=2))
    (out / "vocab_keep.json").write_text(json.dumps(keep))
    shutil.copy(folder / "tokenizer.json", out / "tokenizer.json")
    log(f"read {folder} back into {out}: its weights, vocabulary and settings (seed {cfg.seed})")
    if eval_rows_file is not None:
        evaluated = eval_rows.read(eval_rows_file)
        log(f"its dev and held-out rows: {len(evaluated)} rows from {eval_rows_file}")
    else:
        examples = build_examples(cfg, log)
        evaluated = [e for e in examples if e.split in ("dev", "holdout")]
        log(f"rebuilt its dev and held-out rows: {len(evaluated)} rows")
    eval_rows.record(out, evaluated)
    return out
