"""Request templates: a JSON body with ``{placeholders}``, header values with ``{env:NAME}``.

A gateway has its own paths and bodies, so a profile describes them as text
(``target.body``, ``tools.server_body``, ``target.headers``). A template is parsed
once (when the profile is read, so a mistake is one line naming the field before
any load) into literal pieces and placeholder names; filling it per request is one
join. Text values (``{prompt}``, ``{model}``) are JSON-escaped without their quotes
(the template holds the quotes: ``"{prompt}"``); ``{messages}`` is a whole JSON
array, ``{max_tokens}``, ``{temperature}``, ``{stream}`` (and ``{tools}``) JSON
literals. ``{env:NAME}`` is the value of an environment variable, allowed in header
values only: secrets come from the environment, never from a profile.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BODY_PLACEHOLDERS",
    "SERVER_TOOLS_PLACEHOLDERS",
    "Template",
    "body_values",
    "check_body",
    "check_header",
    "env_names",
    "fill_env",
]

# What a body template may ask for (server-orchestrated tool tasks add {tools}).
BODY_PLACEHOLDERS = ("prompt", "messages", "model", "max_tokens", "temperature", "stream")
SERVER_TOOLS_PLACEHOLDERS = (*BODY_PLACEHOLDERS, "tools")

# A brace, a name (or env:NAME), a brace: JSON's own braces are followed by a quote,
# a space or another brace, so they never look like one.
_PLACEHOLDER = re.compile(r"\{(env:[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*)\}")
_ENV = "env:"


@dataclass(frozen=True)
class Template:
    """A text cut at its placeholders: ``pieces`` alternate literal, name, ..., literal."""

    pieces: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, known: Collection[str]) -> Template:
        """Cut ``text``; raise ``ValueError`` naming the first placeholder not in ``known``."""
        pieces = _PLACEHOLDER.split(text)
        for name in pieces[1::2]:
            if name not in known:
                names = ", ".join("{" + k + "}" for k in known) or "none"
                where = " (environment variables only in headers)" if name.startswith(_ENV) else ""
                raise ValueError(f"unknown placeholder {{{name}}}{where} (known: {names})")
        return cls(tuple(pieces))

    @property
    def names(self) -> tuple[str, ...]:
        """The placeholders, in order (repeats included)."""
        return self.pieces[1::2]

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with each placeholder replaced by its value in ``values``."""
        pieces = self.pieces
        if len(pieces) == 1:
            return pieces[0]
        out = list(pieces)
        for i in range(1, len(out), 2):
            out[i] = values[out[i]]
        return "".join(out)


def _text(value: str) -> str:
    """``value`` JSON-escaped, without the quotes the template puts around it."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def body_values(
    *,
    messages: list[dict[str, Any]],
    model: str,
    max_tokens: int,
    temperature: float,
    stream: bool,
    tools: int | None = None,
    only: Collection[str] = SERVER_TOOLS_PLACEHOLDERS,
) -> dict[str, str]:
    """The value of every body placeholder in ``only`` for one request (a template's
    ``names``: a long prompt is escaped only when the template asks for it).

    ``{prompt}`` is the last message's text (a dataset's conversation ends with the
    user's turn).
    """
    values: dict[str, str] = {}
    if "prompt" in only:
        prompt = messages[-1].get("content", "") if messages else ""
        values["prompt"] = _text(str(prompt))
    if "messages" in only:
        values["messages"] = json.dumps(messages, ensure_ascii=False, separators=(",", ":"))
    if "model" in only:
        values["model"] = _text(model)
    values["max_tokens"] = str(int(max_tokens))
    values["temperature"] = json.dumps(float(temperature))
    values["stream"] = "true" if stream else "false"
    if tools is not None:
        values["tools"] = str(int(tools))
    return values


# What a template is checked with: a prompt that needs escaping, both stream values.
_SAMPLE_MESSAGES = [{"role": "user", "content": 'say "hi"\n'}]


def check_body(text: str, known: Collection[str] = BODY_PLACEHOLDERS) -> Template:
    """Parse a body template and prove it is JSON once filled; ``ValueError`` says why not."""
    template = Template.parse(text, known)
    for stream in (False, True):
        values = body_values(
            messages=_SAMPLE_MESSAGES,
            model="m",
            max_tokens=8,
            temperature=0.5,
            stream=stream,
            tools=2 if "tools" in known else None,
        )
        filled = template.fill(values)
        try:
            json.loads(filled)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not JSON once filled ({exc.msg} at column {exc.colno}: "
                f"{filled[max(0, exc.pos - 20) : exc.pos + 20]!r}); text placeholders "
                'need quotes ("{prompt}"), {messages} and numbers none'
            ) from None
    return template


def check_header(name: str, value: str) -> None:
    """A header name and value a request can carry; ``{env:NAME}`` is the only placeholder."""
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ValueError(f"{name!r} is not a header name")
    if "\r" in value or "\n" in value:
        raise ValueError("a header value must be one line")
    for placeholder in _PLACEHOLDER.findall(value):
        if not placeholder.startswith(_ENV):
            raise ValueError(
                f"unknown placeholder {{{placeholder}}} (a header takes only {{env:NAME}})"
            )


def env_names(value: str) -> list[str]:
    """The environment variables ``value`` reads (``{env:NAME}``), in order."""
    return [p[len(_ENV) :] for p in _PLACEHOLDER.findall(value) if p.startswith(_ENV)]


def fill_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``value`` with each ``{env:NAME}`` replaced; ``KeyError(NAME)`` for an unset one."""
    env = os.environ if environ is None else environ

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(_ENV):
            return match.group(0)
        found = env.get(name[len(_ENV) :])
        if not found:
            raise KeyError(name[len(_ENV) :])
        if "\r" in found or "\n" in found:
            raise ValueError(f"${name[len(_ENV) :]} holds a line break")
        return found

    return _PLACEHOLDER.sub(one, value)
