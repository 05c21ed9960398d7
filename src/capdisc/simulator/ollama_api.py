"""Ollama's native chat API: ``POST /api/chat``, NDJSON stream (its default) or JSON.

Streams one line per token, then a ``done`` line with Ollama's counts and nanosecond
durations (``load_duration`` is the time spent queued for a slot). Reasoning tokens
come first, as lines whose message has ``"content":""`` and ``"thinking":"word"``;
``eval_count`` counts them with the content tokens. A tool call is not streamed
token by token: as in Ollama, it arrives as one message when it is complete.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from capdisc.simulator.bodies import (
    Chat,
    chat_messages,
    dumps,
    is_int,
    json_object,
    json_string,
    opt_bool,
    opt_number,
    opt_seed,
    opt_str,
    tool_names,
)
from capdisc.simulator.capacity import Emit
from capdisc.simulator.context import Context
from capdisc.simulator.errors import bad
from capdisc.simulator.protocol import Request, ServerConnection
from capdisc.simulator.streaming import content_emitter, split_emitter
from capdisc.simulator.text import count_prompt_tokens, join_text, word_pieces

# Built once, so that a streamed token costs one join and one write.
_PIECES = word_pieces(b'"},"done":false}\n\r\n')


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


class OllamaApi:
    """Handler of ``/api/chat``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def chat(self, conn: ServerConnection, request: Request) -> None:
        ctx = self._ctx
        await ctx.enter_generation(request)
        received = asyncio.get_running_loop().time()
        config = ctx.config
        chat = parse_ollama(json_object(request.body), config.model)
        reasoning, count = ctx.answer_tokens(chat)
        # Out of tokens while reasoning: no room left for a tool call either.
        tool = chat.tool_names[0] if chat.tool_names and count else None
        done_reason = "length" if tool is None and count < config.output_tokens else "stop"
        ids = ctx.text.token_ids(chat, reasoning + count)  # reasoning first
        prompt_tokens = count_prompt_tokens(chat.messages)
        prefill = ctx.prefill_tokens(chat, prompt_tokens)
        ctx.faults.maybe_fail()
        capacity = ctx.capacity
        stats = ctx.stats
        ticket = capacity.admit()
        now = time.time()
        created_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (
            f".{int(now % 1 * 1e6):06d}Z"
        )
        model_json = json_string(chat.model)
        try:
            if chat.stream:
                conn.start_chunked(b"application/x-ndjson")
            await capacity.wait(ticket)
            try:
                if chat.stream and (tool is None or reasoning):
                    timing = await self._stream(
                        conn, ids, reasoning, tool is None, model_json, created_at, prefill
                    )
                else:
                    timing = await capacity.serve(len(ids), None, None, prefill)
            finally:
                capacity.release()
            message: dict[str, Any] = {"role": "assistant", "content": ""}
            if tool is not None:
                message["tool_calls"] = [
                    {"function": {"name": tool, "arguments": {"q": join_text(ids[reasoning:])}}}
                ]
            elif not chat.stream:
                message["content"] = join_text(ids[reasoning:])
            if reasoning and not chat.stream:
                message["thinking"] = join_text(ids[:reasoning])
            start, prefilled, end = timing
            final = {
                "model": chat.model,
                "created_at": created_at,
                "message": message,
                "done_reason": done_reason,
                "done": True,
                "total_duration": _ns(end - received),
                "load_duration": _ns(start - received),  # time queued for a slot
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": _ns(prefilled - start),
                "eval_count": len(ids),  # reasoning and content tokens
                "eval_duration": _ns(end - prefilled),
            }
            if not chat.stream:
                conn.send(200, dumps(final).encode())
            else:
                lines = b""
                if tool is not None:
                    # Ollama sends a parsed tool call as one message, when it is complete.
                    call = {
                        "model": chat.model,
                        "created_at": created_at,
                        "message": message,
                        "done": False,
                    }
                    lines += dumps(call).encode() + b"\n"
                    stats.chunks_sent += 1
                    final["message"] = {"role": "assistant", "content": ""}
                lines += dumps(final).encode() + b"\n"
                conn.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(lines), lines))
            if tool is not None:
                stats.tool_calls += 1
            stats.served += 1
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            capacity.leave()

    async def _stream(
        self,
        conn: ServerConnection,
        ids: list[int],
        reasoning: int,
        content: bool,
        model_json: bytes,
        created_at: str,
        prefill: int | None,
    ) -> tuple[float, float, float]:
        """Stream the reasoning lines, then the content lines (``content`` False: a
        tool call, sent whole afterwards)."""
        # One timestamp per answer: formatting a clock per token would cost more than
        # the rest of the chunk, and no client reads it.
        prefix = b'{"model":%b,"created_at":"%b","message":{"role":"assistant","content":"' % (
            model_json,
            created_at.encode(),
        )
        stats = self._ctx.stats
        emit: Emit | None = None
        if content:
            emit = content_emitter(conn, stats, ids[reasoning:], prefix, prefix, _PIECES)
        if reasoning:
            # Ollama's order: the empty content, then the thinking.
            think = prefix + b'","thinking":"'
            thinking = content_emitter(
                conn, stats, ids[:reasoning], think, think, _PIECES, reasoning=True
            )
            emit = split_emitter(reasoning, thinking, emit)
        return await self._ctx.capacity.serve(len(ids), emit, conn, prefill)


def parse_ollama(body: dict[str, Any], default_model: str) -> Chat:
    """An ``/api/chat`` body as a :class:`Chat`, or a 400."""
    model = opt_str(body, "model") or default_model
    messages = chat_messages(body)
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise bad("'options' must be an object")
    num_predict = options.get("num_predict")
    if num_predict is not None and not is_int(num_predict):
        raise bad("'options.num_predict' must be an integer")
    # Ollama reads num_predict <= 0 as "no limit".
    max_tokens = int(num_predict) if num_predict is not None and num_predict > 0 else None
    return Chat(
        model=model,
        messages=messages,
        stream=opt_bool(body, "stream", True),
        max_tokens=max_tokens,
        temperature=opt_number(options, "temperature", 0.8),
        seed=opt_seed(options, "seed"),
        tool_names=tool_names(body),
        tool_choice=None,
        include_usage=False,
    )
