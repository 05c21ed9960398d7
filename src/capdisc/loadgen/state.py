"""What a session's users share with its engine: the step, the request count, what is in flight.

Free of Locust (the users in :mod:`capdisc.loadgen.users` import it, and gevent's
patching with it), so that the engine's bookkeeping can be used and tested alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

__all__ = ["SessionState", "nearest_rank"]


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of sorted, non-empty ``ordered``: cheap
    enough for the live figures of the load processes (the reported figures interpolate,
    in :mod:`capdisc.metrics`)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class SessionState:
    """What users share with the engine: the current step number, the place of the
    next request in the session (which picks its prompt) and of the next user (which
    seeds its phase), and what is in flight."""

    def __init__(self, first_request: int = 0) -> None:
        self.step = 0
        self.requests = itertools.count(first_request)
        # The place of each new user among the session's (it seeds the user's phase).
        self.users = itertools.count()
        # This process's requests (tool tasks) in flight: user number -> (ts_start as
        # in its row, step). A user runs one task at a time, so its number is the key;
        # the entry goes once the row is fired (or the user is cut).
        self.in_flight: dict[int, tuple[float, int]] = {}
        # On a master: what each worker last said it had in flight, as
        # node id -> (when it said so, [(user, ts_start), ...]), on the master's clock.
        self.remote_in_flight: dict[str, tuple[float, list[tuple[int, float]]]] = {}

    def report_remote(
        self, node_id: str, said_at: float, entries: Iterable[tuple[int, float]]
    ) -> None:
        """A worker's ``in_flight`` as of ``said_at`` (sent after every row it had)."""
        self.remote_in_flight[node_id] = (said_at, [(int(u), float(t)) for u, t in entries])

    def forget_remote(self, node_id: str) -> None:
        """A worker gone: its requests are no longer ours to wait for."""
        self.remote_in_flight.pop(node_id, None)
