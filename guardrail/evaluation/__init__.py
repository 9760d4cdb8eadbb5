"""Measuring guardrail on your own data: ``guardrail eval``, ``guardrail calibrate``, ``guardrail redteam``.

``metrics`` holds the pure numpy functions (precision/recall/F1, AUPRC, false-positive rate, recall at
a fixed false-positive rate, threshold sweeps, latency percentiles); ``data`` reads labelled JSONL/CSV;
the ``*_cmd`` modules and ``redteam`` are the command-line tools (each registers itself through
``add_parser``). Nothing here is imported by ``import guardrail``; matplotlib and litellm are imported
only by the commands that need them.
"""
