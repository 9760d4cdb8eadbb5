"""An LLM safety judge reached through litellm: a second opinion for the ensemble, or a fallback.

Do-Not-Answer found GPT-4 the best judge and small fine-tuned encoders nearly as good; a judge is
slow (hundreds of ms) and costs money, so guardrail uses it as one *expert* among others
(``guardrail.ensemble``), never on the hot path by default. The judge asks for JSON probabilities
per category; anything it cannot parse or a call that keeps failing after tenacity's retries
raises ``ClassifierError``, which the engine turns into the policy's fail mode. A category the
judge leaves out, or scores with something that is not a probability, is ``InvalidScores``: never
read as 0.0 (that turned every unanswered category into "safe").
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from guardrail.audit import error_code
from guardrail.errors import ClassifierError, InvalidScores
from guardrail.taxonomy import BY_ID, Stage, stage_ids

__all__ = ["LLMJudge"]

_SYSTEM = (
    "You are a content-safety classifier. Score the {what} for each category with the probability (0 to 1) "
    "that it belongs to that category, judging its function (would a responsible assistant refuse to help / is "
    "this answer harmful to give), not the words it uses. Categories:\n{cats}\n"
    "Answer with one JSON object only, with a number for every category listed, even when it is 0, "
    "e.g. {example}."
)
_JSON = re.compile(r"\{.*\}", re.S)
_SEPARATORS = re.compile(r"[\s_-]+")


def _key(name: str) -> str:
    """A category name as the judge may write it back, folded: case, spaces, hyphens and underscores."""
    return _SEPARATORS.sub("_", name.strip().casefold())


def _highest(values: list[Any]) -> Any:
    """Of the values written under one loosely matched key (the exact key among them), the highest score; the one
    value, or None, otherwise. A value that is no probability is returned as it is, so it is reported as such
    whatever its place (a NaN beside 0.2 passed the check at 0.2 or failed it, by the order of the keys)."""
    values = [_inner(v) for v in values]
    if len(values) <= 1:
        return values[0] if values else None
    bad = [v for v in values if not _probability(v)]
    return bad[0] if bad else max(values, key=float)


_SCORE_KEYS = frozenset({"score", "probability", "prob", "p", "value", "likelihood", "risk"})


def _inner(v: Any) -> Any:
    """A category's score written as an object (``{"score": 0.9, "reason": "..."}``): the score in it, the highest of
    two (``{"score": 0.9, "score": 0.1}`` was read as 0.1), a label beside it left aside (``{"score": 0.9, "risk":
    "high"}`` failed the check under the fail mode); a value that holds no score is returned as it is (reported as no
    probability), and so is one that is no probability."""
    if not isinstance(v, dict):
        return v
    held = [x for k, x in _items(v) if isinstance(k, str) and _key(k) in _SCORE_KEYS]
    numbers = [x for x in held if _numeric(x)]
    if not numbers:
        return held[0] if len(held) == 1 else v
    bad = [x for x in numbers if not _probability(x)]
    return bad[0] if bad else max(numbers, key=float)


def _items(v: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every pair of an object as written, a key written twice included (``_Pairs``)."""
    return v.pairs if isinstance(v, _Pairs) else list(v.items())


def _numeric(v: Any) -> bool:
    """A number, or a string that reads as one (a label such as "high" is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return False
    try:
        float(v)
    except ValueError:
        return False
    except OverflowError:  # an integer of 400 digits: a number, no probability
        return True
    return True


def _probability(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return False
    return not isinstance(v, bool) and math.isfinite(f) and 0.0 <= f <= 1.0


class _Pairs(dict[str, Any]):
    """A JSON object that keeps every pair as written: a key written twice is two scores (``json`` keeps the later,
    and ``{"unsafe": 0.9, "unsafe": 0.1}`` passed the check on 0.1)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


class LLMJudge:
    """``predict`` sends one request per text (concurrency is the caller's: the engine's pool)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        categories: Sequence[str] | None = None,
        topics: Mapping[str, str] | None = None,
        timeout: float = 20.0,
        attempts: int = 3,
        **completion_kwargs: Any,
    ) -> None:
        self.model = model
        self.name = f"judge:{model}"
        self.api_base = api_base
        self.timeout = timeout
        self.attempts = attempts
        self.completion_kwargs = completion_kwargs
        self._categories = tuple(categories) if categories else None
        self.topics = dict(topics or {})  # a policy's own categories, described in plain language

    @property
    def labels(self) -> frozenset[str]:
        every = (*stage_ids("input"), *stage_ids("output"), *self.topics)
        return frozenset(c for c in every if self._categories is None or c in self._categories)

    def stage_labels(self, stage: Stage) -> frozenset[str]:
        return frozenset(self._cats(stage))

    def _cats(self, stage: Stage) -> tuple[str, ...]:
        ids = [c for c in stage_ids(stage) if not c.startswith("dna_")] + list(self.topics)
        return tuple(c for c in ids if self._categories is None or c in self._categories)

    def _describe(self, category: str) -> str:
        about = self.topics.get(category) or (BY_ID[category].description if category in BY_ID else "")
        return f"- {category}: {' '.join(about.split())}" if about else f"- {category}"

    def _messages(self, text: str, stage: Stage, prompt: str | None) -> list[dict[str, str]]:
        asked = self._cats(stage)
        cats = "\n".join(self._describe(c) for c in asked)
        # the example names what is asked: a judge asked only about a topic copied "unsafe" and "hate" from a fixed one
        example = "{" + ", ".join(f'"{c}": {v}' for c, v in zip(asked[:2], ("0.02", "0.0"), strict=False))
        example += ", ...}" if len(asked) > 2 else "}"
        what = "user prompt" if stage == "input" else "assistant response (given the user prompt)"
        user = text if stage == "input" else f"USER PROMPT:\n{prompt or ''}\n\nASSISTANT RESPONSE:\n{text}"
        system = _SYSTEM.format(what=what, cats=cats, example=example)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _parse(self, content: str, stage: Stage) -> dict[str, float]:
        m = _JSON.search(content or "")
        if m is None:
            raise ClassifierError(f"judge answered without JSON: {content[:80]!r}", classifier=self.name)
        try:
            raw = json.loads(m.group(0), object_pairs_hook=_Pairs)
        except json.JSONDecodeError as exc:
            raise ClassifierError(f"judge answered invalid JSON: {exc.msg}", classifier=self.name) from exc
        if not isinstance(raw, dict):
            raise InvalidScores("judge answered JSON that is not an object", classifier=self.name)
        cats = self._cats(stage)
        asked = {_key(c) for c in cats}
        scored = any(_key(k) in asked and not isinstance(v, dict) for k, v in raw.items() if isinstance(k, str))
        # {"scores": {...}}, or with its reasons or other objects beside it ({"reasoning": "...", "scores": {...}},
        # {"scores": {...}, "reasons": {...}}), or a wrapper that a topic named "scores" shares its name with: the
        # object it was asked for, wrapped; the one whose asked keys hold numbers where two name them. Never a
        # category's own object ({"unsafe": {"score": 0.9}}), which names no category
        # A wrapper written twice ({"scores": {...}, "scores": {...}}) is one wrapper holding both (json kept the
        # later, and the check passed on its lower scores); a category's own object that holds a score beside the
        # wrapper is read with it ({"scores": {"unsafe": 0.1}, "unsafe": {"score": 0.9}} was read as 0.1)
        top = _items(raw)
        groups: dict[str, list[tuple[str, Any]]] = {}
        for k, v in top:
            if isinstance(k, str) and isinstance(v, dict) and any(_key(x) in asked for x in v):
                groups.setdefault(k, []).extend(_items(v))
        numbers = [g for g in groups.values() if any(_key(k) in asked and _probability(_inner(x)) for k, x in g)]
        pairs = top
        if not scored and (len(groups) == 1 or len(numbers) == 1):
            own = [(k, v) for k, v in top if isinstance(k, str) and _key(k) in asked and isinstance(v, dict)]
            # only one that holds a number: a label-only object beside the wrapper ({"scores": {"unsafe": 0.9},
            # "unsafe": {"risk": "high"}}) is no score, and read as one it failed the check the wrapper's 0.9 blocks
            held = [(k, v) for k, v in own if _numeric(_inner(v))]
            pairs = [*(next(iter(groups.values())) if len(groups) == 1 else numbers[0]), *held]
        elif scored and len(numbers) == 1:
            # flat scores beside one wrapper of scores ({"unsafe": 0.1, "scores": {"unsafe": 0.9}}): both are read,
            # the wrapper's numbers only (its reasons are no score); the flat 0.1 alone passed the check
            pairs = [*top, *((k, x) for k, x in numbers[0] if isinstance(k, str) and _numeric(_inner(x)))]
        # a key as the model wrote it ("Medical_Advice", "medical advice", "self-harm"): the category it names, not
        # a missing score (which failed every check under the fail mode); of two keys written for one category (or
        # one key written twice) with different scores, the higher: a check is never passed on the lower
        loose: dict[str, list[Any]] = {}
        for k, val in pairs:
            if isinstance(k, str):
                loose.setdefault(_key(k), []).append(val)
        out: dict[str, float] = {}
        for c in cats:
            v = _highest(loose.get(_key(c), []))
            try:  # a number, or a number written as a string; never a guess for what is missing
                f = float(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else math.nan
            except (ValueError, OverflowError):  # "high"; an integer of 400 digits
                f = math.nan
            if not (math.isfinite(f) and 0.0 <= f <= 1.0):
                why = "no score" if v is None else "a score that is not a probability"
                raise InvalidScores(f"judge gave {why} for {c!r}", classifier=self.name)
            out[c] = f
        return out

    def warmup(self) -> None:
        """Import litellm now (seconds, once per process), not inside the first check's time budget, which it used
        up: the first check after a start failed with a time-out. Nothing is sent."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm  # noqa: F401

    def predict(
        self, texts: Sequence[str], *, stage: Stage = "input", prompts: Sequence[str | None] | None = None
    ) -> list[dict[str, float]]:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm
        from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

        transient = (
            litellm.exceptions.APIConnectionError,
            litellm.exceptions.RateLimitError,
            litellm.exceptions.ServiceUnavailableError,
            litellm.exceptions.Timeout,
            litellm.exceptions.InternalServerError,
        )

        @retry(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception_type(transient),
            reraise=True,
        )
        def ask(messages: list[dict[str, str]]) -> str:
            resp = litellm.completion(
                model=self.model,
                messages=messages,
                api_base=self.api_base,
                timeout=self.timeout,
                temperature=0,
                **self.completion_kwargs,
            )
            return str(resp.choices[0].message.content or "")

        out = []
        for i, t in enumerate(texts):
            prompt = prompts[i] if prompts else None
            try:
                content = ask(self._messages(t, stage, prompt))
            except ClassifierError:
                raise
            except Exception as exc:  # its text may quote the prompt: the type and a keyed code only
                why = f"raised {type(exc).__name__} (code {error_code(exc)})"
                raise ClassifierError(why, classifier=self.name) from exc
            out.append(self._parse(content, stage))
        return out
