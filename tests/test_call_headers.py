"""The ``x-guardrail-*`` headers that ``guardrail.call.headers`` renders for the proxy integrations: every value is
one an HTTP server accepts (h11, uvicorn's parser, is the judge), whatever the policy is named."""

from __future__ import annotations

from urllib.parse import unquote

import h11
import pytest
from conftest import FAKE_RULES, make_policy

from guardrail import Guard
from guardrail.call import header_value, headers, summary
from guardrail.policy import load_policy
from guardrail.testing import FakeClassifier


def _sent(values: dict[str, str]) -> None:
    h11.Response(status_code=200, headers=list(values.items()))  # raises LocalProtocolError on an illegal value


@pytest.mark.parametrize("name", ["support bot\n", "策略", "\tpre", "post ", "a,b", "100%"])
def test_every_policy_name_gives_headers_a_server_accepts_and_a_reader_decodes(name: str) -> None:
    """A name with a control character (YAML's ``name: >`` adds a newline) made the proxy's response headers
    illegal. Built past the loader, which may refuse such names itself."""
    policy = load_policy(make_policy()).model_copy(update={"name": name})
    with Guard(policy, classifiers=FakeClassifier(rules=FAKE_RULES)) as guard:
        blocked, allowed = guard.check_input("a bomb"), guard.check_input("hello")
    other = load_policy({**make_policy(), "name": "plain"})
    with Guard(other, classifiers=FakeClassifier(rules=FAKE_RULES)) as guard:
        plain = guard.check_input("hello")
    values = headers([summary(blocked), summary(allowed), summary(plain)])
    _sent(values)
    assert values["x-guardrail-action"] == "block"
    assert sorted(unquote(p) for p in values["x-guardrail-policy"].split(",")) == sorted([name, "plain"])


def test_header_values_keep_printable_ascii_as_it_is() -> None:
    assert header_value("support-bot v2 (EU)") == "support-bot v2 (EU)"
    assert header_value("") == ""
    assert unquote(header_value("   ")) == "   " and header_value("   ").isprintable()
    assert unquote(header_value("lone \ud800 surrogate"), errors="surrogatepass") == "lone \ud800 surrogate"
