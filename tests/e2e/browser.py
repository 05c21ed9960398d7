"""A headless Chromium driven over the DevTools protocol on a pipe: no package, no download.

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its file
descriptor 3 and writes answers and events to 4, each a JSON message ended by a NUL
byte. This module opens a page, records every script error, console error and network
request it makes, reads values out of it and takes screenshots: what the report test
needs, and nothing a test would need a browser package for.

:func:`find_chromium` says where the browser is, or why there is none (the test skips
saying so).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Browser", "Page", "find_chromium"]

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """The browser's path (``CAPDISC_CHROMIUM`` or the usual names), or None and why."""
    named = os.environ.get("CAPDISC_CHROMIUM")
    if named:
        return (
            (named, "")
            if Path(named).is_file()
            else (None, f"CAPDISC_CHROMIUM={named}: no such file")
        )
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found, ""
    return None, (
        "no Chromium on this machine (looked for " + ", ".join(_NAMES) + "); "
        "install Debian's package: apt-get install -y chromium"
    )


class ProtocolError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process; :meth:`open` loads a page in a new tab."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the protocol's descriptors 3 and 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",  # root in a container has no user namespace for the sandbox
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--hide-scrollbars",
                f"--user-data-dir={profile_dir}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    waiting = list(self._answers.values())
                for answer in waiting:
                    answer.put({"error": {"message": "the browser closed its pipe"}})
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        answer = self._answers.get(message["id"])
                    if answer is not None:
                        answer.put(message)
                else:
                    for listener in list(self._listeners):
                        listener(message)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:  # fmt: skip
        """One command and its answer (a protocol error raises)."""
        ident = next(self._ids)
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._answers[ident] = answer
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        try:
            reply = answer.get(timeout=timeout)
        finally:
            with self._lock:
                del self._answers[ident]
        if "error" in reply:
            raise ProtocolError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def open(self, url: str, width: int = 1000, height: int = 1200) -> Page:
        """A new tab showing ``url``, loaded, with its errors and requests recorded."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        self._listeners.append(page.on_event)
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        page.navigate(url)
        return page

    def close(self) -> None:
        with contextlib.suppress(ProtocolError, OSError, queue.Empty):
            self.send("Browser.close", timeout=10)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: what went wrong in it, what it fetched, and how to read it."""

    def __init__(self, browser: Browser, session: str) -> None:
        self._browser = browser
        self._session = session
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._loaded = threading.Event()

    def on_event(self, message: dict[str, Any]) -> None:
        if message.get("sessionId") != self._session:
            return
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(
                f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}"
            )
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self._loaded.set()

    def navigate(self, url: str, timeout: float = 60) -> None:
        self._loaded.clear()
        answer = self._browser.send("Page.navigate", {"url": url}, session=self._session)
        if answer.get("errorText"):
            raise ProtocolError(f"{url}: {answer['errorText']}")
        if not self._loaded.wait(timeout):
            raise TimeoutError(f"{url} did not load in {timeout:g} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when a promise)."""
        answer = self._browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self._session,
        )
        if "exceptionDetails" in answer:
            raise ProtocolError(f"{expression}: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout:g} s: {expression}")
            time.sleep(0.1)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """A PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self._browser.send("Page.getLayoutMetrics", session=self._session)
            content = size.get("cssContentSize") or size["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0, "y": 0, "width": content["width"], "height": content["height"], "scale": 1,
            }  # fmt: skip
        data = self._browser.send("Page.captureScreenshot", params, session=self._session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
