"""An example gateway in the write-up's shape: FastAPI with sse-starlette in front of a model.

Teams put a small HTTP gateway of their own in front of Ollama, vLLM or a hosted model:
their own paths, their own JSON body, and a stream of plain text events sent with
sse-starlette's ``EventSourceResponse``. This one sits in front of any
OpenAI-compatible server (by default capdisc's simulator) and has:

- ``POST /chat`` ``{"question": ..., "max_tokens": N}`` -> ``{"answer": ..., "usage":
  {"output_tokens": N}}``: a batch answer;
- ``POST /chat/stream`` (same body): one plain text event per token (``data: Hello``),
  then a ``usage`` event and ``[DONE]``. The generator yields the text alone:
  ``EventSourceResponse`` frames every event itself, so a gateway that yields
  ``"data: " + token`` sends ``data: data: Hello``;
- ``POST /agent`` ``{"question": ..., "tool_calls": N}`` -> ``{"answer": ...,
  "tools_used": N}``: a server-orchestrated tool task (the upstream's ``/v1/agent/run``);
- ``GET /stats``: what it served (the ground truth tests compare capdisc's rows with).

With ``GATEWAY_KEY`` set, every request needs the header ``X-Api-Key`` with that value.

    pip install -e '.[examples]'
    capdisc simulator serve --port 8000 &
    python examples/gateway/app.py --port 8080 --upstream http://127.0.0.1:8000
    GATEWAY_KEY= capdisc discover batch --profile gateway

Listens on loopback by default; prints ``gateway listening on http://HOST:PORT`` once
it accepts connections (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse


class Question(BaseModel):
    question: str = Field(min_length=1)
    max_tokens: int = Field(default=64, ge=1)
    model: str = "sim-llm"


class AgentTask(BaseModel):
    question: str = Field(min_length=1)
    tool_calls: int = Field(ge=0, le=64)
    model: str = "sim-llm"


def create_app(upstream: str) -> FastAPI:
    """The gateway, forwarding to the OpenAI-compatible server at ``upstream``."""
    served = {"chat": 0, "stream": 0, "agent": 0, "refused": 0}
    key = os.environ.get("GATEWAY_KEY") or ""
    clients: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=upstream, timeout=120.0, limits=limits) as client:
            clients["upstream"] = client
            yield

    def check_key(request: Request) -> None:
        given = request.headers.get("x-api-key") or ""
        if key and not secrets.compare_digest(given, key):
            served["refused"] += 1
            raise HTTPException(status_code=401, detail="missing or wrong X-Api-Key")

    # The key is checked before the body is read and validated.
    guarded = [Depends(check_key)]
    app = FastAPI(title="example gateway", lifespan=lifespan)

    def chat_body(q: Question, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": q.model,
            "messages": [{"role": "user", "content": q.question}],
            "max_tokens": q.max_tokens,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @app.post("/chat", dependencies=guarded)
    async def chat(q: Question) -> dict[str, Any]:
        answer = await clients["upstream"].post("/v1/chat/completions", json=chat_body(q, False))
        if answer.status_code != 200:
            raise HTTPException(status_code=502, detail=f"upstream HTTP {answer.status_code}")
        data = answer.json()
        served["chat"] += 1
        return {
            "answer": data["choices"][0]["message"]["content"],
            "usage": {"output_tokens": data.get("usage", {}).get("completion_tokens")},
        }

    @app.post("/chat/stream", dependencies=guarded)
    async def chat_stream(q: Question) -> EventSourceResponse:

        async def tokens() -> AsyncIterator[Any]:
            usage = None
            body = chat_body(q, True)
            async with clients["upstream"].stream(
                "POST", "/v1/chat/completions", json=body
            ) as answer:
                if answer.status_code != 200:
                    yield {"event": "error", "data": f"upstream HTTP {answer.status_code}"}
                    return
                async for line in answer.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            # The text alone: EventSourceResponse adds "data: " itself.
                            yield text
            tokens_out = usage.get("completion_tokens") if usage else None
            yield {"event": "usage", "data": json.dumps({"usage": {"output_tokens": tokens_out}})}
            yield "[DONE]"
            served["stream"] += 1

        return EventSourceResponse(tokens())

    @app.post("/agent", dependencies=guarded)
    async def agent(task: AgentTask) -> dict[str, Any]:
        body = {"model": task.model, "prompt": task.question, "tool_calls": task.tool_calls}
        answer = await clients["upstream"].post("/v1/agent/run", json=body)
        if answer.status_code != 200:
            raise HTTPException(status_code=502, detail=f"upstream HTTP {answer.status_code}")
        data = answer.json()
        served["agent"] += 1
        return {"answer": data["content"], "tools_used": data["tool_calls"]}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return dict(served)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="An example FastAPI + sse-starlette gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: a free port")
    parser.add_argument("--upstream", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(args.upstream), log_level="warning", access_log=False, timeout_keep_alive=30
    )
    server = uvicorn.Server(config)

    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        print(f"gateway listening on http://{host}:{port}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
