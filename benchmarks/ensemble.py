"""The no-regret ensemble on a labelled stream in which one expert degrades half-way.

Stream: ToxicChat (../shared/data/toxicchat-train; real user prompts, human toxicity labels, ~13%
positive) in a fixed shuffled order, truth = ``unsafe``. Experts:

- ``model``: the bundled ONNX model's ``unsafe`` score (scored once, in batches);
- ``reviewer``: a strong but noisy expert (the truth, blurred) that *degrades* half-way through the
  stream (its answers become inverted), as a drifting upstream judge might;
- ``prior``: always says the base rate (a weak, constant baseline).

Hedge (``guardrail.ensemble``) learns from every label as it arrives. Printed: the cumulative loss
(absolute error) of the ensemble, of each expert and of the best single expert in hindsight, and the
average regret per step at checkpoints; with matplotlib, a plot of the cumulative losses.

    python benchmarks/ensemble.py --limit 400 --out ensemble.png     # a quick look
    python benchmarks/ensemble.py --out ensemble.png                 # the full stream (needs an idle machine)

The stream is read from ../shared/data (next to this repository), or from ``--data FILE``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "toxicchat-train" / "toxic_chat_train_dedup_vs_holdout.json"


def load_stream(path: Path, limit: int | None, seed: int) -> list[tuple[str, float]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    rows = [(str(r["instance"]), float(r["annotations"]["toxicity"]["majority_human"])) for r in raw["instances"]]
    random.Random(seed).shuffle(rows)
    return rows[:limit] if limit else rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows of the shuffled stream")
    ap.add_argument("--eta", type=float, default=None, help="Hedge rate (default: sqrt(8 ln N / T))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the cumulative-loss plot here (PNG; needs matplotlib)")
    ap.add_argument("--data", type=Path, default=DATA, help="the ToxicChat JSON (default: in ../shared/data)")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"ensemble.py: {args.data}: not found (the ToxicChat stream from ../shared/data; "
              "or pass --data FILE)", file=sys.stderr)  # fmt: skip
        return 2

    from guardrail.classifiers.onnx import OnnxClassifier, bundled_model_dir
    from guardrail.ensemble import Ensemble
    from guardrail.scoring_form import scoring_form
    from guardrail.testing import FakeClassifier

    stream = load_stream(args.data, args.limit, args.seed)
    T = len(stream)
    model = OnnxClassifier(bundled_model_dir())
    texts = [scoring_form(t) for t, _ in stream]
    model_scores = []
    for i in range(0, T, 32):
        model_scores += [s["unsafe"] for s in model.predict(texts[i : i + 32], stage="input")]
    base_rate = sum(y for _, y in stream) / max(1, T)
    rng = random.Random(args.seed + 1)
    names = ("model", "reviewer", "prior")
    eta = args.eta or math.sqrt(8 * math.log(len(names)) / max(1, T))
    experts = [FakeClassifier(name=n, labels=["unsafe"]) for n in names]  # names only: scores come from the stream
    ens = Ensemble(experts, eta=eta)
    cum = dict.fromkeys((*names, "ensemble"), 0.0)
    curves: dict[str, list[float]] = {k: [] for k in cum}
    for t, ((_, y), m) in enumerate(zip(stream, model_scores, strict=True)):
        blurred = min(1.0, max(0.0, y + rng.gauss(0, 0.15)))
        reviewer = blurred if t < T // 2 else 1.0 - blurred  # degrades half-way
        per = {"model": {"unsafe": m}, "reviewer": {"unsafe": reviewer}, "prior": {"unsafe": base_rate}}
        (pred,) = ens.combine({n: [s] for n, s in per.items()}, 1)
        cum["ensemble"] += abs(pred["unsafe"] - y)
        for n in names:
            cum[n] += abs(per[n]["unsafe"] - y)
        for k, v in cum.items():
            curves[k].append(v)
        ens.learn(per, {"unsafe": y})
    best = min(names, key=lambda n: cum[n])
    print(
        f"stream: ToxicChat, {T} prompts, {base_rate:.1%} unsafe; eta {eta:.4f}; 'reviewer' degrades at step {T // 2}"
    )
    print(f"{'step':>6} {'ensemble':>10} " + " ".join(f"{n:>10}" for n in names) + f" {'regret/step':>12}")
    for t in sorted({max(0, T * k // 10 - 1) for k in range(1, 11)}):
        regret = (curves["ensemble"][t] - curves[best][t]) / (t + 1)
        row = " ".join(f"{curves[n][t]:>10.1f}" for n in names)
        print(f"{t + 1:>6} {curves['ensemble'][t]:>10.1f} {row} {regret:>12.4f}")
    bound = math.sqrt(T * math.log(len(names)) / 2)
    print(f"\nbest expert in hindsight: {best} ({cum[best]:.1f}); ensemble {cum['ensemble']:.1f}; "
          f"regret {cum['ensemble'] - cum[best]:.1f} (Hedge bound sqrt(T ln N / 2) = {bound:.1f})")  # fmt: skip
    print("final weights: " + ", ".join(f"{n} {w:.3f}" for n, w in ens.weights["unsafe"].items()))
    if args.out:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot (pip install 'guardrail-sdk[eval]')", file=sys.stderr)
            return 0
        fig, ax = plt.subplots(figsize=(8, 5))
        for k in (*names, "ensemble"):
            ax.plot(range(1, T + 1), curves[k], label=k, linewidth=2.5 if k == "ensemble" else 1.2)
        ax.plot(range(1, T + 1), curves[best], "k--", linewidth=0.8, label=f"best in hindsight ({best})")
        ax.axvline(T // 2, color="grey", linestyle=":", label="reviewer degrades")
        ax.set_xlabel("step (labelled prompt)")
        ax.set_ylabel("cumulative absolute loss")
        ax.set_title("Hedge ensemble on ToxicChat: cumulative loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)
        print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
