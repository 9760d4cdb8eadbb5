"""Speed/quality by depth of the multilingual base: how many mE5 layers to keep (issue 9, item 2).

    python benchmarks/layer_table.py --rows RUN/eval_rows.jsonl --vocab RUN/vocab_keep.json [--layers 2,3,4,6,8,12]

For each depth, one run on one machine: the int8 bare forward pass at 64 tokens and for the 36 windows of
128 tokens that a 4,000-token prompt becomes, both against the bare int8 pass of all-MiniLM-L6-v2 (the
budget's reference) measured in the same run; the int8 file size with the cut vocabulary; and quality as a
frozen linear probe (unsafe vs benign, ROC-AUC, English and other languages) on a run's recorded rows. The
probe is a proxy: fine-tuning adds about +0.1 AUC on top (benchmarks/quant_probe.py), but the ranking of
depths by what the frozen layers already encode is what a depth choice needs. Needs the [train] extra.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# torch's OpenMP threads spin after each op by default and would steal the cores from the timed child process
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model
from quant_probe import auc, embed, encoder, in_test, load_rows, probe_auc


def session(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def timings(path: Path, reps: int = 200) -> tuple[float, float]:
    """Median ms of one 64-token window, and of 36 windows of 128 tokens in sub-batches of 8."""
    sess = session(path)
    names = {i.name for i in sess.get_inputs()}
    rng = np.random.default_rng(0)

    def feed(b: int, n: int) -> dict[str, np.ndarray]:
        ids = rng.integers(1000, 20000, size=(b, n)).astype(np.int64)
        f = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {k: v for k, v in f.items() if k in names}

    f64, long = feed(1, 64), [feed(8, 128) for _ in range(4)] + [feed(4, 128)]
    for _ in range(10):
        sess.run(None, f64)
    t64 = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, f64)
        t64.append((time.perf_counter() - t) * 1000)
    t4k = []
    for _ in range(max(5, reps // 20)):
        t = time.perf_counter()
        for f in long:
            sess.run(None, f)
        t4k.append((time.perf_counter() - t) * 1000)
    return statistics.median(t64), statistics.median(t4k)


def timed_in_child(path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, "--time", str(path)], capture_output=True, text=True, check=True)
    a, b = out.stdout.split()[-2:]
    return float(a), float(b)


def export_depth(layers: int, keep: list[int], out: Path) -> Path:
    from guardrail.training import export
    from guardrail.training.model import SafetyClassifier

    model = SafetyClassifier(22, layers, kind="e5", keep=keep).eval()
    fp32 = export.export_onnx(model, out)
    q = export.quantize(fp32, out / f"l{layers}.onnx")
    fp32.unlink()
    return q


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=Path, default=None)
    ap.add_argument("--vocab", type=Path, default=None, help="vocab_keep.json of a run (the vocabulary cut)")
    ap.add_argument("--layers", default="2,3,4,6,8,12")
    ap.add_argument("--n", type=int, default=2400)
    ap.add_argument("--time", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time is not None:
        print(*timings(args.time))
        return 0
    if args.rows is None or args.vocab is None:
        ap.error("--rows and --vocab are required")
    import torch

    from guardrail.training.export import minilm_pooled_int8

    torch.set_num_threads(2)
    keep = json.loads(args.vocab.read_text())
    rows = load_rows(args.rows, args.n)
    y = np.array([1.0 if r["labels"]["unsafe"] >= 0.5 else 0.0 for r in rows])
    test = np.array([in_test(r) for r in rows])
    en = np.array([r["meta"].get("lang", "en") == "en" for r in rows])[test]
    texts = [r["text"] for r in rows]
    print(f"CPU: {cpu_model(flags=True)}")
    with tempfile.TemporaryDirectory() as tmp:
        # timed in a child process that never imports torch: in a process where torch ran, onnxruntime's
        # threads were 1.4x slower (the reference pass measured 5.7 vs 4.1 ms)
        depths = [int(x) for x in args.layers.split(",")]
        ref = minilm_pooled_int8(Path(tmp) / "minilm.onnx")
        files = {d: export_depth(d, keep, Path(tmp)) for d in depths}
        ref64, ref4k = timed_in_child(ref)
        times = {d: timed_in_child(q) for d, q in files.items()}
        print(f"reference: bare int8 all-MiniLM-L6-v2, 64 tokens {ref64:.2f} ms; 36x128 tokens {ref4k:.0f} ms\n")
        print("| layers | int8 MB | 64-tok ms (x MiniLM) | 36x128 ms (x own 64-tok) | probe AUC all / en / other |")
        print("|---|---|---|---|---|")
        for layers in depths:
            size = files[layers].stat().st_size / 1e6
            t64, t4k = times[layers]
            model, f = encoder(layers, None)
            s = probe_auc(embed(model, f, texts), y, test)
            yt = y[test]
            a, e, o = auc(s, yt), auc(s[en], yt[en]), auc(s[~en], yt[~en])
            print(
                f"| {layers} | {size:.1f} | {t64:.2f} ({t64 / ref64:.2f}x) | {t4k:.0f} ({t4k / t64:.1f}x) | "
                f"{a:.3f} / {e:.3f} / {o:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
