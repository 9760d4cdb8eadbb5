"""guardrail.wrap(guard, chat_model) inside LangChain's composition: LCEL chains, the Runnable's own wrappers
(``with_config``, ``bind``, ``with_retry``, ``with_fallbacks``), callbacks and event streams; through the real
langchain-openai ChatOpenAI against the stub server, sync and async."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import FAKE_RULES, REFUSAL, make_policy
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from stub_server import StubServer
from test_adapters_langchain import HARMFUL, LEAD, SEND_TOOL, invoke, model, sent, stream, tool_answer

import guardrail
from guardrail import Blocked, Guard
from guardrail.testing import DecisionLog, FakeClassifier


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ------------------------------------------------------------------------------------------ chains


def chain(guarded: Any) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "You are kind."), ("human", "{question}")])
    return prompt | guarded | StrOutputParser()


async def test_an_lcel_chain_invokes_streams_and_batches(guard: Guard, stub: StubServer, mode: str) -> None:
    c = chain(guardrail.wrap(guard, model(stub)))
    assert await invoke(c, mode, {"question": "hi"}) == "You said: hi"
    assert await invoke(c, mode, {"question": "a bomb"}) == REFUSAL
    assert "".join(await stream(c, mode, {"question": "mail bob@example.com"})) == "You said: mail <EMAIL_1>"
    questions = [{"question": "tea"}, {"question": "a bomb"}, {"question": "bob@example.com"}]
    answers = c.batch(questions) if mode == "sync" else await c.abatch(questions)
    assert answers == ["You said: tea", REFUSAL, "You said: <EMAIL_1>"]
    assert all("bob@example.com" not in json.dumps(r.body) for r in stub.completions())


async def test_a_chain_streaming_a_harmful_answer_stops_with_the_refusal(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    stub.reply = LEAD + HARMFUL
    pieces = await stream(chain(guardrail.wrap(guard, model(stub))), mode, {"question": "story"})
    assert pieces[-1] == "\n\n" + REFUSAL and "bomb" not in "".join(pieces)


async def test_a_block_raised_inside_a_chain_reaches_the_caller(
    raising_guard: Guard, stub: StubServer, mode: str
) -> None:
    """``on_block: raise``: ``Blocked`` propagates out of a chain, invoked or streamed; ``batch(...,
    return_exceptions=True)`` returns it in the blocked input's place and answers the others."""
    c = chain(guardrail.wrap(raising_guard, model(stub)))
    with pytest.raises(Blocked):
        await invoke(c, mode, {"question": "a bomb"})
    stub.reply = LEAD + HARMFUL
    with pytest.raises(Blocked):
        await stream(c, mode, {"question": "story"})
    stub.reset()
    questions = [{"question": "a bomb"}, {"question": "tea"}]
    if mode == "sync":
        answers = c.batch(questions, return_exceptions=True)
    else:
        answers = await c.abatch(questions, return_exceptions=True)
    assert isinstance(answers[0], Blocked) and answers[1] == "You said: tea"
    assert [r.body["messages"][-1]["content"] for r in stub.completions()] == ["tea"]


# ------------------------------------------------------------------------------------------ callbacks


class Seen(AsyncCallbackHandler):
    """Everything a callback handler is shown: the model's tokens, its start and end, and any chain's output."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.seen.append(repr(messages))

    async def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.seen.append(token)

    async def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.seen.append(repr(response))

    async def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self.seen.append(repr(outputs))


@pytest.mark.filterwarnings("ignore:astream_log is deprecated")  # deprecated in langchain-core 1.x, still there
async def test_callbacks_and_event_streams_never_see_the_unchecked_answer(
    guard: Guard, stub: StubServer, mode: str
) -> None:
    """The model is called without the run's callbacks (which LangChain would otherwise hand it from the run's
    context): its raw tokens reach no handler, event stream or run log; the guarded output does."""
    guarded = guardrail.wrap(guard, model(stub))
    for run in (guarded, chain(guarded)):
        value: Any = "story" if run is guarded else {"question": "story"}
        stub.pieces = [LEAD, HARMFUL]  # "bomb" in one raw token
        handler = Seen()
        await invoke(run, mode, value, config={"callbacks": [handler]})
        await stream(run, mode, value, config={"callbacks": [handler]})
        seen = "\n".join(handler.seen)
        assert "bomb" not in seen and "help with that" in seen
        if mode == "async":
            events = [e async for e in run.astream_events(value, version="v2")]
            log = [patch async for patch in run.astream_log(value)]
            assert "bomb" not in repr(events) + repr(log) and "help with that" in repr(events)


# ------------------------------------------------------------------------------------------ fail closed


async def test_configured_runnables_keep_the_guard(guard: Guard, stub: StubServer, mode: str) -> None:
    guarded = guardrail.wrap(guard, model(stub))
    for configured in (guarded.with_config(tags=["x"]), guarded.bind(stop=["zzz"]), guarded.with_retry()):
        answer = await invoke(configured, mode, "a bomb")
        assert answer.content == REFUSAL
    assert stub.completions() == []


DEAD = "http://127.0.0.1:9/v1"  # nothing listens: the call fails at once, as an outage would


async def test_a_fallback_model_is_guarded_too(guard: Guard, raising_guard: Guard, stub: StubServer, mode: str) -> None:
    """``with_fallbacks``: the model a failed call falls back to is checked like the first; a fallback that reaches a
    model the guard cannot wrap is refused."""
    guarded = guardrail.wrap(guard, model(stub, url=DEAD)).with_fallbacks([model(stub)])
    answer = await invoke(guarded, mode, "mail bob@example.com")
    assert sent(stub)[0]["content"] == "mail <EMAIL_1>" and answer.content == "You said: mail <EMAIL_1>"
    stub.reply = HARMFUL
    assert (await invoke(guarded, mode, "story")).content == REFUSAL
    stub.reset()
    with pytest.raises(Blocked):  # a block raised by the first is no way round the guard to the next
        await invoke(guardrail.wrap(raising_guard, model(stub)).with_fallbacks([model(stub)]), mode, "a bomb")
    tools = guardrail.wrap(guard, model(stub, url=DEAD)).with_fallbacks([model(stub).bind_tools([SEND_TOOL])])
    stub.raw = tool_answer('{"to": "leak@corp.example"}')
    [call] = (await invoke(tools, mode, "send it")).tool_calls
    assert call["args"]["to"].startswith("<EMAIL_")
    assert stub.completions()[0].body["tools"][0]["function"]["name"] == "send"
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    with pytest.raises(NotImplementedError, match="fallback"):
        guardrail.wrap(guard, model(stub)).with_fallbacks([prompt | model(stub)])
    canned = RunnableLambda(lambda _: AIMessage("Try again later."))  # reaches no model: allowed
    assert (await invoke(guardrail.wrap(guard, model(stub, url=DEAD)).with_fallbacks([canned]), mode, "hi")).content


async def test_a_block_is_not_retried(stub: StubServer, mode: str) -> None:
    """``with_retry``: a block is the policy's decision, raised at once (not after the retries' waits); a failure
    of the model is still retried."""
    log = DecisionLog()
    g = Guard(make_policy(respond="raise"), classifiers=FakeClassifier(rules=FAKE_RULES), on_decision=log.append)
    retried = guardrail.wrap(g, model(stub)).with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    with pytest.raises(Blocked):
        await invoke(retried, mode, "a bomb")
    assert log.actions == ["block"] and stub.completions() == []
    flaky = guardrail.wrap(g, model(stub, url=DEAD)).with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
    with pytest.raises(Exception, match="onnection"):
        await invoke(flaky, mode, "hi")
    assert log.actions == ["block", "allow", "allow"]  # asked twice, each checked
    g.close()
