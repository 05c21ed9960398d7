"""Request bodies: JSON helpers, field validators, and the chat request they produce.

Every API parses its body into one :class:`Chat`, so that capacity, text and faults
never see an API's dialect. A field of the wrong type is a 400 naming the field, as a
real server would answer, never a 500.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from capdisc.simulator.errors import bad


@dataclass
class Chat:
    """A validated chat request, whichever API it came from."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    temperature: float
    seed: int | None
    tool_names: list[str]
    tool_choice: str | None
    include_usage: bool
    # At least this many output tokens (min_tokens; ignore_eos asks for max_tokens).
    min_tokens: int | None = None


# --- JSON -----------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON, as servers send it."""
    return json.dumps(value, separators=(",", ":"))


@functools.lru_cache(maxsize=64)
def json_string(text: str) -> bytes:
    """A JSON string literal; cached because every streamed answer embeds its model."""
    return json.dumps(text).encode()


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    if not body:
        raise bad("request body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise bad("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("request body must be a JSON object")
    return data


# --- fields ---------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON true is not 1 here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(f"'{key}' must be a string")
    return value


def opt_positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise bad(f"'{key}' must be a positive integer")
    return int(value)


def opt_number(body: dict[str, Any], key: str, default: float) -> float:
    """A temperature-like number from 0 to 2."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"'{key}' must be a number")
    if not 0 <= value <= 2:
        raise bad(f"'{key}' must be between 0 and 2")
    return float(value)


def opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"'{key}' must be true or false")
    return value


def opt_seed(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise bad(f"'{key}' must be an integer")
    return int(value)


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``messages``: a non-empty list of objects with a string role."""
    found = body.get("messages")
    if not isinstance(found, list) or not found:
        raise bad("'messages' must be a non-empty list")
    for i, message in enumerate(found):
        if not isinstance(message, dict):
            raise bad(f"messages[{i}] must be an object")
        if not isinstance(message.get("role"), str):
            raise bad(f"messages[{i}].role must be a string")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad(f"messages[{i}].content must be a string, a list of parts or null")
    return found


def tool_names(body: dict[str, Any]) -> list[str]:
    """The function names of ``tools`` (the same shape in both APIs), in order."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise bad("'tools' must be a list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise bad(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
        names.append(function["name"])
    return names
