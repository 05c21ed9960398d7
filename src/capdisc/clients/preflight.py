"""Preflight: one small request proves the target is ready before any load is sent.

It checks, in this order, that the target is reachable, accepts the credentials,
knows the model and answers in the format capdisc expects; the first problem is
raised as :class:`~capdisc.errors.TargetUnreachable` naming the URL and the cause.
Uses httpx (the control plane), never the load generator's client.
"""

from __future__ import annotations

import time

import httpx

from capdisc.clients.wire import wire_format
from capdisc.errors import TargetUnreachable
from capdisc.target import Target

__all__ = ["preflight"]


# A server error or a refused connection may be passing (a server still starting,
# one unlucky request): try again a few times before calling the target down.
ATTEMPTS = 3
RETRY_DELAY_S = 1.0


def preflight(target: Target, *, timeout_s: float | None = None) -> None:
    """Check ``target`` with one short chat request; raise ``TargetUnreachable`` on a problem.

    Server errors (5xx) and refused connections are retried up to ``ATTEMPTS`` times.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _check(target, timeout_s)
            return
        except _Transient as exc:
            if attempt == ATTEMPTS:
                raise TargetUnreachable(exc.message, hint=exc.hint) from None
            time.sleep(RETRY_DELAY_S)


class _Transient(TargetUnreachable):
    """A failure worth one more try."""


def _check(target: Target, timeout_s: float | None) -> None:
    fmt = wire_format(target.api)
    url = target.base_url + fmt.chat_path
    body = fmt.body(
        model=target.model,
        messages=[{"role": "user", "content": "ping"}],
        max_tokens=4,
        temperature=0.0,
        stream=False,
    )
    timeout = timeout_s if timeout_s is not None else min(target.timeout_s, 30.0)
    headers = {"Content-Type": "application/json", **target.auth_headers()}
    try:
        # follow_redirects=False: a redirect must never carry the key to another host.
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, content=fmt.encode(body), headers=headers)
    except httpx.TimeoutException:
        raise TargetUnreachable(f"{url}: no answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        cause = str(exc) or exc.__class__.__name__
        raise _Transient(
            f"{url}: cannot connect ({cause})", hint="is the server running on that address?"
        ) from None
    status = response.status_code
    if status in (401, 403):
        where = f"${target.api_key_env}" if target.api_key_env else "an API key"
        state = "is set" if target.api_key is not None else "is not set"
        raise TargetUnreachable(
            f"{url}: HTTP {status}, credentials refused ({where} {state})",
            hint="set the variable named by target.api_key_env in the profile",
        )
    if status == 404:
        raise TargetUnreachable(
            f"{url}: HTTP 404: unknown endpoint or model {target.model!r} for api {target.api!r}",
            hint="check --api and --model",
        )
    if 300 <= status < 400:
        raise TargetUnreachable(f"{url}: HTTP {status} redirect (not followed, to protect keys)")
    if status >= 500:
        raise _Transient(f"{url}: HTTP {status}: {_snippet(response)}")
    if status != 200:
        raise TargetUnreachable(f"{url}: HTTP {status}: {_snippet(response)}")
    try:
        answer = fmt.parse_answer(response.content)
    except ValueError as exc:
        raise TargetUnreachable(
            f"{url}: unexpected answer for api {target.api!r}: {exc}", hint="check --api"
        ) from None
    if not answer.has_completion:
        raise TargetUnreachable(f"{url}: answer holds no completion")


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:160] or "(empty body)"
