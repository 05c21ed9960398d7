"""The simulated answers' text: words rather than tokens, and their pre-built bytes.

An answer is a window of a seeded ring of words, so that a prompt at temperature 0
(or with a seed) always gets the same answer, and streaming a token costs a lookup in
tables built once at import rather than any formatting.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from capdisc.simulator.bodies import Chat

_RING_SIZE = 4099

# Words, not real tokens: readable, JSON-safe, and all of similar length.
_WORD_TEXT = (
    "the model answers with steady tokens while load grows and latency stays within "
    "its budget until every slot is busy then requests wait in a queue so throughput "
    "flattens as capacity is reached pacing keeps offered rate honest users send "
    "prompts servers stream chunks back quickly measured carefully simulated output "
    "text for testing only batch tools compare versions faster slower median "
    "percentile interval step"
)
WORDS = tuple(_WORD_TEXT.split())
WORD_BYTES = tuple(w.encode() for w in WORDS)
SPACED_WORD_BYTES = tuple(b" " + w for w in WORD_BYTES)
OPEN_ARGS = b'{\\"q\\": \\"'  # '{"q": "' inside a JSON string
CLOSE_ARGS = b'\\"}'


def word_pieces(suffix: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Per word: the end of a streamed chunk, first token (no space) and later ones."""
    return (
        tuple(w + suffix for w in WORD_BYTES),
        tuple(w + suffix for w in SPACED_WORD_BYTES),
    )


def join_text(ids: list[int]) -> str:
    """The text of an answer's token ids."""
    return " ".join(WORDS[i] for i in ids)


def content_text(content: Any) -> str:
    """A message's text, whether its content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def count_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """An estimate of the prompt's length in tokens."""
    # The usual rule of thumb: about 4 characters a token, plus a few per message.
    return sum(3 + (len(content_text(m.get("content"))) + 3) // 4 for m in messages)


class TextSource:
    """The token ids of answers, and unique ids for answers and tool calls."""

    def __init__(self, seed: int) -> None:
        self._text_rng = random.Random()
        ring_rng = random.Random(seed + 2)
        ring = [ring_rng.randrange(len(WORDS)) for _ in range(_RING_SIZE)]
        self._ring2 = ring + ring  # doubled so that most slices never wrap
        self._hash_key = str(seed).encode()
        self._id_salt = f"{random.getrandbits(32):08x}"
        self._ids = 0
        self._tool_ids = 0

    def token_ids(self, chat: Chat, count: int) -> list[int]:
        """Token indices of an answer: a window of a seeded ring of words.

        Deterministic when the temperature is 0 or the request names a seed: the
        window starts at a hash of the last user message, so one prompt always gets
        one answer. Otherwise it starts anywhere.
        """
        if chat.temperature == 0 or chat.seed is not None:
            text = last_user_text(chat.messages)
            digest = hashlib.blake2b(
                f"{chat.seed}\x00{text}".encode("utf-8", "replace"),
                digest_size=8,
                key=self._hash_key,
            ).digest()
            start = int.from_bytes(digest, "big") % _RING_SIZE
        else:
            start = self._text_rng.randrange(_RING_SIZE)
        if count <= _RING_SIZE:
            return self._ring2[start : start + count]
        return [self._ring2[(start + i) % _RING_SIZE] for i in range(count)]

    def next_id(self) -> str:
        """A completion id, unique across simulator processes (salted) and requests."""
        self._ids += 1
        return f"{self._id_salt}{self._ids:010x}"

    def next_tool_id(self) -> str:
        self._tool_ids += 1
        return f"call_{self._tool_ids}"
