"""Render pages of a built docs site to PNG with headless Chromium (see screenshots.sh).

Serves the site on 127.0.0.1 and drives Chromium over its DevTools pipe: each page is
loaded at 1280 px wide and photographed screen by screen, top to bottom, as a reader
scrolling it sees it (``NAME-01.png``, ``NAME-02.png``...). Beside the pictures go the
page's DOM once rendered (``NAME.html``) and ``pages.json``: for each page its title,
first heading, height, pictures, and the code blocks and tables wider than the page shows
(they scroll sideways). Chromium reaches nothing but the loopback address, and every
step has a deadline: the run stops by itself.

Usage: python render_pages.py CHROMIUM SITE_DIR OUT_DIR NAME=PATH...
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

WIDTH = 1280
HEIGHT = 1000
"""The window: a laptop screen's width, and one screenful per picture."""
OVERLAP = 120
"""Pixels each picture repeats from the previous one (the sticky header covers ~50)."""
MAX_SHOTS = 80
"""Pictures per page at most (the longest page needs about 50)."""
STEP_SECONDS = 30.0
"""Deadline of one step (start, load a page, take a picture)."""

# No transitions: a picture taken right after a scroll shows where things end up (the
# header's title slides between the site's name and the page's).
_STILL = """(() => {
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { transition: none !important; " +
    "animation: none !important; }";
  document.head.appendChild(style);
  return true;
})()"""

# Inside the page: what a reader sees, and what does not fit the width.
_INSPECT = """(() => {
  const wide = [];
  for (const el of document.querySelectorAll(
      ".md-content pre > code, .md-content .md-typeset__table, .md-content table")) {
    if (el.scrollWidth > el.clientWidth + 1) {
      const page = document.documentElement.scrollTop + el.getBoundingClientRect().top;
      wide.push({tag: el.tagName.toLowerCase(), top: Math.round(page),
                 shown: el.clientWidth, needs: el.scrollWidth,
                 text: el.innerText.trim().split("\\n")[0].slice(0, 80)});
    }
  }
  // How many columns a code block shows without scrolling sideways.
  let codeColumns = null;
  const code = document.querySelector(".md-content pre > code");
  if (code) {
    const probe = document.createElement("span");
    probe.textContent = "0".repeat(100);
    code.appendChild(probe);
    const style = getComputedStyle(code);
    const inner = code.clientWidth - parseFloat(style.paddingLeft)
      - parseFloat(style.paddingRight);
    codeColumns = Math.floor(inner / (probe.getBoundingClientRect().width / 100));
    probe.remove();
  }
  const h1 = document.querySelector(".md-content h1");
  return {title: document.title, h1: h1 ? h1.innerText.replace(/¶$/, "").trim() : null,
          height: document.documentElement.scrollHeight,
          pageWidth: document.documentElement.scrollWidth, codeColumns: codeColumns,
          wide: wide};
})()"""


class RenderError(Exception):
    """A page could not be rendered (the message says which and why)."""


class Chromium:
    """A headless Chromium driven over ``--remote-debugging-pipe`` (fds 3 and 4)."""

    def __init__(self, executable: str, profile: str, log: IO[bytes]) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def place_pipes() -> None:  # in the child, before exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        # Root has no user namespace sandbox to drop into; anyone else keeps the sandbox.
        no_sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
        self.log = log
        self.process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--remote-debugging-pipe",
                *no_sandbox,
                f"--user-data-dir={profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "--hide-scrollbars",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                # Loopback only: every other host name fails to resolve, no proxy, and none
                # of the background traffic (updates, metrics, sync).
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--no-proxy-server",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-first-run",
                "--no-default-browser-check",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(3, 4),
            preexec_fn=place_pipes,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.session = ""

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        browser: bool = False,
        timeout: float = STEP_SECONDS,
    ) -> Any:
        """Call ``method`` (of the page, or of the ``browser``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RenderError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, event: str, timeout: float = STEP_SECONDS) -> dict[str, Any]:
        """Wait for the next ``event`` of the page (``RenderError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, seen in enumerate(self._events):
                if seen["method"] == event:
                    del self._events[: i + 1]
                    return seen
            reply = self._receive(deadline, event)
            if "method" in reply:
                self._events.append(reply)

    def forget_events(self) -> None:
        """Drop the events received so far (before waiting for a new one)."""
        self._events.clear()

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RenderError(f"Chromium did not answer in time ({waiting_for})")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RenderError(f"Chromium exited ({waiting_for}):\n{self.output()}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        result: dict[str, Any] = json.loads(message)
        return result

    def output(self) -> str:
        """What Chromium printed (its log), for error messages."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(RenderError, OSError):
            self.send("Browser.close", browser=True, timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


def evaluate(browser: Chromium, expression: str) -> Any:
    """The value of a JavaScript expression in the page (promises awaited)."""
    result = browser.send(
        "Runtime.evaluate",
        {"expression": expression, "returnByValue": True, "awaitPromise": True},
    )
    if "exceptionDetails" in result:
        raise RenderError(f"script failed in the page: {result['exceptionDetails']}")
    return result["result"].get("value")


def render(browser: Chromium, url: str, name: str, out: Path) -> dict[str, Any]:
    """Load ``url``, photograph it screen by screen into ``out``; what was seen."""
    browser.forget_events()
    navigation = browser.send("Page.navigate", {"url": url})
    if navigation.get("errorText"):
        raise RenderError(f"{url}: {navigation['errorText']}")
    browser.wait_for("Page.loadEventFired")
    evaluate(browser, _STILL)
    evaluate(browser, "document.fonts.ready.then(() => true)")
    seen: dict[str, Any] = evaluate(browser, _INSPECT)
    if not seen["h1"]:
        raise RenderError(f"{url}: the page has no heading (title {seen['title']!r})")
    (out / f"{name}.html").write_text(
        evaluate(browser, "document.documentElement.outerHTML"), encoding="utf-8"
    )
    shots: list[str] = []
    top = 0
    while len(shots) < MAX_SHOTS:
        evaluate(browser, f"window.scrollTo(0, {top}); window.scrollY")
        picture = browser.send("Page.captureScreenshot", {"format": "png"})
        path = out / f"{name}-{len(shots) + 1:02d}.png"
        path.write_bytes(base64.b64decode(picture["data"]))
        shots.append(path.name)
        if top + HEIGHT >= seen["height"]:
            break
        top += HEIGHT - OVERLAP
    return {"url": url, **seen, "shots": shots}


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``site`` on a free loopback port, quietly; the server and its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    executable, site, out = argv[0], Path(argv[1]), Path(argv[2])
    pages = dict(arg.split("=", 1) for arg in argv[3:])
    for name, path in pages.items():
        if not (site / path / "index.html").is_file():
            print(f"screenshots: the site has no page {path or '/'} ({name})", file=sys.stderr)
            return 1
    out.mkdir(parents=True, exist_ok=True)
    # A time limit's SIGTERM (screenshots.sh) still closes Chromium on the way out.
    signal.signal(
        signal.SIGTERM, lambda signum, frame: sys.exit(f"screenshots: stopped ({signum})")
    )
    server, base = serve(site)  # bound before Chromium starts: its port is known
    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        tempfile.TemporaryFile() as log,
    ):
        browser = Chromium(executable, profile, log)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        report: dict[str, Any] = {}
        try:
            targets = browser.send("Target.getTargets", browser=True)["targetInfos"]
            page = next(t["targetId"] for t in targets if t["type"] == "page")
            attached = browser.send(
                "Target.attachToTarget", {"targetId": page, "flatten": True}, browser=True
            )
            browser.session = attached["sessionId"]
            browser.send("Page.enable")
            browser.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            )
            for name, path in pages.items():
                report[name] = render(browser, base + path, name, out)
                seen = report[name]
                print(f"{name}: {len(seen['shots'])} pictures, {seen['h1']!r}", file=sys.stderr)
                for wide in seen["wide"]:
                    print(
                        f"  wider than shown ({wide['shown']} < {wide['needs']} px) at "
                        f"y={wide['top']}: {wide['tag']} {wide['text']!r}",
                        file=sys.stderr,
                    )
        except (RenderError, StopIteration, KeyError, OSError) as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 1
        finally:
            browser.close()
            server.shutdown()
            server.server_close()
    (out / "pages.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
