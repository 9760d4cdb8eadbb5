"""The int8 weight format of exported models: how wide the weights are, narrowing them, and exact sessions.

onnxruntime multiplies uint8 activations by int8 weights. On a CPU with VNNI the products are summed exactly; on
one with AVX2 only (vpmaddubsw) each pair of products is summed in 16 bits and saturates past 32,767, which 8-bit
weights reach (255 x 127 x 2). Measured on the bundled v19b (8-bit) on an AMD EPYC without VNNI: the challenge
suite's English unsafe recall 0.872 where the VNNI machine it was measured on gave 0.892, and logits up to 0.92
apart on random inputs. 7-bit weights (at most 64 in size) keep a pair within 255 x 64 x 2 = 32,640, so every
CPU computes the exact result: training exports them (``export.quantize``), ``narrow_weights`` turns an older
8-bit file into one, and ``exact_session`` runs an 8-bit file exactly where a result must not depend on the CPU.

Needs ``onnx`` (the [train] extra), not torch; the runtime never imports it. Narrow an older model folder with
``python -m guardrail.training.int8 OLD_FOLDER NEW_FOLDER``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["exact_session", "narrow_folder", "narrow_weights", "weight_bits"]


def _integer_matmuls(graph: Any) -> tuple[dict[str, Any], list[Any]]:
    """The graph's initializers by name, and its MatMulInteger nodes whose weight (input 1) is one of them and
    that carry both zero points (the layout quantize_dynamic writes)."""
    inits = {i.name: i for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "MatMulInteger" and len(n.input) == 4 and n.input[1] in inits]
    return inits, nodes


def exact_session(path: Path, threads: int) -> Any:
    """An onnxruntime session of an int8 model (8-bit weights) that computes exactly on every CPU: each
    MatMulInteger's int8 weights and zero point are given as uint8 shifted by 128 (the same numbers), which
    onnxruntime multiplies without the 16-bit saturation of its uint8 x int8 kernel on AVX2-only CPUs (see the
    module docstring). About 15% slower there; used where a result must not depend on the machine (grouping
    training rows by meaning: a split rebuilt on another CPU must be the same split)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    inits, nodes = _integer_matmuls(onnx.load(str(path)).graph)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    values = []
    shifted: set[str] = set()
    for node in nodes:
        for name in (node.input[1], node.input[3]):
            if name not in inits:
                continue
            arr = numpy_helper.to_array(inits[name])
            if arr.dtype == np.int8 and name not in shifted:  # a weight two nodes share is given once
                shifted.add(name)
                value = ort.OrtValue.ortvalue_from_numpy(np.asarray((arr.astype(np.int16) + 128).astype(np.uint8)))
                values.append(value)  # the session reads them at creation; kept alive beside it
                so.add_initializer(name, value)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess._guardrail_exact_weights = values
    return sess


def weight_bits(path: Path) -> int:
    """7 when every int8 weight matrix of the model fits in 7 bits (at most 64 in size: no CPU saturates), else 8.
    Recorded in labels.json so the runtime can tell an older folder on a CPU where it would saturate."""
    import onnx
    from onnx import numpy_helper

    inits, nodes = _integer_matmuls(onnx.load(str(path)).graph)
    for node in nodes:
        weights = numpy_helper.to_array(inits[node.input[1]])
        if weights.dtype == np.int8 and int(np.abs(weights.astype(np.int16)).max()) > 64:
            return 8
    return 7


def narrow_weights(src: Path, out: Path) -> int:
    """Write ``src`` (an int8 model with 8-bit weights, as exported before 7-bit weights) to ``out`` with every
    matrix's weights halved onto the 7-bit grid and its scale doubled, so it scores the same on every CPU. Each
    weight moves by at most one step of the old grid. Returns the number of matrices changed. How the bundled
    v19b became 7-bit: its torch checkpoint was lost, so its 8-bit weights are what there is to narrow."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    inits, nodes = _integer_matmuls(model.graph)
    changed = 0
    done: set[str] = set()
    for node in nodes:
        weights = numpy_helper.to_array(inits[node.input[1]])
        scale_name = node.input[1].removesuffix("_quantized") + "_scale"
        if weights.dtype != np.int8 or np.abs(weights.astype(np.int16)).max() <= 64 or node.input[1] in done:
            continue  # already narrow (a weight two nodes share is narrowed once)
        if scale_name not in inits:
            raise ValueError(
                f"{src}: no scale {scale_name!r} for {node.input[1]}: not a layout quantize_dynamic writes"
            )
        if numpy_helper.to_array(inits[node.input[3]]).any():
            raise ValueError(f"{src}: {node.input[1]} has a non-zero zero point; only symmetric weights narrow")
        narrow = np.rint(weights.astype(np.float32) / 2).astype(np.int8)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(narrow, node.input[1]))
        scale = numpy_helper.to_array(inits[scale_name])
        inits[scale_name].CopyFrom(numpy_helper.from_array((scale * 2).astype(scale.dtype), scale_name))
        done.add(node.input[1])
        changed += 1
    onnx.save(model, str(out))
    return changed


def narrow_folder(src: Path, out: Path) -> int:
    """Copy the model folder ``src`` to ``out`` with its weights narrowed and ``weight_bits`` recorded (the
    calibration is kept: it was fit on nearly the same scores). Returns the number of matrices changed."""
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder")
    shutil.copytree(src, out)
    changed = narrow_weights(src / "model.onnx", out / "model.onnx")
    labels = out / "labels.json"
    raw = json.loads(labels.read_text(encoding="utf-8"))
    raw["weight_bits"] = weight_bits(out / "model.onnx")
    labels.write_text(json.dumps(raw, indent=1, ensure_ascii=False), encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m guardrail.training.int8 OLD_MODEL_FOLDER NEW_MODEL_FOLDER", file=sys.stderr)
        return 2
    try:
        changed = narrow_folder(Path(args[0]), Path(args[1]))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"narrowed {changed} weight matrices to 7 bits: {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
