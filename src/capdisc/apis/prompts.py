"""What each request asks: one fixed prompt, seeded synthetic prompts, or a dataset's.

Real servers cache prompts (llama.cpp served a repeated prompt 27 of its 28 tokens
from its cache), so a load that repeats one prompt measures almost no prompt
processing. Synthetic prompts are unique from their first token, so no prefix cache
can serve them; dataset prompts are the user's own.

The n-th request of a session gets prompt n: the prompt of a request depends only on
the seed and its place in the session's order of starts, never on which user sent
it, so both versions of a comparison get the same prompts in the same order. A
comparison's pairs start at different places (``Workload.first_request``), and a
synthetic prompt's unique prefix names the version it is sent to: the two blocks of a
pair get prompts of the same lengths and words, and still neither can be served from
the other's prefix cache when both versions share one backend. Prompts
are built lazily, one per request, from a generator seeded by ``(seed, n)``, as a
slice of a seeded text of words prepared once per seed: no prompt is kept, and building
one costs microseconds (``benchmarks/prompts.py``).

Tokens without a tokenizer: a synthetic prompt of N tokens is N short common English
words (after a unique prefix of about 4 tokens). Common BPE tokenizers (the GPT,
Llama, Mistral and Qwen families) encode each of these words with its leading space
as one token, so the prompt's real token count lands within a few percent of N; the
server's own ``usage.prompt_tokens`` (``input_tokens`` in ``requests.csv``) says
exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capdisc.errors import UsageError
from capdisc.settings import TokenCount, WorkloadSettings

__all__ = [
    "MIN_STREAM_TOKENS",
    "SAMPLE_DATASET",
    "DatasetEntry",
    "PromptSource",
    "load_dataset",
    "prompt_source",
    "refuse_hopeless_streams",
]

SAMPLE_DATASET = Path(__file__).resolve().parent / "data" / "sample.jsonl"

# One-token words for the common tokenizers (with their leading space).
_WORD_TEXT = (
    "the of and to in is it for on with as at by from this that be are was were have "
    "has had not but or an all can will one two three new more most some time year day "
    "way man work life part place case point group number system world country state "
    "water room home money book word line name fact hand night house story job face "
    "car city team side head game area study power war music road eye light heart open "
    "long great small large old right high last best good free real full plan rate cost "
    "test data load user step list node file code page form text view note"
)
_WORDS = tuple(_WORD_TEXT.split())
# A streamed answer succeeds with more than 2 content chunks: it needs 3 tokens at least.
MIN_STREAM_TOKENS = 3


@dataclass(frozen=True)
class DatasetEntry:
    """One line of a dataset: the conversation to send, and maybe its output length."""

    messages: tuple[dict[str, Any], ...]
    output_tokens: int | None = None


@dataclass(frozen=True)
class PromptSource:
    """The requests of a run: messages and the output tokens to ask for, by position."""

    prompt: str
    max_tokens: int
    prompt_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    entries: tuple[DatasetEntry, ...] = ()
    seed: int = 0
    _order: tuple[int, ...] = field(default=(), repr=False)

    @property
    def fixed(self) -> bool:
        """True when every request is the same (one prompt, one length)."""
        return not self.entries and self.prompt_tokens is None and self.output_tokens is None

    def request(self, index: int, tag: str = "") -> tuple[list[dict[str, Any]], int]:
        """The messages and max tokens of the ``index``-th request (``tag``: the version it
        goes to, in a synthetic prompt's prefix only)."""
        if self.fixed:
            return [{"role": "user", "content": self.prompt}], self.max_tokens
        rng = random.Random(f"{self.seed}:{index}")
        max_tokens = _draw(rng, self.output_tokens) if self.output_tokens else self.max_tokens
        if self.entries:
            entry = self.entries[self._order[index % len(self._order)]]
            if entry.output_tokens is not None and self.output_tokens is None:
                max_tokens = entry.output_tokens
            return [dict(m) for m in entry.messages], max_tokens
        if self.prompt_tokens is None:
            return [{"role": "user", "content": self.prompt}], max_tokens
        words = max(1, _draw(rng, self.prompt_tokens) - 4)
        prefix = f"#{tag}{index:x}-{rng.getrandbits(32):08x}:"
        return [
            {"role": "user", "content": prefix + _pool(self.seed).words(rng, words)}
        ], max_tokens


class _WordPool:
    """A long seeded text of the one-token words; a prompt is a slice of it.

    Drawing every word per request cost ~80 ns a word (120 us for 1,500 tokens, on the
    hot path); slicing a prepared text at a seeded word offset costs a copy. Prompts
    stay unique from their first token by their prefix, and differ from each other in
    where their slice starts.
    """

    SIZE = 8192

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"{seed}:pool")
        words = rng.choices(_WORDS, k=self.SIZE)
        # Twice over, so a slice starting anywhere can run SIZE words without wrapping.
        self.text = "".join(" " + w for w in words + words)
        self.starts: list[int] = []
        at = 0
        for word in words + words:
            self.starts.append(at)
            at += len(word) + 1
        self.starts.append(at)

    def words(self, rng: random.Random, count: int) -> str:
        """``count`` words (each with its leading space) from a seeded place of the pool."""
        whole, rest = divmod(count, self.SIZE)
        start = rng.randrange(self.SIZE)
        full = self.text[: self.starts[self.SIZE]] * whole
        return full + self.text[self.starts[start] : self.starts[start + rest]]


_POOLS: dict[int, _WordPool] = {}


def _pool(seed: int) -> _WordPool:
    pool = _POOLS.get(seed)
    if pool is None:
        pool = _POOLS[seed] = _WordPool(seed)
    return pool


def _draw(rng: random.Random, count: TokenCount) -> int:
    if count.sd <= 0:
        return count.mean
    return max(1, round(rng.gauss(count.mean, count.sd)))


def load_dataset(spec: str) -> tuple[DatasetEntry, ...]:
    """Read a JSONL dataset (``sample`` is capdisc's own); a bad line names its number."""
    path = SAMPLE_DATASET if spec == "sample" else Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--dataset {spec}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--dataset {spec}: not UTF-8 text") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(_entry(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UsageError(f"--dataset {spec}: line {number}: not JSON ({exc.msg})") from None
        except (ValueError, TypeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"--dataset {spec}: line {number}: {message}") from None
    if not entries:
        raise UsageError(f"--dataset {spec}: no prompt in it")
    return tuple(entries)


def _entry(data: Any) -> DatasetEntry:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    output = data.get("output_tokens")
    if output is not None and (
        not isinstance(output, int) or isinstance(output, bool) or output < 1
    ):
        raise ValueError("output_tokens must be a positive whole number")
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError("each message needs a role and a text content")
            if message.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"unknown role {message.get('role')!r}")
        return DatasetEntry(tuple(messages), output)
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('expected "prompt" (text) or "messages" (a list)')
    return DatasetEntry(({"role": "user", "content": prompt},), output)


def prompt_source(
    workload: WorkloadSettings, prompt: str, max_tokens: int, seed: int
) -> PromptSource:
    """The prompts a run's settings ask for (a dataset is read and checked here)."""
    entries = load_dataset(workload.dataset) if workload.dataset is not None else ()
    if workload.prompt_tokens is not None:
        _pool(seed)  # prepared here (about a millisecond), before any request needs it
    order = list(range(len(entries)))
    random.Random(f"{seed}:order").shuffle(order)
    return PromptSource(
        prompt=prompt,
        max_tokens=max_tokens,
        prompt_tokens=workload.prompt_tokens,
        output_tokens=workload.output_tokens,
        entries=entries,
        seed=seed,
        _order=tuple(order),
    )


def refuse_hopeless_streams(source: PromptSource) -> None:
    """Refuse, in one line, a streamed workload that asks for too few tokens to succeed.

    Success is more than 2 content chunks, so an answer of 2 tokens or fewer is a failure
    however fast the server: the run would measure nothing but failures.
    """
    least = MIN_STREAM_TOKENS
    if source.output_tokens is not None:
        if source.output_tokens.mean < least:
            raise UsageError(
                f"--output-tokens {source.output_tokens.mean}: a streamed answer succeeds with "
                f"more than 2 chunks; ask for {least} tokens or more"
            )
    elif source.entries:
        for number, entry in enumerate(source.entries, start=1):
            if entry.output_tokens is not None and entry.output_tokens < least:
                raise UsageError(
                    f"--dataset: entry {number} asks for {entry.output_tokens} output tokens: "
                    f"a streamed answer succeeds with more than 2 chunks; ask for {least} or more"
                )
    if source.max_tokens < least and source.output_tokens is None and not source.entries:
        raise UsageError(
            f"--max-tokens {source.max_tokens}: a streamed answer succeeds with more than 2 "
            f"chunks; ask for {least} tokens or more"
        )
