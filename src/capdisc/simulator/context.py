"""What every API handler shares: one simulator's parts, and the gate of a generation.

A handler gets a :class:`Context` instead of the server, so that it sees the capacity
model, the faults, the API key and the text source, but not routing or sockets.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from capdisc.simulator.auth import ApiKey, read_api_key
from capdisc.simulator.bodies import Chat, dumps
from capdisc.simulator.capacity import SlotPool
from capdisc.simulator.config import SimulatorConfig
from capdisc.simulator.faults import Faults
from capdisc.simulator.protocol import Request
from capdisc.simulator.stats import StatsSnapshot
from capdisc.simulator.text import TextSource

# Prompts a simulator remembers for its prompt cache (least recently used dropped).
_PROMPT_CACHE_SIZE = 4096


class Context:
    """The parts of one simulator that its handlers work with.

    Raises ``ValueError`` when ``config.api_key_env`` names an unset variable.
    """

    def __init__(self, config: SimulatorConfig, stats: StatsSnapshot) -> None:
        self.config = config
        self.stats = stats
        self.auth = ApiKey(read_api_key(config))
        self.capacity = SlotPool(config, stats)
        self.faults = Faults(config.faults, config.seed, stats, self.capacity)
        self.text = TextSource(config.seed)
        self._prompts: OrderedDict[bytes, None] = OrderedDict()
        # No fault and no key: the common case skips their checks on the hot path.
        self._plain = not self.auth.required and not self.faults.gates_requests

    async def enter_generation(self, request: Request) -> None:
        """Count a generation request and apply the faults that act before any answer."""
        self.stats.requests += 1
        if self._plain:
            return
        await self.faults.before_answer()
        self.auth.check(request)

    def answer_tokens(self, chat: Chat) -> tuple[int, int]:
        """How many reasoning and content tokens the answer to ``chat`` has."""
        return self.config.answer_tokens(chat.max_tokens, chat.min_tokens)

    def prefill_tokens(self, chat: Chat, prompt_tokens: int) -> int | None:
        """The prompt tokens to process before the first token; None when the prompt
        cache (``prompt_cache``) has seen this exact prompt (the prefill is skipped)."""
        if not self.config.prompt_cache:
            return prompt_tokens
        key = hashlib.blake2b(dumps(chat.messages).encode(), digest_size=16).digest()
        cache = self._prompts
        self.stats.prompt_cache_queries += prompt_tokens
        if key in cache:
            cache.move_to_end(key)
            self.stats.prompt_cache_hits += 1
            self.stats.prompt_cache_hit_tokens += prompt_tokens
            return None
        cache[key] = None
        if len(cache) > _PROMPT_CACHE_SIZE:
            cache.popitem(last=False)
        return prompt_tokens
