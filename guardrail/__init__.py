"""guardrail: local safety classifiers and policies between an application and any LLM."""
