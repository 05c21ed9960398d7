"""When failures stop a run: the failure threshold, counted over the run or over a recent window.

The write-up's rule: after N failed requests the run stops, as a Ctrl+C would, and every
file is written with the clean data from before the server broke (N = 5 by default,
0 = never). A discovery counts every failure of the run: it climbs until the server
breaks, and then it should stop.

A comparison sends thousands of requests at a load both versions should sustain; a rare
error rate would reach five failures over a whole run (a 0.05% rate in 69% of default
comparisons). So there the threshold counts each version's failures among its latest
``WINDOW_PER_FAILURE x N`` requests (100 by default): a version that fails five of its
last hundred is broken and still stops the run within seconds, while a 0.2% error rate
(0.2 failures in a hundred on average) stops about one comparison in a thousand.
Locust-free (the engine calls :meth:`FailureThreshold.note` for each row), so it can be
tested alone.
"""

from __future__ import annotations

from collections import deque

__all__ = ["WINDOW_PER_FAILURE", "FailureThreshold"]

# A comparison's window: this many requests of a version per failure of the threshold.
WINDOW_PER_FAILURE = 20


class FailureThreshold:
    """Counts failures; says once when ``limit`` is reached (``limit`` 0: never).

    ``window`` None counts over the whole run; a number counts, per version, the
    failures among that version's latest ``window`` requests.
    """

    def __init__(self, limit: int, window: int | None = None) -> None:
        self.limit = limit
        self.window = window
        self.failures = 0  # every failure of the run, for the progress line
        self.version: str | None = None  # the version that reached the threshold
        self._recent: dict[str, deque[bool]] = {}
        self._recent_failures: dict[str, int] = {}
        self._reached = False

    @classmethod
    def for_comparison(cls, limit: int) -> FailureThreshold:
        """The comparison's rule: per version, among its latest 20 x ``limit`` requests."""
        return cls(limit, window=WINDOW_PER_FAILURE * limit if limit else None)

    def note(self, version: str, ok: bool) -> str | None:
        """Count one answered request; the stop's detail the first time the limit is reached."""
        if not ok:
            self.failures += 1
        if self.window is None:
            if ok or not self.limit or self._reached or self.failures < self.limit:
                return None
            return self._reach(
                version, f"{self.failures} failed requests reached the threshold of {self.limit}"
            )
        recent = self._recent.get(version)
        if recent is None:
            recent = self._recent[version] = deque(maxlen=self.window)
            self._recent_failures[version] = 0
        if len(recent) == self.window and not recent[0]:
            self._recent_failures[version] -= 1
        recent.append(ok)
        if not ok:
            self._recent_failures[version] += 1
        count = self._recent_failures[version]
        if not self.limit or self._reached or count < self.limit:
            return None
        name = version.upper() or "the target"
        return self._reach(
            version,
            f"{name} failed {count} of its latest {len(recent)} requests "
            f"(failure threshold {self.limit} in {self.window})",
        )

    def note_for(self, version: str) -> str:
        """The count toward the threshold, for the progress line (empty over the run)."""
        if self.window is None or not self.limit:
            return ""
        count = self._recent_failures.get(version, 0)
        return f"{count}/{self.limit} in {version.upper()}'s latest {self.window}"

    def _reach(self, version: str, detail: str) -> str:
        self._reached = True
        self.version = version or None
        return detail
