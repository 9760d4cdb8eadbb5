"""Drop-in integrations: guard.wrap(openai client | litellm), the LiteLLM proxy guardrail."""
