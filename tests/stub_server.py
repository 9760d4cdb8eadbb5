"""A small OpenAI-compatible server for end-to-end tests (stdlib ``http.server`` in a thread).

It answers ``POST /v1/chat/completions`` and ``POST /v1/responses`` (both with SSE streaming), Anthropic's
``POST /v1/messages`` (JSON, or its SSE events with ``stream``; ``messages()`` lists those requests),
``GET /v1/models`` and ``POST /v1/embeddings``, and records every request so a test can assert what
reached the network (a blocked prompt must not; a redacted one arrives with placeholders).

Media generation has minimal valid answers too (``media()`` lists those requests): ``/images/generations``,
``/images/edits`` and ``/images/variations`` (one tiny ``b64_json`` image, its ``revised_prompt`` the prompt
behind ``REVISED``), ``/audio/speech`` (the bytes ``SPEECH``) and ``/videos``, ``/videos/{id}/remix``,
``/videos/edits``, ``/videos/extensions`` (a queued video job). Multipart bodies (image and video edits) are
recorded as a dict of their text fields, a file field as ``{"filename": ..., "size": ...}``.

``hold = n`` makes the next ``n`` generation requests wait, sending nothing, until ``release`` is set
or the client goes away; ``gone`` lists the paths of requests whose client disconnected before the
answer was complete (a cancelled upstream call), and ``received`` is set when a generation request
arrives. Tests of parallel input checks use them to order events without timing anything.

``answers`` queues answers: each generation request takes the next one, and once it is empty ``reply`` answers
again (a harmful answer first and a benign one second, for a test that the guard asks again). ``errors`` queues HTTP
statuses the same way: each generation request takes the next one, and a status (not None) answers with an error
body (a reask whose request fails).
"""

from __future__ import annotations

import email.policy
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["GENERATION", "IMAGE_B64", "MEDIA_PATHS", "REVISED", "SPEECH", "Recorded", "StubServer", "echo"]

IMAGE_B64 = "aW1hZ2U="  # base64 of b"image": what every stub image carries
REVISED = "Revised: "  # an image's revised_prompt is its prompt behind this
SPEECH = b"ID3stub-speech"  # the body of every /audio/speech answer
MEDIA_PATHS = ("/images/", "/audio/speech", "/videos")  # a path holding one of these is a media request
GENERATION = ("/chat/completions", "/responses", "/messages")  # the paths that generate text


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names


def _last_user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
    else:
        content = body.get("input", "")
        if isinstance(content, list):
            users = [m for m in content if isinstance(m, dict) and m.get("role") == "user"]
            content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def echo(body: dict[str, Any]) -> str:
    return "You said: " + _last_user_text(body)


class StubServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.reply: str | Callable[[dict[str, Any]], str] = echo
        self.answers: list[str] = []  # queued answers: each generation request takes the next, then ``reply`` answers
        self.errors: list[int | None] = []  # queued statuses: each generation request takes the next (None: answers)
        self.chunk_chars = 4
        self.pieces: list[str] | None = None  # exact stream chunks, overriding reply/chunk_chars
        # an exact answer, overriding everything above: a JSON body (a whole answer), or a list of SSE
        # events ``(event name or None, payload)`` for a stream (tool calls, audio, odd shapes)
        self.raw: dict[str, Any] | list[tuple[str | None, Any]] | None = None
        self.delay = 0.0
        self.response_id = "resp_stub"  # the id of the Responses answers it makes
        self.hold = 0
        self.release = threading.Event()
        self.received = threading.Event()
        self.gone: list[str] = []
        self.gone_event = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="stub-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The ``base_url`` for an OpenAI client (``.../v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        self.release.set()  # let any held request go before starting afresh
        with self._lock:
            self.requests.clear()
            self.gone.clear()
            self.answers.clear()
            self.errors.clear()
            self.hold = 0
        self.reply, self.chunk_chars, self.pieces, self.delay, self.raw = echo, 4, None, 0.0, None
        self.response_id = "resp_stub"
        self.release, self.received, self.gone_event = threading.Event(), threading.Event(), threading.Event()

    def take_hold(self) -> threading.Event | None:
        """The event a new generation request must wait for, if it is one of the held ones."""
        with self._lock:
            if self.hold <= 0:
                return None
            self.hold -= 1
            return self.release

    def went_away(self, path: str) -> None:
        with self._lock:
            self.gone.append(path)
        self.gone_event.set()

    def completions(self) -> list[Recorded]:
        """The generation requests received (chat completions and responses)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(("/chat/completions", "/responses"))]

    def messages(self) -> list[Recorded]:
        """The Anthropic Messages requests received."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/messages")]

    def media(self) -> list[Recorded]:
        """The media generation requests received (images, speech, videos)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and any(m in r.path for m in MEDIA_PATHS)]

    def answer(self, body: dict[str, Any]) -> str:
        with self._lock:
            if self.answers:
                return self.answers.pop(0)
        if self.pieces is not None:
            return "".join(self.pieces)
        return self.reply(body) if callable(self.reply) else self.reply

    def error(self) -> int | None:
        """The HTTP status a generation request answers with instead of an answer (``errors``), if any."""
        with self._lock:
            return self.errors.pop(0) if self.errors else None

    def record(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.requests.append(Recorded(method, path, body, headers or {}))
        if path.endswith(GENERATION):
            self.received.set()


def _handler(server: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _json(self, payload: Any, status: int = 200) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _bytes(self, data: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _sse_start(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _sse(self, payload: Any, event: str | None = None) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            head = f"event: {event}\n" if event else ""
            try:
                self.wfile.write(f"{head}data: {data}\n\n".encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (a block)
                raise _Gone() from None

        def do_GET(self) -> None:
            server.record("GET", self.path, {})
            if "/responses/" in self.path and isinstance(server.raw, dict):  # responses.retrieve
                self._json(server.raw)
            elif self.path.rstrip("/").endswith("/models"):
                self._json(
                    {
                        "object": "list",
                        "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}],
                    }
                )
            else:
                self._json({"error": {"message": f"no route {self.path}"}}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type") or ""
            if content_type.startswith("multipart/form-data"):
                body = _form_fields(content_type, raw_body)
            else:
                body = json.loads(raw_body or b"{}")
            server.record("POST", self.path, body, {k.lower(): v for k, v in self.headers.items()})
            try:
                held = server.take_hold() if self.path.endswith(GENERATION) else None
                if held is not None:
                    self._wait(held)
                status = server.error() if self.path.endswith(GENERATION) else None
                if status is not None:
                    self._json({"error": {"message": "stub failure", "type": "server_error"}}, status)
                elif server.raw is not None and self.path.endswith(GENERATION):
                    self._raw(server.raw)
                elif self.path.endswith("/messages"):
                    self._messages(body)
                elif self.path.endswith("/chat/completions"):
                    self._chat(body)
                elif self.path.endswith("/responses"):
                    self._responses(body)
                elif self.path.endswith("/embeddings"):
                    self._json(
                        {
                            "object": "list",
                            "model": body.get("model", "stub"),
                            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                            "usage": {"prompt_tokens": 1, "total_tokens": 1},
                        }
                    )
                elif "/images/" in self.path:
                    image = {"b64_json": IMAGE_B64, "revised_prompt": REVISED + str(body.get("prompt", ""))}
                    self._json({"created": int(time.time()), "data": [image]})
                elif self.path.endswith("/audio/speech"):
                    self._bytes(SPEECH, "audio/mpeg")
                elif "/videos" in self.path:
                    self._json(
                        {
                            "id": "video_stub",
                            "object": "video",
                            "created_at": int(time.time()),
                            "status": "queued",
                            "model": body.get("model") or "sora-2",
                            "progress": 0,
                            "prompt": body.get("prompt"),
                            "seconds": str(body.get("seconds") or "4"),
                            "size": body.get("size") or "720x1280",
                        }
                    )
                else:
                    self._json({"error": {"message": f"no route {self.path}"}}, 404)
            except (_Gone, BrokenPipeError, ConnectionResetError):  # the client went away (cancelled)
                server.went_away(self.path)

        def _wait(self, release: threading.Event) -> None:
            """Send nothing until ``release`` is set; a client that disconnects meanwhile is gone."""
            while not release.wait(0.01):
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    raise _Gone()

        def _raw(self, raw: dict[str, Any] | list[tuple[str | None, Any]]) -> None:
            if isinstance(raw, dict):
                self._json(raw)
                return
            self._sse_start()
            for event, payload in raw:
                self._sse(payload, event)

        def _pieces(self, text: str) -> list[str]:
            if server.pieces is not None:
                return list(server.pieces)
            n = max(1, server.chunk_chars)
            return [text[i : i + n] for i in range(0, len(text), n)]

        def _chat(self, body: dict[str, Any]) -> None:
            text, model, created = server.answer(body), body.get("model", "stub-model"), int(time.time())
            ident = "chatcmpl-stub"
            usage = {
                "prompt_tokens": 5,
                "completion_tokens": max(1, len(text) // 4),
                "total_tokens": 5 + max(1, len(text) // 4),
            }
            if not body.get("stream"):
                self._json(
                    {
                        "id": ident,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": usage,
                    }
                )
                return
            self._sse_start()

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            self._sse(chunk({"role": "assistant", "content": ""}))
            for piece in self._pieces(text):
                if server.delay:
                    time.sleep(server.delay)
                self._sse(chunk({"content": piece}))
            self._sse(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                self._sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            self._sse("[DONE]")

        def _messages(self, body: dict[str, Any]) -> None:
            """An Anthropic Messages answer: one text block, whole or as the API's stream events."""
            text, model = server.answer(body), body.get("model", "stub-model")

            def message(content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
                usage = {"input_tokens": 5, "output_tokens": max(1, len(text) // 4)}
                return {"id": "msg_stub", "type": "message", "role": "assistant", "model": model, "content": content,
                        "stop_reason": stop, "stop_sequence": None, "usage": usage}  # fmt: skip

            if not body.get("stream"):
                self._json(message([{"type": "text", "text": text}], "end_turn"))
                return
            self._sse_start()
            self._sse({"type": "message_start", "message": message([], None)}, "message_start")
            self._sse({"type": "ping"}, "ping")
            start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            self._sse(start, "content_block_start")
            for piece in self._pieces(text):
                if server.delay:
                    time.sleep(server.delay)
                delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                self._sse(delta, "content_block_delta")
            self._sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            end = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"output_tokens": max(1, len(text) // 4)}}  # fmt: skip
            self._sse(end, "message_delta")
            self._sse({"type": "message_stop"}, "message_stop")

        def _responses(self, body: dict[str, Any]) -> None:
            text, model = server.answer(body), body.get("model", "stub-model")

            def response(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
                return {
                    "id": server.response_id,
                    "object": "response",
                    "created_at": int(time.time()),
                    "model": model,
                    "status": status,
                    "output": output,
                    "parallel_tool_calls": True,
                    "tool_choice": "auto",
                    "tools": [],
                    "instructions": body.get("instructions"),
                }

            def item(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
                return {"id": "msg_stub", "type": "message", "role": "assistant", "status": status, "content": content}

            part = {"type": "output_text", "text": text, "annotations": []}
            if not body.get("stream"):
                self._json(response("completed", [item("completed", [part])]))
                return
            self._sse_start()
            seq = iter(range(10_000))

            def send(kind: str, **fields: Any) -> None:
                self._sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

            send("response.created", response=response("in_progress", []))
            send("response.output_item.added", output_index=0, item=item("in_progress", []))
            send(
                "response.content_part.added",
                item_id="msg_stub",
                output_index=0,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
            for piece in self._pieces(text):
                if server.delay:
                    time.sleep(server.delay)
                send(
                    "response.output_text.delta",
                    item_id="msg_stub",
                    output_index=0,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            send(
                "response.output_text.done", item_id="msg_stub", output_index=0, content_index=0, text=text, logprobs=[]
            )
            send("response.content_part.done", item_id="msg_stub", output_index=0, content_index=0, part=part)
            send("response.output_item.done", output_index=0, item=item("completed", [part]))
            send("response.completed", response=response("completed", [item("completed", [part])]))

    return Handler


class _Gone(Exception):
    pass


def _form_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as a dict: text fields as strings, files as ``{"filename", "size"}``; a field
    sent more than once (``image[]``) becomes a list."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        value: Any = {"filename": filename, "size": len(payload)} if filename else payload.decode()
        key = str(name)
        if key in fields:
            old = fields[key]
            fields[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            fields[key] = value
    return fields
