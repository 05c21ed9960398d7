"""Locust users for the three workloads: batch, stream and tools, with constant pacing.

Every user starts a task every ``interval`` seconds, on its own schedule (each task is
due one interval after the previous one was due, :func:`next_start`, so the client's
wake-up delay does not accumulate); an overrun starts the next task at once and the
slip shows in the record as ``ts_start - ts_scheduled``. The first task waits a seeded random phase within
the first interval, so a step's new users spread their requests evenly instead
of arriving as one burst.

The HTTP client is geventhttpclient's bare ``HTTPClient``, one per user, created in
``on_start`` (after gevent patching). capdisc measures time to first byte and end to
end itself, counts stream chunks on the raw bytes, and fires Locust's ``request``
event once per request with the CSV row in ``context["row"]``: the listeners
(records, failure threshold, live progress, Locust's own stats) all hang off it.

Every request (tool task) sent gets a row. A row carries the step of the moment its
request started, and while it runs the request is in :attr:`SessionState.in_flight`,
which the engine reads to close a step only once its requests have ended. A user
killed mid-request (a stop past its stop timeout) still fires the row of what it had
in flight, with the error :data:`~capdisc.loadgen.outcome.STOPPED_IN_FLIGHT`, before
it goes.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gevent
import gevent.monkey
from gevent import GreenletExit
from locust import User, task
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_STOPPING

from capdisc.apis.events import dotted_value
from capdisc.apis.formats import format_for
from capdisc.apis.prompts import PromptSource
from capdisc.apis.wire import Answer, WireFormat
from capdisc.loadgen.connection import UserConnection
from capdisc.loadgen.contract import Workload
from capdisc.loadgen.outcome import STOPPED_IN_FLIGHT, Outcome, blank_or_count, blank_or_ms
from capdisc.loadgen.pacing import next_start
from capdisc.loadgen.state import SessionState
from capdisc.records import ROUND_PREFIX, RequestRecord
from capdisc.templates import SERVER_TOOLS_PLACEHOLDERS, Template, body_values

__all__ = ["Outcome", "RequestFailed", "make_user_class"]


class RequestFailed(Exception):
    """The failure a user reports to Locust; its text is the record's ``error``."""


class _RequestTimeout(Exception):
    pass


_numbers = itertools.count(1)

# Test only (never set in use): each task first holds the event loop this long without
# yielding, as a process at its limit does, so the tests can make one load process
# client-bound cheaply and the same way on any machine (tests/e2e/test_client_bound.py).
_TEST_HOLD_LOOP_S = float(os.environ.get("CAPDISC_TEST_HOLD_LOOP_MS") or 0) / 1000.0
_hold_loop: Callable[[float], None] = gevent.monkey.get_original("time", "sleep")


class PacedUser(User):
    """Base of capdisc's users: constant pacing, one HTTP client, one row per request."""

    abstract = True
    workload: ClassVar[Workload]
    session: ClassVar[SessionState]
    # Distributed workers number their users from their own block.
    number_offset: ClassVar[int] = 0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.number = self.number_offset + next(_numbers)
        target = self.workload.target
        self.fmt: WireFormat = format_for(target.config)
        # What the server sends back may echo a secret header: errors are masked.
        self._mask = target.mask if target.api_key is not None or target.headers else None
        self._prompts = self.workload.prompts or PromptSource(
            prompt=target.prompt, max_tokens=target.max_tokens
        )
        # The phase depends on the seed, the session's place in the prompt order and the
        # user's place among the session's users (from 1), never on its number in the run:
        # the two blocks of a comparison pair get the same arrival pattern, as they get
        # the same prompts, so the pair's difference is the servers' alone. (A discovery,
        # one session from the first request, keeps the phases it always had.)
        w = self.workload
        place = next(self.session.users) + 1
        self._rng = random.Random(w.seed * 1_000_003 + w.first_request * 7_919 + place)
        self._next_start = 0.0
        self._first = True
        # The step in which the current task started (every row of it carries it), and
        # the tool round in flight (name, start), for the row of a cut.
        self._step = 0
        self._round: tuple[str, float] | None = None
        self._conn: UserConnection | None = None
        self._fire: Callable[..., Any] = environment.events.request.fire
        target = self.workload.target
        self._timeout = target.timeout_s

    def wait_time(self) -> float:
        return max(0.0, self._next_start - time.time())

    def on_start(self) -> None:
        target = self.workload.target
        self._conn = UserConnection(
            target.base_url, timeout_s=self._timeout, headers=target.auth_headers()
        )
        self._next_start = time.time() + self._rng.uniform(0.0, self.workload.interval_s)

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @task
    def paced_task(self) -> None:
        if self._first:
            # Interruptible wait for this user's phase (Locust may stop us here).
            self._first = False
            self.wait()
        # Locust kills a waiting user it stops, but the user's own timer may wake it
        # first: one yield lets such a kill land here, and a graceful stop asked
        # meanwhile ends the user, before a request is sent after the stop.
        gevent.sleep(0)
        if self._state == LOCUST_STATE_STOPPING:
            raise StopUser
        scheduled = self._next_start
        started = time.time()
        self._next_start = next_start(scheduled, started, self.workload.interval_s)
        if _TEST_HOLD_LOOP_S:
            _hold_loop(_TEST_HOLD_LOOP_S)
        session = self.session
        self._step = session.step
        in_flight = session.in_flight
        in_flight[self.number] = (round(started, 6), self._step)
        try:
            self.run_task(scheduled, started)
        except GreenletExit:
            self._report_cut(scheduled, started)
            raise
        finally:
            # After the row was fired: whoever sees the entry gone finds the row.
            in_flight.pop(self.number, None)

    def run_task(self, scheduled: float, started: float) -> None:
        """One paced task; subclasses implement it."""
        raise NotImplementedError

    # -- reporting -------------------------------------------------------

    def _report_cut(self, scheduled: float, started: float) -> None:
        """Rows for what this user had in flight when it was killed (its round, its task)."""
        now = time.time()
        cut = Outcome()
        cut.error = STOPPED_IN_FLIGHT
        if self._round is not None:
            name, round_started = self._round
            self._round = None
            self.report(name, round_started, round_started, now - round_started, cut)
        self.report(self.workload.kind, scheduled, started, now - started, cut)

    def report(
        self, name: str, scheduled: float, started: float, duration_s: float, outcome: Outcome
    ) -> None:
        """Fire Locust's request event with the raw record attached."""
        duration_ms = duration_s * 1000.0
        error = outcome.error
        if error and self._mask is not None:
            error = self._mask(error)
        row = RequestRecord(
            round(scheduled, 6),
            round(started, 6),
            round(started + duration_s, 6),
            self.number,
            self._step,
            self.workload.version,
            name,
            outcome.status,
            0 if error else 1,
            round(duration_ms, 3),
            connect_ms=blank_or_ms(outcome.connect_ms),
            ttfb_ms=blank_or_ms(outcome.ttfb_ms),
            ttft_ms=blank_or_ms(outcome.ttft_ms),
            tpot_ms=blank_or_ms(outcome.tpot_ms),
            itl_mean_ms=blank_or_ms(outcome.itl_mean_ms),
            itl_max_ms=blank_or_ms(outcome.itl_max_ms),
            output_tokens=blank_or_count(outcome.output_tokens),
            input_tokens=blank_or_count(outcome.input_tokens),
            tokens_estimated=blank_or_count(outcome.tokens_estimated),
            chunks=blank_or_count(outcome.chunks),
            tool_calls=blank_or_count(outcome.tool_calls),
            reconnects=outcome.reconnects,
            error=error,
        )
        self._fire(
            request_type="POST",
            name=name,
            response_time=duration_ms,
            response_length=outcome.length,
            exception=RequestFailed(error) if error else None,
            context={"row": row},
        )

    def exchange(
        self, path: str, payload: bytes, *, stream: bool, judge: Callable[[bytes, Outcome], None]
    ) -> Outcome:
        """One request: HTTP 200 is handed to ``judge``, anything else is a failure with its cause."""
        outcome = Outcome()
        try:
            body = self.post(path, payload, stream=stream, outcome=outcome)
            if not stream:
                outcome.length = len(body)
            if outcome.status != 200:
                outcome.error = f"HTTP {outcome.status}"
            else:
                judge(body, outcome)
        except (RequestFailed, ValueError) as exc:
            outcome.error = str(exc)
        return outcome

    # -- HTTP ------------------------------------------------------------

    def post(self, path: str, payload: bytes, *, stream: bool, outcome: Outcome) -> bytes:
        """POST and read the whole body; fills ``outcome``'s status and timings.

        Time to the first byte (streams) counts from the moment a connection was
        ready: the connecting is ``connect_ms``. Raises ``RequestFailed`` for a
        timeout or a connection problem.
        """
        conn = self._conn
        if conn is None:
            raise RequestFailed("client not started")
        t0 = time.perf_counter()
        try:
            with gevent.Timeout(self._timeout, _RequestTimeout):
                exchange = conn.post(path, payload)
                response = exchange.response
                outcome.connect_ms = exchange.connect_s * 1000.0
                outcome.reconnects = exchange.reconnects
                outcome.status = status = response.status_code
                if stream and status == 200:
                    # The hot path: each read is timed and scanned as it arrives, and
                    # the body is not kept.
                    scanner = self.fmt.scanner()
                    read, clock = response.read_some, time.perf_counter
                    data = read()
                    first_byte = now = clock()
                    length = 0
                    while data:
                        length += len(data)
                        scanner.feed(data, now)
                        data = read()
                        now = clock()
                    scanner.close(now)
                    outcome.length = length
                    outcome.add_stream(scanner, t0 + exchange.connect_s, first_byte, now)
                    body = b""
                else:
                    body = response.read()
                response.release()
        except _RequestTimeout:
            conn.discard()
            raise RequestFailed(f"timeout after {self._timeout:g}s") from None
        except Exception as exc:  # any socket or protocol error is one failed request
            conn.discard()
            raise RequestFailed(_describe(exc)) from None
        return body

    def next_request(self) -> tuple[list[dict[str, Any]], int]:
        """The messages and max tokens of the session's next request."""
        return self._prompts.request(next(self.session.requests), self.workload.version)

    def chat_body(
        self, messages: list[dict[str, Any]], max_tokens: int, *, stream: bool, **kw: Any
    ) -> bytes:
        w = self.workload
        return self.fmt.payload(
            model=w.target.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=w.temperature,
            stream=stream,
            seed=w.seed,
            exact=w.target.config.output_control,
            **kw,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:200]


class BatchUser(PacedUser):
    """One non-streaming completion per task; success = HTTP 200 with a completion."""

    abstract = True

    def run_task(self, scheduled: float, started: float) -> None:
        messages, max_tokens = self.next_request()
        payload = self.chat_body(messages, max_tokens, stream=False)
        t0 = time.perf_counter()
        outcome = self.exchange(self.fmt.chat_path, payload, stream=False, judge=self._judge)
        self.report("batch", scheduled, started, time.perf_counter() - t0, outcome)

    def _judge(self, body: bytes, outcome: Outcome) -> None:
        answer = self.fmt.parse_answer(body)
        outcome.add_usage(answer)
        if not answer.has_completion:
            outcome.error = "answer holds no completion"


class StreamUser(PacedUser):
    """One streamed completion per task; success = HTTP 200 and more than 2 chunks."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        # With one prompt, the body is the same for every task (temperature 0): built once.
        self._payload: bytes | None = None
        if self._prompts.fixed:
            self._payload = self.chat_body(*self._prompts.request(0), stream=True)

    def run_task(self, scheduled: float, started: float) -> None:
        payload = self._payload or self.chat_body(*self.next_request(), stream=True)
        t0 = time.perf_counter()
        outcome = self.exchange(self.fmt.stream_path, payload, stream=True, judge=self._judge)
        self.report("stream", scheduled, started, time.perf_counter() - t0, outcome)

    def _judge(self, body: bytes, outcome: Outcome) -> None:
        # The stream was scanned as it arrived (post): content events, no JSON.
        if outcome.event_error:
            outcome.error = outcome.event_error
        elif (outcome.chunks or 0) <= 2:
            outcome.error = f"only {outcome.chunks or 0} content chunks"


class ToolsUser(PacedUser):
    """A conversation with exactly N tool calls per task, verified every time."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        tools = self.workload.tools
        if tools is None:
            raise RuntimeError("a tools workload needs its ToolsSettings")
        self._tools = tools
        self._server_body = Template.parse(tools.server_body, SERVER_TOOLS_PLACEHOLDERS)
        self._server_names = frozenset(self._server_body.names)

    def run_task(self, scheduled: float, started: float) -> None:
        if self._tools.orchestration == "server":
            self._server_task(scheduled, started)
        else:
            self._client_task(scheduled, started)

    def _client_task(self, scheduled: float, started: float) -> None:
        expected = self._tools.tools
        messages, max_tokens = self.next_request()
        t0 = time.perf_counter()
        task = Outcome(tool_calls=0)
        for round_no in range(1, expected + 2):
            final = round_no == expected + 1
            payload = self.chat_body(
                messages,
                max_tokens,
                stream=False,
                tools=True,
                tool_choice="none" if final else "required",
            )
            answers: list[Answer] = []
            judge = functools.partial(
                self._judge_round, final=final, before=task.tool_calls or 0, answers=answers
            )
            r_started, r0 = time.time(), time.perf_counter()
            self._round = (f"{ROUND_PREFIX}{round_no}", r_started)
            outcome = self.exchange(self.fmt.chat_path, payload, stream=False, judge=judge)
            self._round = None
            self.report(
                f"{ROUND_PREFIX}{round_no}", r_started, r_started, time.perf_counter() - r0, outcome
            )
            task.status = outcome.status
            task.tool_calls = (task.tool_calls or 0) + (outcome.tool_calls or 0)
            task.connect_ms = (task.connect_ms or 0.0) + (outcome.connect_ms or 0.0)
            task.reconnects += outcome.reconnects
            task.add_tokens(outcome)
            if outcome.error:
                task.error = outcome.error
                break
            answer = answers[0]
            messages.append(self.fmt.assistant_message(answer))
            messages.extend(self.fmt.tool_result_message(call) for call in answer.tool_calls)
        if not task.error and task.tool_calls != expected:
            task.error = f"expected {expected} tool calls, got {task.tool_calls}"
        self.report("tools", scheduled, started, time.perf_counter() - t0, task)

    def _judge_round(
        self, body: bytes, outcome: Outcome, *, final: bool, before: int, answers: list[Answer]
    ) -> None:
        """A forced round must return a tool call; the final round, the answer and no call."""
        answer = self.fmt.parse_answer(body)
        answers.append(answer)
        outcome.add_usage(answer)
        outcome.tool_calls = len(answer.tool_calls)
        if final and not answer.tool_calls and not answer.content:
            outcome.error = "final round holds no answer"
        elif final == bool(answer.tool_calls):
            expected = self._tools.tools
            outcome.error = f"expected {expected} tool calls, got {before + len(answer.tool_calls)}"

    def _server_task(self, scheduled: float, started: float) -> None:
        w = self.workload
        tools = self._tools
        expected = tools.tools
        messages, max_tokens = self.next_request()
        values = body_values(
            messages=messages,
            model=w.target.model,
            max_tokens=max_tokens,
            temperature=w.temperature,
            stream=False,
            tools=expected,
            only=self._server_names,
        )
        payload = self._server_body.fill(values).encode()

        def judge(body: bytes, outcome: Outcome) -> None:
            count = outcome.tool_calls = _count_field(body, tools.server_count_field)
            if count != expected:
                outcome.error = f"expected {expected} tool calls, got {count}"

        t0 = time.perf_counter()
        outcome = self.exchange(tools.server_path, payload, stream=False, judge=judge)
        self.report("tools", scheduled, started, time.perf_counter() - t0, outcome)


def _count_field(body: bytes, dotted: str) -> int:
    try:
        value: Any = dotted_value(json.loads(body), dotted.split("."))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("answer is not JSON") from None
    except LookupError:
        raise ValueError(f"answer has no {dotted!r}") from None
    if isinstance(value, list):
        return len(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{dotted!r} is not a count")
    return value


_KINDS: dict[str, type[PacedUser]] = {"batch": BatchUser, "stream": StreamUser, "tools": ToolsUser}


def make_user_class(workload: Workload, session: SessionState) -> type[PacedUser]:
    """A concrete user class bound to one workload (Locust instantiates classes)."""
    base = _KINDS[workload.kind]
    name = f"{workload.kind.capitalize()}User"
    return type(name, (base,), {"abstract": False, "workload": workload, "session": session})
