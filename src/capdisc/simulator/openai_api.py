"""The OpenAI-compatible chat API: ``POST /v1/chat/completions``, JSON and SSE.

Enough of the API for capdisc to load-test the simulator exactly as it would a real
server: content and tool-call answers, ``max_tokens``/``max_completion_tokens``,
``tool_choice``, ``stream_options.include_usage``, and a usage block that adds up.
A streamed answer is, as llama.cpp sends it: a role-only event
(``"delta":{"role":"assistant","content":null}``), one SSE event per token (reasoning
tokens first, as ``reasoning_content`` deltas, then content or tool-call deltas), a
finish event with an empty delta, the optional usage event and ``[DONE]``, the last
three in one final HTTP chunk. The role event rides in the first token's HTTP chunk
(one write), or with ``early_role_event`` goes out alone as soon as a slot is free,
before the prefill, as gateways send it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from capdisc.simulator.bodies import (
    Chat,
    chat_messages,
    dumps,
    json_object,
    json_string,
    opt_bool,
    opt_number,
    opt_positive_int,
    opt_seed,
    opt_str,
    tool_names,
)
from capdisc.simulator.capacity import Emit
from capdisc.simulator.context import Context
from capdisc.simulator.errors import bad
from capdisc.simulator.protocol import Request, ServerConnection
from capdisc.simulator.stats import StatsSnapshot
from capdisc.simulator.streaming import chunk, content_emitter, split_emitter
from capdisc.simulator.text import (
    CLOSE_ARGS,
    OPEN_ARGS,
    SPACED_WORD_BYTES,
    WORD_BYTES,
    count_prompt_tokens,
    join_text,
    word_pieces,
)

# Built once, so that a streamed token costs one join and one write.
_PIECES = word_pieces(b'"},"logprobs":null,"finish_reason":null}]}\n\n\r\n')


class OpenAIApi:
    """Handler of ``/v1/chat/completions``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def chat(self, conn: ServerConnection, request: Request) -> None:
        ctx = self._ctx
        await ctx.enter_generation(request)
        config = ctx.config
        chat = parse_openai(json_object(request.body), config.model)
        reasoning, count = ctx.answer_tokens(chat)
        # Out of tokens while reasoning: no room left for a tool call either.
        tool = openai_tool(chat, config.auto_tool_calls) if count else None
        finish = (
            "tool_calls"
            if tool is not None
            else "length"
            if count < config.output_tokens
            else "stop"
        )
        ids = ctx.text.token_ids(chat, reasoning + count)  # reasoning first
        prompt_tokens = count_prompt_tokens(chat.messages)
        prefill = ctx.prefill_tokens(chat, prompt_tokens)
        ctx.faults.maybe_fail()
        capacity = ctx.capacity
        stats = ctx.stats
        ticket = capacity.admit()
        try:
            if chat.stream:
                conn.start_chunked(b"text/event-stream")
                await capacity.wait(ticket)
                try:
                    await self._stream(
                        conn, chat, ids, reasoning, tool, finish, prompt_tokens, prefill
                    )
                finally:
                    capacity.release()
            else:
                await capacity.wait(ticket)
                try:
                    await capacity.serve(len(ids), None, None, prefill)
                finally:
                    capacity.release()
                conn.send(200, self._body(chat, ids, reasoning, tool, finish, prompt_tokens))
            if tool is not None:
                stats.tool_calls += 1
            stats.served += 1
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            capacity.leave()

    def _body(
        self,
        chat: Chat,
        ids: list[int],
        reasoning: int,
        tool: str | None,
        finish: str,
        prompt_tokens: int,
    ) -> bytes:
        text = self._ctx.text
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if reasoning:
            message["reasoning_content"] = join_text(ids[:reasoning])
        words = join_text(ids[reasoning:])
        if tool is None:
            message["content"] = words
        else:
            message["tool_calls"] = [
                {
                    "id": text.next_tool_id(),
                    "type": "function",
                    "function": {"name": tool, "arguments": json.dumps({"q": words})},
                }
            ]
        body = {
            "id": f"chatcmpl-{text.next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": _usage(prompt_tokens, len(ids), reasoning),
        }
        return dumps(body).encode()

    async def _stream(
        self,
        conn: ServerConnection,
        chat: Chat,
        ids: list[int],
        reasoning: int,
        tool: str | None,
        finish: str,
        prompt_tokens: int,
        prefill: int | None,
    ) -> None:
        ctx = self._ctx
        stats = ctx.stats
        meta = (
            b'data: {"id":"chatcmpl-%b","object":"chat.completion.chunk","created":%d,"model":%b,'
            % (
                ctx.text.next_id().encode(),
                int(time.time()),
                json_string(chat.model),
            )
        )
        common = meta + b'"choices":[{"index":0,'
        role = common + _ROLE_TAIL
        if ctx.config.early_role_event:
            conn.write(chunk(role))  # before the prefill, well before the first token
            role = b""
        # The role event rides in the first token's chunk: reasoning's if any.
        content_ids = ids[reasoning:]
        first_role = b"" if reasoning else role
        emit: Emit
        if tool is None:
            opening = common + b'"delta":{"content":"'
            emit = content_emitter(conn, stats, content_ids, first_role + opening, opening, _PIECES)
        else:
            call_id = ctx.text.next_tool_id().encode()
            emit = _tool_emitter(conn, stats, common, first_role, content_ids, tool, call_id)
        if reasoning:
            opening = common + b'"delta":{"reasoning_content":"'
            thinking = content_emitter(
                conn, stats, ids[:reasoning], role + opening, opening, _PIECES, reasoning=True
            )
            emit = split_emitter(reasoning, thinking, emit)

        await ctx.capacity.serve(len(ids), emit, conn, prefill)
        tail = common + b'"delta":{},"logprobs":null,"finish_reason":"%b"}]}\n\n' % finish.encode()
        if chat.include_usage:
            usage = _usage(prompt_tokens, len(ids), reasoning)
            tail += meta + b'"choices":[],"usage":%b}\n\n' % dumps(usage).encode()
        tail += b"data: [DONE]\n\n"
        conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail))


_ROLE_TAIL = (
    b'"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}\n\n'
)
"""The end of the role-only event that opens every stream, after its choice's index."""


def _usage(prompt_tokens: int, completion_tokens: int, reasoning: int) -> dict[str, Any]:
    """The usage block: completion tokens count reasoning and content (or tool-call) tokens."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _tool_emitter(
    conn: ServerConnection,
    stats: StatsSnapshot,
    common: bytes,
    first_role: bytes,
    ids: list[int],
    tool: str,
    call_id: bytes,
) -> Emit:
    """``emit`` for a tool call streamed as ``tool_calls`` deltas, its arguments a word each.

    ``first_role`` (the role event, or nothing) rides in the first delta's chunk.
    """
    first_prefix = (
        first_role
        + common
        + (
            b'"delta":{"tool_calls":[{"index":0,'
            b'"id":"%b","type":"function","function":{"name":%b,"arguments":"'
            % (call_id, dumps(tool).encode())
        )
    )
    prefix = common + b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"'
    suffix = b'"}}]},"logprobs":null,"finish_reason":null}]}\n\n\r\n'
    last = len(ids) - 1

    def emit(begin: int, end: int) -> None:
        for i in range(begin, end):
            piece = OPEN_ARGS + WORD_BYTES[ids[0]] if i == 0 else SPACED_WORD_BYTES[ids[i]]
            if i == last:
                piece += CLOSE_ARGS
            head = first_prefix if i == 0 else prefix
            size = len(head) + len(piece) + len(suffix) - 2
            conn.write(b"%x\r\n%b%b%b" % (size, head, piece, suffix))
        stats.chunks_sent += end - begin

    return emit


def parse_openai(body: dict[str, Any], default_model: str) -> Chat:
    """A chat completion request's body as a :class:`Chat`, or a 400."""
    model = opt_str(body, "model") or default_model
    messages = chat_messages(body)
    max_tokens = opt_positive_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = opt_positive_int(body, "max_tokens")
    names = tool_names(body)
    choice = body.get("tool_choice")
    tool_choice: str | None
    if choice is None:
        tool_choice = "auto" if names else "none"
    elif choice in ("auto", "none", "required"):
        tool_choice = str(choice)
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        name = choice["function"]["name"]
        if name not in names:
            raise bad(f"tool_choice names {name!r}, which is not in 'tools'")
        tool_choice = "=" + name
    else:
        raise bad(
            "'tool_choice' must be 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    if tool_choice != "none" and not names and tool_choice != "auto":
        raise bad("'tool_choice' is only allowed when 'tools' are given")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad("'stream_options' must be an object")
    include_usage = bool(options and options.get("include_usage") is True)
    return Chat(
        model=model,
        messages=messages,
        stream=opt_bool(body, "stream", False),
        max_tokens=max_tokens,
        temperature=opt_number(body, "temperature", 1.0),
        seed=opt_seed(body, "seed"),
        tool_names=names,
        tool_choice=tool_choice,
        include_usage=include_usage,
        min_tokens=max_tokens
        if opt_bool(body, "ignore_eos", False)
        else opt_positive_int(body, "min_tokens"),
    )


def openai_tool(chat: Chat, auto_tool_calls: int) -> str | None:
    """The tool the answer calls, or None for a content answer."""
    if not chat.tool_names or chat.tool_choice is None or chat.tool_choice == "none":
        return None
    if chat.tool_choice.startswith("="):
        return chat.tool_choice[1:]
    if chat.tool_choice == "required":
        return chat.tool_names[0]
    results = sum(1 for m in chat.messages if m.get("role") == "tool")
    return chat.tool_names[0] if results < auto_tool_calls else None
