"""A server-orchestrated agent task: ``POST /v1/agent/run``.

One request runs a whole tool loop on the server: ``tool_calls`` = N rounds that each
end in a tool call, then a final answer, N+1 model calls in all. Each round queues for
a slot again and costs one service time, as a real agent loop's next model call
would, so a client sees one long request whose duration grows with N.
"""

from __future__ import annotations

import asyncio

from capdisc.simulator.bodies import Chat, dumps, json_object, opt_positive_int, opt_str
from capdisc.simulator.context import Context
from capdisc.simulator.errors import bad
from capdisc.simulator.protocol import Request, ServerConnection
from capdisc.simulator.text import join_text

_MAX_AGENT_TOOL_CALLS = 1000


class AgentApi:
    """Handler of ``/v1/agent/run``."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    async def run(self, conn: ServerConnection, request: Request) -> None:
        ctx = self._ctx
        await ctx.enter_generation(request)
        body = json_object(request.body)
        model = opt_str(body, "model") or ctx.config.model
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise bad("'prompt' must be a string")
        raw_calls = body.get("tool_calls")
        if not isinstance(raw_calls, int) or isinstance(raw_calls, bool):
            raise bad("'tool_calls' must be an integer")
        calls = raw_calls
        if not 0 <= calls <= _MAX_AGENT_TOOL_CALLS:
            raise bad(f"'tool_calls' must be an integer from 0 to {_MAX_AGENT_TOOL_CALLS}")
        max_tokens = opt_positive_int(body, "max_tokens")
        chat = Chat(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            stream=False,
            max_tokens=max_tokens,
            temperature=0.0,
            seed=None,
            tool_names=[],
            tool_choice=None,
            include_usage=False,
        )
        # Each round thinks too: reasoning tokens take time but are not in the answer.
        reasoning, count = ctx.answer_tokens(chat)
        ctx.faults.maybe_fail()
        capacity = ctx.capacity
        stats = ctx.stats
        ticket = capacity.admit()
        try:
            for round_no in range(calls + 1):
                # Each round queues again, as a real agent loop's next model call would.
                if round_no > 0:
                    ticket = capacity.requeue(f"server overloaded during round {round_no + 1}")
                await capacity.wait(ticket)
                try:
                    await capacity.serve(reasoning + count, None, None)
                finally:
                    capacity.release()
                if round_no < calls:
                    stats.tool_calls += 1
            answer = {
                "model": model,
                "tool_calls": calls,
                "rounds": calls + 1,
                "content": join_text(ctx.text.token_ids(chat, reasoning + count)[reasoning:]),
            }
            conn.send(200, dumps(answer).encode())
            stats.served += 1
        except asyncio.CancelledError:
            stats.cancelled += 1
            raise
        finally:
            capacity.leave()
