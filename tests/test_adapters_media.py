"""Media generation through the guarded clients: images, speech and video prompts are checked on the input stage.

The real openai client (sync and async) and real litellm against the local stub server, the LiteLLM proxy guardrail's
hooks called directly, and the real proxy once. The stub records what reached the network: a blocked prompt never
does, a redacted one arrives with its placeholders. The media coming back is not checked (it is not text).
"""

from __future__ import annotations

import inspect
import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
import openai
import pytest
from conftest import REFUSAL, REPLACED, make_guard, make_policy
from fastapi import HTTPException
from guardrail.adapters.litellm import GuardrailLiteLLM
from guardrail.adapters.request_shapes import UncheckedField
from stub_server import IMAGE_B64, REVISED, SPEECH, StubServer

import guardrail
from guardrail import Blocked, Guard
from guardrail.decision import Action
from guardrail.testing import DecisionLog, FakeClassifier

litellm.suppress_debug_info = True
HARMFUL = "a labelled diagram of how to build a pipe bomb"  # the fake classifier's "bomb": unsafe
EMAIL = "a poster that says: write to bob@example.com"
MASKED = "a poster that says: write to <EMAIL_1>"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["refusal", "raise"])
def respond(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_OPEN: list[Any] = []


def client_for(guard: Guard, stub: StubServer, mode: str) -> Any:
    cls = openai.OpenAI if mode == "sync" else openai.AsyncOpenAI
    raw = cls(base_url=stub.url, api_key="sk-test", max_retries=0)
    _OPEN.append(raw)
    return guardrail.wrap(guard, raw)


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client a test made, in the test's own event loop."""
    yield
    while _OPEN:
        await run(_OPEN.pop().close())


@pytest.fixture
def client(guard: Guard, stub: StubServer, mode: str) -> Any:
    return client_for(guard, stub, mode)


async def run(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def png() -> io.BytesIO:
    f = io.BytesIO(b"\x89PNG stub")
    f.name = "in.png"
    return f


def sent(stub: StubServer) -> list[Any]:
    """The text fields of every media request that reached the network."""
    return [r.body.get("prompt", r.body.get("input")) for r in stub.media()]


# the openai client's calls that send a prompt: (what it is, how to call it with a text)
OPENAI_CALLS = {
    "images.generate": lambda c, text: c.images.generate(prompt=text, model="gpt-image-1"),
    "images.edit": lambda c, text: c.images.edit(prompt=text, image=("in.png", b"\x89PNG", "image/png")),
    "audio.speech.create": lambda c, text: c.audio.speech.create(input=text, model="tts-1", voice="alloy"),
    "videos.create": lambda c, text: c.videos.create(prompt=text, model="sora-2"),
    "videos.remix": lambda c, text: c.videos.remix("video_stub", prompt=text),
    "videos.edit": lambda c, text: c.videos.edit(prompt=text, video=("v.mp4", b"mp4", "video/mp4")),
    "videos.extend": lambda c, text: c.videos.extend(prompt=text, seconds="4", video=("v.mp4", b"mp4", "video/mp4")),
}


# ------------------------------------------------------------------------------------------ openai


@pytest.mark.parametrize("call", list(OPENAI_CALLS))
async def test_a_harmful_media_prompt_raises_blocked_and_never_reaches_the_network(
    stub: StubServer, mode: str, respond: str, call: str
) -> None:
    """A file has no refusal shape: a blocked prompt raises Blocked under either on_block.respond."""
    log = DecisionLog()
    client = client_for(make_guard(respond=respond, log=log), stub, mode)
    with pytest.raises(Blocked) as info:
        await run(OPENAI_CALLS[call](client, HARMFUL))
    d = info.value.decision
    assert (d.stage, d.action, [f.category for f in d.findings]) == ("input", Action.BLOCK, ["unsafe"])
    assert [x.id for x in log] == [d.id]
    assert stub.media() == []


@pytest.mark.parametrize("call", list(OPENAI_CALLS))
async def test_personal_data_in_a_media_prompt_is_redacted_before_it_is_sent(
    client: Any, stub: StubServer, call: str
) -> None:
    await run(OPENAI_CALLS[call](client, EMAIL))
    assert sent(stub) == [MASKED]


async def test_a_benign_image_prompt_gets_the_upstreams_answer_revised_prompt_included(
    client: Any, stub: StubServer, decisions: DecisionLog
) -> None:
    resp = await run(client.images.generate(prompt="a calm lake at dawn", model="gpt-image-1", size="1024x1024"))
    assert isinstance(resp, openai.types.ImagesResponse)
    assert resp.data is not None and resp.data[0].b64_json == IMAGE_B64
    # the provider's revised_prompt is its own text about the prompt: left as it came, unchecked
    assert resp.data[0].revised_prompt == REVISED + "a calm lake at dawn"
    assert stub.media()[0].body == {"prompt": "a calm lake at dawn", "model": "gpt-image-1", "size": "1024x1024"}
    assert [(d.stage, d.action) for d in decisions] == [("input", Action.ALLOW)]  # the image itself is not checked


async def test_speech_gets_the_upstreams_sound(client: Any, stub: StubServer) -> None:
    resp = await run(client.audio.speech.create(input="good morning", model="tts-1", voice="alloy"))
    assert resp.content == SPEECH
    assert sent(stub) == ["good morning"]


async def test_a_rewrite_rule_replaces_the_media_prompt(client: Any, stub: StubServer) -> None:
    resp = await run(client.images.generate(prompt="I want to hurt myself"))
    assert sent(stub) == [REPLACED]
    assert resp.data[0].revised_prompt == REVISED + REPLACED


async def test_speech_instructions_are_read_as_a_system_prompt(stub: StubServer, mode: str) -> None:
    """``instructions`` (how the text is spoken) are read where ``input.scope`` reads a system prompt."""
    speak = dict(input="good morning", model="tts-1", voice="alloy", instructions="whisper about a bomb")
    await run(client_for(make_guard(), stub, mode).audio.speech.create(**speak))  # scope last_user: not read
    assert len(stub.media()) == 1
    policy = make_policy()
    policy["input"]["scope"] = "all"
    every = Guard(policy, classifiers=FakeClassifier(rules={"bomb": {"unsafe": 0.99}}))
    with pytest.raises(Blocked):
        await run(client_for(every, stub, mode).audio.speech.create(**speak))
    assert len(stub.media()) == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"prompt": HARMFUL},
        {"input": HARMFUL},
        {"messages": [{"role": "user", "content": HARMFUL}]},
        {"extra_body": {"prompt": HARMFUL}},  # what a LiteLLM proxy merges in its turn
    ],
)
async def test_a_text_field_hidden_in_extra_body_is_refused_before_sending(
    client: Any, stub: StubServer, extra: dict[str, Any]
) -> None:
    """The SDK merges extra_body over the checked prompt after the check: refused, as for chat."""
    with pytest.raises(UncheckedField, match="extra_body"):
        await run(client.images.generate(prompt="a calm lake", extra_body=extra))
    with pytest.raises(UncheckedField, match="extra_body"):
        await run(client.audio.speech.create(input="hello", model="tts-1", voice="alloy", extra_body=extra))
    assert stub.media() == []
    # what guardrail does not read still travels in extra_body (an image's n is not text)
    await run(client.images.generate(prompt="a calm lake", extra_body={"n": 2, "quality": "high"}))
    assert stub.media()[0].body["quality"] == "high"


async def test_a_prompt_that_is_not_a_string_is_refused(client: Any, stub: StubServer) -> None:
    with pytest.raises(UncheckedField, match="as a string"):
        await run(client.images.generate(prompt=["a calm lake", HARMFUL]))  # type: ignore[arg-type]
    assert stub.media() == []


async def test_under_parallel_checks_a_block_still_raises_and_a_rewrite_is_what_comes_back(
    stub: StubServer, mode: str
) -> None:
    policy = make_policy()
    policy["input"]["parallel"] = True
    guard = Guard(policy, classifiers=FakeClassifier(rules={"bomb": {"unsafe": 0.99}}))
    client = client_for(guard, stub, mode)
    with pytest.raises(Blocked):
        await run(client.images.generate(prompt=HARMFUL))
    resp = await run(client.images.generate(prompt=EMAIL))
    assert resp.data[0].revised_prompt == REVISED + MASKED  # the rewritten request's answer, the first dropped


@pytest.mark.parametrize(
    ("path", "name"),
    [("images", v) for v in ("with_raw_response", "with_streaming_response")]
    + [("audio", v) for v in ("with_raw_response", "with_streaming_response")]
    + [("audio.speech", v) for v in ("with_raw_response", "with_streaming_response")]
    + [("videos", v) for v in ("with_raw_response", "with_streaming_response")],
)
def test_media_views_that_would_send_the_prompt_unchecked_are_closed(client: Any, path: str, name: str) -> None:
    resource = client
    for part in path.split("."):
        resource = getattr(resource, part)
    with pytest.raises(AttributeError, match="bypass the guard"):
        getattr(resource, name)


async def test_media_without_a_prompt_and_the_rest_pass_through(client: Any, stub: StubServer) -> None:
    raw = client.unwrapped
    assert client.audio.transcriptions is raw.audio.transcriptions  # speech to text: passes
    assert client.videos.retrieve == raw.videos.retrieve
    resp = await run(client.images.create_variation(image=("in.png", b"\x89PNG", "image/png")))  # no prompt
    assert resp.data[0].b64_json == IMAGE_B64
    assert [r.path for r in stub.media()] == ["/v1/images/variations"]
    assert inspect.iscoroutinefunction(client.images.generate) is (isinstance(raw, openai.AsyncOpenAI))


# ------------------------------------------------------------------------------------------ litellm


def stub_kw(stub: StubServer) -> dict[str, Any]:
    return {"api_base": stub.url, "api_key": "sk-test"}


# litellm's media functions: (sync name, how to call it with a text)
LITELLM_CALLS = {
    "image_generation": lambda fn, text, kw: fn(prompt=text, model="openai/gpt-image-1", **kw),
    "image_edit": lambda fn, text, kw: fn(image=png(), prompt=text, model="openai/gpt-image-1", **kw),
    "speech": lambda fn, text, kw: fn(model="openai/tts-1", input=text, voice="alloy", **kw),
    "video_generation": lambda fn, text, kw: fn(prompt=text, model="openai/sora-2", **kw),
    "video_remix": lambda fn, text, kw: fn(video_id="video_stub", prompt=text, model="openai/sora-2", **kw),
}


def media_fn(llm: Any, name: str, mode: str) -> Any:
    return getattr(llm, name if mode == "sync" else "a" + name)


@pytest.mark.parametrize("name", list(LITELLM_CALLS))
async def test_litellm_a_harmful_media_prompt_raises_blocked_and_never_reaches_the_provider(
    stub: StubServer, mode: str, respond: str, name: str
) -> None:
    llm = guardrail.wrap(make_guard(respond=respond), litellm)
    with pytest.raises(Blocked) as info:
        await run(LITELLM_CALLS[name](media_fn(llm, name, mode), HARMFUL, stub_kw(stub)))
    assert info.value.decision.action is Action.BLOCK
    assert stub.media() == []


@pytest.mark.parametrize("name", list(LITELLM_CALLS))
async def test_litellm_a_media_prompt_is_redacted_before_it_is_sent(
    guard: Guard, stub: StubServer, mode: str, name: str
) -> None:
    resp = await run(LITELLM_CALLS[name](media_fn(guardrail.wrap(guard, litellm), name, mode), EMAIL, stub_kw(stub)))
    assert sent(stub) == [MASKED]
    assert resp is not None


async def test_litellm_benign_media_gets_the_upstreams_answer(guard: Guard, stub: StubServer, mode: str) -> None:
    llm = guardrail.wrap(guard, litellm)
    image = await run(media_fn(llm, "image_generation", mode)(prompt="a calm lake", model="openai/x", **stub_kw(stub)))
    assert isinstance(image, litellm.ImageResponse)
    assert image.data[0].b64_json == IMAGE_B64 and image.data[0].revised_prompt == REVISED + "a calm lake"
    speech = await run(media_fn(llm, "speech", mode)(model="openai/tts-1", input="hi", voice="alloy", **stub_kw(stub)))
    assert speech.content == SPEECH
    assert sent(stub) == ["a calm lake", "hi"]


async def test_litellm_positional_arguments_are_read_by_their_names(guard: Guard, stub: StubServer, mode: str) -> None:
    llm = guardrail.wrap(guard, litellm)
    await run(media_fn(llm, "image_generation", mode)(EMAIL, "openai/gpt-image-1", **stub_kw(stub)))
    await run(media_fn(llm, "speech", mode)("openai/tts-1", EMAIL, "alloy", **stub_kw(stub)))
    assert sent(stub) == [MASKED, MASKED]
    with pytest.raises(Blocked):
        await run(media_fn(llm, "speech", mode)("openai/tts-1", HARMFUL, "alloy", **stub_kw(stub)))
    assert len(stub.media()) == 2


async def test_litellm_text_it_does_not_read_is_refused(guard: Guard, stub: StubServer, mode: str) -> None:
    gen = media_fn(guardrail.wrap(guard, litellm), "image_generation", mode)
    with pytest.raises(UncheckedField, match="extra_body carries 'prompt'"):
        await run(gen(prompt="a calm lake", model="openai/x", extra_body={"prompt": HARMFUL}, **stub_kw(stub)))
    with pytest.raises(UncheckedField, match="does not read 'messages'"):  # a provider might read it
        await run(gen(prompt="a calm lake", model="openai/x", messages=[{"role": "user", "content": HARMFUL}]))
    assert stub.media() == []


def test_litellm_media_doors_around_the_guard_are_closed(guard: Guard) -> None:
    llm = guardrail.wrap(guard, litellm)
    for name in ("images", "videos", "bfl_image_generation", "bfl_image_edit"):  # unguarded functions, handlers
        with pytest.raises(AttributeError, match="bypass the guard"):
            getattr(llm, name)
    assert llm.image_variation is litellm.image_variation  # no prompt: passes
    assert llm.transcription is litellm.transcription
    assert inspect.iscoroutinefunction(llm.aimage_generation) and inspect.iscoroutinefunction(llm.aspeech)
    assert not inspect.iscoroutinefunction(llm.image_generation)


# ------------------------------------------------------------------------------------------ proxy hooks


def proxy_guardrail(mode: str, *, respond: str = "refusal") -> GuardrailLiteLLM:
    return GuardrailLiteLLM(guard=make_guard(respond=respond), guardrail_name="gr", event_hook=mode, default_on=True)


def image_request(prompt: str) -> dict[str, Any]:
    """What the proxy's /images/generations hands its hooks: the prompt, and the prompt again as a chat message."""
    return {"model": "stub", "prompt": prompt, "messages": [{"role": "user", "content": prompt}], "metadata": {}}


PROXY_REQUESTS = {
    "image_generation": lambda text: image_request(text),
    "aimage_edit": lambda text: {"model": "stub", "prompt": text, "image": [png()], "metadata": {}},
    "aspeech": lambda text: {"model": "stub", "input": text, "voice": "alloy", "metadata": {}},
    "avideo_generation": lambda text: {"model": "stub", "prompt": text, "metadata": {}},
    "avideo_remix": lambda text: {"video_id": "video_stub", "prompt": text, "metadata": {}},
}


@pytest.mark.parametrize("call_type", list(PROXY_REQUESTS))
async def test_proxy_blocks_a_harmful_media_prompt_with_a_400_under_either_respond_mode(
    call_type: str, respond: str
) -> None:
    """Never a mock_response chat completion: the endpoint answers with an image or a sound, or with the 400."""
    data = PROXY_REQUESTS[call_type](HARMFUL)
    with pytest.raises(HTTPException) as http:
        await proxy_guardrail("pre_call", respond=respond).async_pre_call_hook(None, None, data, call_type)
    assert http.value.status_code == 400
    assert http.value.detail["error"] == REFUSAL and http.value.detail["decision"]["action"] == "block"
    assert "mock_response" not in data
    [entry] = data["metadata"]["guardrail_decisions"]
    assert (entry["action"], entry["hook"], entry["categories"]) == ("block", "pre_call", ["unsafe"])
    with pytest.raises(HTTPException):  # during_call (the model is running): the same 400
        await proxy_guardrail("during_call").async_moderation_hook(PROXY_REQUESTS[call_type](HARMFUL), None, call_type)


@pytest.mark.parametrize("call_type", list(PROXY_REQUESTS))
async def test_proxy_allows_a_benign_media_prompt_and_redacts_personal_data(call_type: str) -> None:
    field = "input" if call_type == "aspeech" else "prompt"
    gr = proxy_guardrail("pre_call")
    data = PROXY_REQUESTS[call_type]("a calm lake")
    assert (await gr.async_pre_call_hook(None, None, data, call_type))[field] == "a calm lake"
    assert data["metadata"]["guardrail_decisions"][0]["action"] == "allow"
    data = PROXY_REQUESTS[call_type](EMAIL)
    out = await gr.async_pre_call_hook(None, None, data, call_type)
    assert out[field] == MASKED
    if call_type == "image_generation":  # the proxy sends the messages' text as the prompt after the hooks
        assert out["messages"] == [{"role": "user", "content": MASKED}]
    headers = await gr.async_post_call_response_headers_hook(out, None, None)
    assert headers is not None and headers["x-guardrail-action"] == "rewrite"


async def test_proxy_reads_the_text_it_will_send_as_an_images_prompt() -> None:
    # an /images/generations body with messages and no prompt: the proxy sends the messages' text as the prompt
    data = {"model": "stub", "messages": [{"role": "user", "content": HARMFUL}, {"role": "user", "content": "hi"}]}
    with pytest.raises(HTTPException):
        await proxy_guardrail("pre_call").async_pre_call_hook(None, None, data, "image_generation")


async def test_proxy_during_call_can_only_block_media() -> None:
    data = PROXY_REQUESTS["aspeech"](EMAIL)
    assert await proxy_guardrail("during_call").async_moderation_hook(data, None, "aspeech") is None
    assert data["input"] == EMAIL  # too late to rewrite: recorded only
    assert data["metadata"]["guardrail_decisions"][0]["action"] == "rewrite"


async def test_proxy_refuses_a_media_prompt_hidden_in_a_bodys_extra_body() -> None:
    data = {"model": "stub", "prompt": "a calm lake", "extra_body": {"prompt": HARMFUL}}
    with pytest.raises(HTTPException, match="extra_body carries 'prompt'") as http:
        await proxy_guardrail("pre_call").async_pre_call_hook(None, None, data, "image_generation")
    assert http.value.status_code == 400


async def test_proxy_post_call_leaves_media_answers_as_they_came() -> None:
    """An image or a sound is not text; an image's revised_prompt is the provider's, left unchecked."""
    from litellm.types.videos.main import VideoObject

    gr = proxy_guardrail("post_call")
    image = litellm.ImageResponse(data=[{"b64_json": IMAGE_B64, "revised_prompt": HARMFUL}])
    video = VideoObject(id="video_stub", object="video", status="queued", created_at=0, model="sora-2")
    for answer in (image, video):
        data: dict[str, Any] = {"model": "stub", "prompt": "a calm lake", "metadata": {}}
        assert await gr.async_post_call_success_hook(data, None, answer) is None  # None: the answer unchanged
        assert "guardrail_decisions" not in data["metadata"]
    assert image.data[0].revised_prompt == HARMFUL


@pytest.mark.parametrize("call_type", ["aembedding", "atranscription", "amoderation", "acreate_file", "avideo_status"])
async def test_proxy_other_call_types_still_pass_untouched(call_type: str) -> None:
    data = {"model": "e", "input": HARMFUL, "prompt": HARMFUL}
    assert await proxy_guardrail("pre_call").async_pre_call_hook(None, None, dict(data), call_type) == data


# ------------------------------------------------------------------------------------------ the real proxy


@pytest.fixture(scope="module")
def media_proxy(stub_server: StubServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from test_proxy import INPUT, _running_proxy, config, guardrail_entry, policy

    cfg = config(stub_server)
    cfg["guardrails"] = [guardrail_entry("gr-pre", "pre_call", policy("proxy-pre", input=INPUT), default_on=True)]
    with _running_proxy(cfg, tmp_path_factory.mktemp("media-proxy")) as running:
        yield running


@pytest.mark.slow
def test_real_proxy_checks_image_and_speech_prompts(media_proxy: Any, stub: StubServer) -> None:
    with media_proxy.client() as client:
        image = client.images.generate(model="stub", prompt="a calm lake")
        assert image.data is not None and image.data[0].b64_json == IMAGE_B64
        client.images.generate(model="stub", prompt=EMAIL)
        speech = client.audio.speech.create(model="stub", input="good morning", voice="alloy")
        assert speech.content == SPEECH
        assert sent(stub) == ["a calm lake", MASKED, "good morning"]
        with pytest.raises(openai.BadRequestError) as info:
            client.images.generate(model="stub", prompt=HARMFUL)
        assert info.value.status_code == 400 and "help with that" in str(info.value)  # the policy's message
        with pytest.raises(openai.BadRequestError):
            client.audio.speech.create(model="stub", input=HARMFUL, voice="alloy")
    assert len(stub.media()) == 3
