"""The `guardrail` command line.

Exit status is part of the interface (scripts and CI rely on it): 0 allowed or only logged,
1 blocked or rewritten (for --file: at least one line was), 2 usage, policy or model error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TextIO

from guardrail.errors import ClassifierError, GuardrailError, PolicyError

if TYPE_CHECKING:
    from guardrail.engine import Guard
    from guardrail.evaluation.data import CheckRow

EXIT_OK, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


def _err(msg: str) -> None:
    print(f"guardrail: {msg}", file=sys.stderr)


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        _err(
            f"warning: input is not valid UTF-8; {text.count(chr(0xFFFD))} invalid byte sequence(s) replaced by U+FFFD"
        )
        return text


class _Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.stream, self.n = total, stream, 0
        self.on = stream.isatty()

    def step(self) -> None:
        self.n += 1
        if self.on and (self.n == self.total or self.n % 10 == 0):
            width = 30
            done = int(width * self.n / max(1, self.total))
            self.stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {self.n}/{self.total}")
            if self.n == self.total:
                self.stream.write("\n")
            self.stream.flush()


def _human(d: Any) -> str:
    lines = [f"{d.action.value.upper():7s} {d.stage} · policy {d.policy}@{d.policy_hash[:8]} · {d.latency_ms:.1f} ms"]
    for f in d.findings:
        tag = " (shadow)" if f.shadow else ""
        ents = f" [{', '.join(f.entities)}]" if f.entities else ""
        lines.append(f"  {f.category:22s} {f.score:.3f} >= {f.threshold:.3f} → {f.action.value}{tag}{ents}")
    if d.error:
        lines.append(f"  error: {d.error}")
    if d.action.value in ("rewrite", "block"):
        lines.append(f"  text: {d.text}")
    if not d.findings and not d.error:
        top = sorted(d.scores.items(), key=lambda kv: -kv[1])[:3]
        if top:
            lines.append("  top scores: " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    return "\n".join(lines)


def _exit_for(decisions: Sequence[Any]) -> int:
    return EXIT_FLAGGED if any(d.action.value in ("block", "rewrite") for d in decisions) else EXIT_OK


def _configure_audit(target: str | None) -> None:
    """The CLI is an application, so it may configure structlog (the library never does): audit events
    go as JSON lines to a file or stderr with --audit, and are otherwise not printed (the decision
    itself is the command's output). Without --audit no digest is written anywhere, so the notice that
    $GUARDRAIL_AUDIT_KEY is unset (digests compare only within one process) would be noise on every run;
    with --audit it stays: runs appending to one log are exactly the processes it warns about."""
    import structlog

    if target is None:
        structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
        return
    stream = sys.stderr if target == "-" else open(target, "a", encoding="utf-8")  # noqa: SIM115
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )  # fmt: skip


def _drop(*_: Any) -> Any:
    import structlog

    raise structlog.DropEvent


def cmd_check(args: argparse.Namespace) -> int:
    from guardrail.audit import events_discarded
    from guardrail.engine import Guard

    if args.prompt is not None and args.stage != "output":  # the HTTP service answers 422 for the same
        _err("--prompt is the prompt a response answers: add --stage output to check the text as that response")
        return EXIT_ERROR
    if args.file and args.text is not None:
        _err("give the text or --file, not both")
        return EXIT_ERROR
    context = _context(args.context)
    rows = None
    if args.file:  # the rows of `guardrail eval` (one reader): every row is read, and a bad one refused, first
        from guardrail.evaluation.data import read_checks

        rows = read_checks(args.file, default_stage=args.stage)
    _configure_audit(args.audit)
    with nullcontext() if args.audit else events_discarded():
        return _run_checks(Guard(args.policy), args, rows, context)


def _run_checks(
    guard: Guard, args: argparse.Namespace, rows: list[tuple[str, CheckRow]] | None, context: dict[str, str]
) -> int:
    if rows is not None:
        decisions = []
        bar = _Progress(len(rows))
        for where, row in rows:
            ctx = {**context, **row.context} if row.context else context
            try:
                if row.stage == "output":
                    prompt = row.prompt if row.prompt is not None else args.prompt
                    d = guard.check_output(row.text, prompt=prompt, context=ctx)
                else:
                    d = guard.check_input(row.messages or row.text, context=ctx)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {exc}") from None
            decisions.append(d)
            out = d.to_dict(include_text=args.show_text)
            if row.id is not None:
                out["input_id"] = row.id
            print(json.dumps(out, ensure_ascii=False), flush=True)
            bar.step()
        return _exit_for(decisions)
    text = args.text if args.text not in (None, "-") else _read_stdin()
    if args.stage == "output":
        d = guard.check_output(text, prompt=args.prompt, context=context)
    else:
        d = guard.check_input(text, context=context)
    print(json.dumps(d.to_dict(), ensure_ascii=False, indent=2) if args.json else _human(d))
    return _exit_for([d])


def _context(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--context tenant=acme --context route=/chat``: the routing context of the check."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--context {pair!r}: expected KEY=VALUE, e.g. tenant=acme")
        out[key.strip()] = value
    return out


def cmd_policy(args: argparse.Namespace) -> int:
    from guardrail.policy import dump_policy, load_policy, policy_json_schema

    if args.policy_cmd == "schema":
        print(json.dumps(policy_json_schema(), indent=2))
        return EXIT_OK
    if args.policy_cmd == "show":
        print(dump_policy(load_policy(args.file)), end="")
        return EXIT_OK
    if args.policy_cmd == "test":
        from guardrail.policytest import cli_run

        return cli_run(args)
    status = EXIT_OK
    for f in args.files:
        try:
            p = load_policy(f)
            print(
                f"ok     {f}  ({p.name}, {len(p.input.rules)} input / {len(p.output.rules)} output rules, "
                f"hash {p.hash[:12]})" + (f"  routes -> {', '.join(r.name for r in p.routed)}" if p.routes else "")
            )
            for warning in _warnings(p):
                print(f"warn   {f}: {warning}")
        except PolicyError as exc:
            print(f"error  {exc}")
            status = EXIT_ERROR
    return status


# the hold-back a streamed name or address needs (session 24, two answers cut into 1, 3 and 7 characters: at 0 part
# of a name went out in one of six streams, at 10 an address came out as two placeholders in four; from 20 on, none)
_CUED_HOLDBACK = 20


def _warnings(policy: Any) -> list[str]:
    """What is valid but almost surely not meant: a model-score rule at threshold 0 fires on every text (a block
    rule then refuses all traffic), unless a ``requires`` above 0 gates it; a kind of personal data the policy
    defines that no redact rule names is never masked; a stream's hold-back too short for the names and addresses
    its output masks. Routed policies too, by name."""
    from guardrail.taxonomy import CUED_PII_ENTITIES

    out = []
    for p in (policy, *policy.routed):
        for stage in ("input", "output"):
            for r in p.rules(stage):
                gated = any(t > 0 for t in (r.requires or {}).values())  # fires only with those: meant
                if not r.is_match and r.action.value != "redact" and r.threshold == 0 and not gated:
                    where = f"policy {p.name!r}, " if p is not policy else ""
                    out.append(f"{where}{stage} rule {r.category!r} ({r.action.value}) has threshold 0: it fires on "
                               "every text")  # fmt: skip
        named = {e for stage in ("input", "output") for r in p.rules(stage) if r.action.value == "redact"
                 for e in r.entities or ()}  # fmt: skip
        masked = {e for r in p.rules("output") if r.action.value == "redact" for e in r.entities or ()}
        cued = masked & set(CUED_PII_ENTITIES)
        if cued and p.output.stream.holdback_chars < _CUED_HOLDBACK:
            where = f"policy {p.name!r}, " if p is not policy else ""
            held = p.output.stream.holdback_chars
            out.append(f"{where}output.stream.holdback_chars {held} is shorter than a name or an address "
                       f"({', '.join(sorted(cued))}): a stream may send part of one before it is whole; "
                       f"keep it at {_CUED_HOLDBACK} or more (default 80)")  # fmt: skip
        for kind in p.pii_entities:  # a rule that lists its entities (as the bundled policies' do) masks only those
            if kind not in named:
                where = f"policy {p.name!r}, " if p is not policy else ""
                why = "is masked by no redact rule: name it in a pii rule's entities"
                out.append(f"{where}pii_entities {kind!r} {why}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guardrail", description="Check LLM traffic against a safety policy.")
    p.add_argument("--version", action="version", version=f"guardrail {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("check", help="check a prompt (or a completion with --stage output)")
    c.add_argument("text", nargs="?", help="the text; '-' or omitted reads stdin")
    c.add_argument("--policy", "-p", default=None, help="bundled policy name or YAML path (default: default)")
    c.add_argument(
        "--stage",
        choices=("input", "output"),
        default="input",
        help="a prompt (input, the default) or a response (output); with --file, for rows with no stage or prompt",
    )
    c.add_argument("--prompt", default=None, help="the prompt a completion answers (needs --stage output)")
    c.add_argument(
        "--file",
        "-f",
        default=None,
        help="JSONL or CSV rows as `guardrail eval` reads them (`text`; optional `prompt`, `stage`, `messages`, "
        "`context`, `id`): one JSON decision per line; a row without `text` is an error at its file:line",
    )
    c.add_argument("--json", action="store_true", help="print the decision as JSON")
    c.add_argument("--context", action="append", metavar="KEY=VALUE", help="routing context, e.g. tenant=acme")
    c.add_argument("--show-text", action="store_true", help="with --file: include the (rewritten) text in each line")
    c.add_argument(
        "--audit", metavar="FILE", default=None, help="write audit events as JSON lines to FILE ('-': stderr)"
    )
    c.set_defaults(func=cmd_check)

    pol = sub.add_parser("policy", help="validate, show or describe policy files")
    psub = pol.add_subparsers(dest="policy_cmd", required=True)
    v = psub.add_parser("validate", help="check policy files (exit 2 if any is invalid)")
    v.add_argument("files", nargs="+")
    s = psub.add_parser("show", help="print a policy resolved after `extends`")
    s.add_argument("file")
    psub.add_parser("schema", help="print the JSON Schema of policy files (for editor completion)")
    pt = psub.add_parser("test", help="run policy test suites (exit 1 if a case fails, 2 if a suite is malformed)")
    pt.add_argument("suites", nargs="+", help="suite files (YAML or JSONL) or folders of them")
    pt.add_argument("--policy", "-p", default=None, help="run every suite against this policy instead of its own")
    pt.add_argument("--junit", metavar="FILE", default=None, help="also write the results as JUnit XML")
    pt.add_argument("--verbose", "-v", action="store_true", help="list every case with its decision and scores")
    pol.set_defaults(func=cmd_policy)

    from guardrail.training.cli import add_arguments as add_train_arguments

    t = sub.add_parser("train", help="retrain the classifier or extend it with your data (needs the [train] extra)")
    add_train_arguments(t)
    t.set_defaults(func=_cmd_train)

    for module in _PLUGINS:
        importlib.import_module(module).add_parser(sub)
    return p


# Sub-commands that live in their own modules (evaluation tools, red-team runner, ensemble); each
# module has ``add_parser(subparsers)`` and imports its heavy dependencies only when run.
_PLUGINS: tuple[str, ...] = tuple(f"guardrail.evaluation.{m}" for m in ("eval_cmd", "calibrate_cmd", "redteam"))
_PLUGINS += ("guardrail.serve.cli",)  # `guardrail serve`: uvicorn and starlette are imported only when it runs
_PLUGINS += ("guardrail.replay",)  # `guardrail replay`: a new policy against recorded traffic, before rollout
_PLUGINS += ("guardrail.ensemble_policy",)  # `guardrail feedback`, `guardrail ensemble show`


def _cmd_train(args: argparse.Namespace) -> int:
    from guardrail.training.cli import run

    return run(args)


def _version() -> str:
    from guardrail import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    # these commands drop their checks' audit events (quiet_audit): no digest reaches a log, so the audit-key notice
    # would be noise (audit.events_discarded); check decides by --audit, replay and serve write what they hash
    drops = args.cmd in ("eval", "calibrate", "redteam") or getattr(args, "policy_cmd", None) == "test"
    from guardrail.audit import events_discarded

    try:
        with events_discarded() if drops else nullcontext():
            return int(args.func(args))
    except PolicyError as exc:
        _err(f"policy error: {exc}")
    except ClassifierError as exc:
        _err(f"classifier error: {exc}")
    except GuardrailError as exc:
        _err(str(exc))
    except (OSError, ValueError, TypeError) as exc:
        _err(str(exc))
    except KeyboardInterrupt:
        _err("interrupted")
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
