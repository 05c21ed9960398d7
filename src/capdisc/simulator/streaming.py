"""The per-token hot path: a streamed answer written as one HTTP chunk per token.

This is where the simulator's CPU per chunk is spent, so nothing is formatted here:
each chunk is joined from byte pieces built once (the chunk-size line, the event's
prefix, a per-word tail from :func:`capdisc.simulator.text.word_pieces`) and handed
to the transport in one ``write``. ``benchmarks/simulator.py`` measures it against a
raw asyncio server.

An answer with reasoning is two runs of tokens, each with its own event prefix:
the reasoning tokens, then the content (or tool-call) tokens; :func:`split_emitter`
joins the emitters of the two runs into one over the answer's token positions.
"""

from __future__ import annotations

from capdisc.simulator.capacity import Emit
from capdisc.simulator.protocol import ServerConnection
from capdisc.simulator.stats import StatsSnapshot

CHUNK_HEADS = tuple(b"%x\r\n" % n for n in range(4096))
"""The size line of an HTTP chunk of each size below 4 KiB."""


def chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP chunk (for the few writes outside the token loop)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def content_emitter(
    conn: ServerConnection,
    stats: StatsSnapshot,
    ids: list[int],
    first_prefix: bytes,
    prefix: bytes,
    pieces: tuple[tuple[bytes, ...], tuple[bytes, ...]],
    *,
    reasoning: bool = False,
) -> Emit:
    """``emit(start, stop)`` for a run of tokens: one HTTP chunk and one write per token.

    Each piece ends a chunk: the word, the rest of the event, the CRLF closing the
    HTTP chunk. ``first_prefix`` opens the first token's event (it may begin with
    whole events that ride on the first token's write, such as the role event),
    ``prefix`` the others'. Tokens count in ``stats.chunks_sent``, or in
    ``stats.reasoning_sent`` for a run of reasoning tokens.
    """
    write, closing = conn.raw_writer()
    heads = CHUNK_HEADS
    n_heads = len(heads)
    first_pieces, later_pieces = pieces
    # Frames per word, built on first use: an answer has a few dozen distinct words,
    # so most tokens cost one list lookup and one write.
    frames: list[bytes | None] = [None] * len(later_pieces)
    base = len(prefix) - 2  # the piece's closing CRLF is not chunk data
    join = b"".join

    def emit(start: int, stop: int) -> None:
        if start == 0 and stop > 0:
            piece = first_pieces[ids[0]]
            size = len(first_prefix) - 2 + len(piece)
            write(join((heads[size] if size < n_heads else b"%x\r\n" % size, first_prefix, piece)))
            if reasoning:
                stats.reasoning_sent += 1
            else:
                stats.chunks_sent += 1
            start = 1
        # Checked every few chunks, not every one: once the client is gone, asyncio
        # drops our writes but warns from the fifth on.
        for block in range(start, stop, 4):
            if closing():
                return
            end = block + 4 if block + 4 < stop else stop
            for idx in ids[block:end]:
                data = frames[idx]
                if data is None:
                    piece = later_pieces[idx]
                    size = base + len(piece)
                    data = join(
                        (heads[size] if size < n_heads else b"%x\r\n" % size, prefix, piece)
                    )
                    frames[idx] = data
                write(data)
            if reasoning:
                stats.reasoning_sent += end - block
            else:
                stats.chunks_sent += end - block

    return emit


def split_emitter(split: int, first: Emit, then: Emit | None) -> Emit:
    """One ``emit`` over an answer whose tokens before ``split`` go to ``first``.

    The others go to ``then`` as positions from 0 (``None``: they are not streamed,
    as an Ollama tool call, sent whole at the end).
    """

    def emit(start: int, stop: int) -> None:
        if start < split:
            first(start, stop if stop < split else split)
        if stop > split and then is not None:
            then(start - split if start > split else 0, stop - split)

    return emit
