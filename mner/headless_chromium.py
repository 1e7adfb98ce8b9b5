"""A page in headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

No Prefect import: the UI checks (tests, ``scripts/ui_screenshot.py``) open the Prefect UI like a
user's browser does, run a line of JavaScript in the page (have its images loaded?) and save a
screenshot. Chromium is started with :func:`mner.processes.spawn` in a profile folder of its own,
so it dies with the process that started it; the protocol's messages go over the ``websockets``
client Prefect already installs.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mner import processes

INSTALL = "apt-get install -y chromium (make setup does, as root)"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         "--remote-debugging-port=0"]

# Every <img> whose source is a PNG data URI: is it complete, its size, and the share of its pixels that decoded
# opaque (drawn on a canvas): the size comes from the PNG's header alone, and rows of a cut PNG stay transparent.
PNG_IMAGES = """[...document.images].filter(i => i.src.startsWith('data:image/png')).map(i => {
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [i.naturalWidth, i.naturalHeight];
  let opaque = 0;
  if (i.complete && canvas.width) {
    const context = canvas.getContext('2d');
    context.drawImage(i, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    for (let k = 3; k < rgba.length; k += 4) opaque += rgba[k] === 255;
    opaque /= canvas.width * canvas.height;
  }
  return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight, opaque: opaque};
})"""


def chromium_path() -> str:
    """The chromium executable on PATH; raises ``FileNotFoundError`` naming the install step."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise FileNotFoundError(f"chromium not found on PATH: {INSTALL}")
    return found


class Page:
    """One tab, reached through a DevTools session on the browser's socket."""

    def __init__(self, socket: Any, session_id: str) -> None:
        self._socket, self._session, self._ids = socket, session_id, itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command to this tab and return its result (events on the way are dropped)."""
        return _command(self._socket, self._ids, method, params, self._session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript ``expression`` in the page (JSON-serialisable values only)."""
        reply = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"JavaScript error in {expression!r}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float, done: Any = bool) -> Any:
        """Evaluate ``expression`` every half second until ``done(value)`` or ``timeout``; return the last value.

        An evaluation that fails (the page is still navigating, or the expression throws) is tried
        again until ``timeout``, then raises.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            else:
                if done(value) or time.monotonic() > deadline:
                    return value
            time.sleep(0.5)

    def png_images(self, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every PNG data-URI image on the page once ``expected`` of them have finished loading, or at ``timeout``.

        Each is ``{"alt", "complete", "width", "height", "opaque"}``: an image the browser could not
        decode is complete with width 0; ``opaque`` is the share of its pixels that decoded opaque (1 for
        a whole figure on its opaque background, less where the data was cut short).
        """
        return self.wait_for(PNG_IMAGES, timeout,
                             lambda found: len(found) >= expected and all(i["complete"] for i in found))

    def top_of_text(self, text: str) -> float | None:
        """Page y (CSS pixels) of the first element whose own text starts with ``text``; None if there is none."""
        return self.evaluate(
            "(() => { const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);"
            f" for (let n = walk.nextNode(); n; n = walk.nextNode()) if (n.textContent.trim().startsWith({json.dumps(text)}))"
            " return n.parentElement.getBoundingClientRect().top + window.scrollY; return null; })()")

    def screenshot(self, out: Path, height: float | None = None) -> None:
        """Save the visible viewport as a PNG, cut at ``height`` CSS pixels from the top when given."""
        params: dict[str, Any] = {"format": "png"}
        if height is not None:
            metrics = self.send("Page.getLayoutMetrics")["cssVisualViewport"]
            params["clip"] = {"x": 0, "y": 0, "width": metrics["clientWidth"], "height": height, "scale": 1}
        out.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))


def _command(socket: Any, ids: Iterator[int], method: str, params: dict[str, Any], session: str | None = None
             ) -> dict[str, Any]:
    """One request/response over the DevTools socket; raises ``RuntimeError`` with the browser's error."""
    number = next(ids)
    socket.send(json.dumps({"id": number, "method": method, "params": params,
                            **({"sessionId": session} if session else {})}))
    while True:
        message = json.loads(socket.recv(timeout=60))
        if message.get("id") == number:
            if "error" in message:
                raise RuntimeError(f"DevTools {method}: {message['error']}")
            return message.get("result", {})


def _devtools_url(profile: Path, browser: subprocess.Popen, timeout: float) -> str:
    """The browser's DevTools socket, from the ``DevToolsActivePort`` file Chromium writes into its profile."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise RuntimeError(f"chromium exited with code {browser.returncode} before it listened")
        lines = port_file.read_text(encoding="utf-8").split() if port_file.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    raise TimeoutError(f"chromium wrote no {port_file.name} within {timeout:.0f} s")


@contextmanager
def open_page(url: str, width: int = 1400, height: int = 1100, start_timeout: float = 60.0) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile, open ``url`` in a ``width`` x ``height`` tab, yield it.

    The browser and its process group are stopped on leaving. Raises ``FileNotFoundError`` when
    chromium is not installed.
    """
    from websockets.sync.client import connect

    command = [chromium_path(), *FLAGS, f"--window-size={width},{height}"]
    with tempfile.TemporaryDirectory(prefix="mner-chromium-") as profile:
        browser = processes.spawn([*command, f"--user-data-dir={profile}", "about:blank"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            with connect(_devtools_url(Path(profile), browser, start_timeout), max_size=None) as socket:
                ids = itertools.count(1_000_000)  # browser-level ids, apart from the page's
                target = _command(socket, ids, "Target.createTarget", {"url": "about:blank"})["targetId"]
                session = _command(socket, ids, "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
                page = Page(socket, session)
                page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                          mobile=False)
                page.send("Page.navigate", url=url)
                yield page
        finally:
            processes.stop(browser)
