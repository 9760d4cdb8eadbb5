"""The JSON Schema of a policy *file*, for editors and ``guardrail policy schema``: the models' own schema
(``guardrail.policy_models``, the one definition of a valid policy) plus what the loader also accepts (``extends``,
``on_block: raise``, the taxonomy's categories and the built-in PII kinds as suggestions). Re-exported by
:mod:`guardrail.policy`, the import path to use."""

from __future__ import annotations

from typing import Any

from guardrail.classifiers import custom_entities
from guardrail.policy_models import Policy
from guardrail.taxonomy import BUILTIN_PII_ENTITIES, BY_ID

__all__ = ["policy_json_schema"]


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy *file* (for editors): the model's schema plus the loader's shorthands."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "guardrail policy"
    props = schema["properties"]
    props["extends"] = {"type": "string", "description": "A bundled policy name or a path relative to this file."}
    props["on_block"] = {"anyOf": [props["on_block"], {"enum": ["refusal", "raise"]}], "description": "or: raise"}
    schema["patternProperties"] = {"^x-": {"description": "Ignored: a place for YAML anchors (&name) used below."}}
    rule = schema["$defs"]["Rule"]["properties"]
    rule["category"] = {
        "anyOf": [{"enum": list(BY_ID)}, {"type": "string"}],
        "description": rule["category"]["description"],
    }
    builtin = {"enum": list(BUILTIN_PII_ENTITIES)}
    rule["entities"]["anyOf"][0]["items"] = {
        "anyOf": [builtin, {"type": "string", "pattern": f"^{custom_entities.NAME.pattern}$"}]
    }
    return schema
