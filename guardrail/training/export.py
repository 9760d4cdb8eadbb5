"""Export the trained network to ONNX, quantise it to int8, and check parity with the fp32 model.

The runtime never imports torch: what ships is ``model.onnx`` (int8, per-channel weights, which keep
scores much closer to fp32 than per-tensor at the same speed) plus ``tokenizer.json``.

Weights are quantised to 7 bits (``reduce_range``), so the model scores the same on every x86 CPU: with 8-bit
weights onnxruntime's int8 kernel saturates on CPUs without VNNI (guardrail/training/int8.py says why).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

from guardrail.training.model import SafetyClassifier, base_model_dir

INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def export_onnx(model: SafetyClassifier, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / "model.fp32.onnx"
    dummy = torch.ones(2, 16, dtype=torch.long)
    model.eval()
    # Eager attention exports as plain MatMul/Softmax; the default SDPA path exports a longer graph of mask
    # and shape ops. Measured on v4's weights (int8, 2 threads, Xeon VNNI): 2.98 vs 3.30 ms at 64 tokens and
    # 151 vs 200 ms for 36 windows of 128 tokens (a 4,000-token prompt). ORT's BERT fusion of the eager graph
    # (Attention/EmbedLayerNorm) was slower on long inputs (176 ms) and moved logits by up to 0.64.
    config = model.encoder.config
    previous = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"
    # The TorchScript exporter warns about itself (deprecation) and about traced shape checks in
    # transformers' masking code; both are expected for this fixed graph, and the parity check
    # after quantisation is what proves the export correct.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _export(model, dummy, fp32)
        finally:
            config._attn_implementation = previous
    return fp32


def _export(model: SafetyClassifier, dummy: torch.Tensor, fp32: Path) -> None:
    torch.onnx.export(
        model,
        (dummy, dummy, dummy * 0),
        str(fp32),
        input_names=INPUT_NAMES,
        output_names=["logits"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES} | {"logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def quantize(fp32: Path, out: Path, *, optimize: bool = False) -> Path:
    """Int8-quantise (dynamic, per-channel). ``optimize`` fuses the BERT graph first; measured on this
    export it fuses only GELU/LayerNorm (not attention) and the int8 result was slower (1.91 vs 1.76 ms at
    64 tokens), so it is off by default."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = fp32
    if optimize:
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            cfg = model_config(fp32)
            opt = optimize_model(str(fp32), model_type="bert", num_heads=cfg[0], hidden_size=cfg[1], opt_level=1)
            src = fp32.with_suffix(".opt.onnx")
            opt.save_model_to_file(str(src))
        except Exception:  # the fusion is an optimisation; an unfused graph is still correct
            src = fp32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "consider pre-processing": measured, it does not change speed here
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    if src != fp32:
        src.unlink()
    return out


def model_config(_path: Path) -> tuple[int, int]:
    import json

    cfg = json.loads((base_model_dir() / "config.json").read_text())
    return int(cfg["num_attention_heads"]), int(cfg["hidden_size"])


def copy_tokenizer(out_dir: Path) -> None:
    """MiniLM's tokenizer, unless the run built its own (the e5 base's cut vocabulary) in ``out_dir``."""
    if not (out_dir / "tokenizer.json").exists():
        shutil.copy(base_model_dir() / "tokenizer.json", out_dir / "tokenizer.json")


def minilm_pooled_int8(out: Path) -> Path:
    """all-MiniLM-L6-v2 with mean pooling, exported to ONNX and int8-quantised (per-channel) at ``out``, unless
    it is already there: the encoder that groups training rows by meaning, and the speed baseline of
    benchmarks/model_budget.py."""
    if out.exists():
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = AutoModel.from_pretrained(str(base_model_dir())).eval()

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            h = self.enc(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled: torch.Tensor = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return pooled

    out.parent.mkdir(parents=True, exist_ok=True)
    fp32 = out.with_suffix(".fp32.onnx")
    dummy = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled(), (dummy, dummy, dummy * 0), str(fp32), input_names=INPUT_NAMES, output_names=["emb"],
            dynamic_axes={n: {0: "b", 1: "s"} for n in INPUT_NAMES}, opset_version=17, dynamo=False,
        )  # fmt: skip
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    return out
