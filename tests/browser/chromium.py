"""Headless Chromium (Debian's ``chromium`` package, installed by ``make setup``) for the page tests.

A page is loaded from a copy with two small scripts around it: the first one, before anything of
the page, records every JavaScript error (``error`` and ``unhandledrejection`` events); the last
one writes them into the DOM with the page's layout width, so ``--dump-dom`` returns both. The
console is read as well (``--enable-logging=stderr``): an uncaught error is logged there too.
The pages under test carry no script of their own; the hook makes sure one added later is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOOK_HEAD = ("<script>window.__errors=[];addEventListener('error',function(e){__errors.push(String(e.message||e))});"
             "addEventListener('unhandledrejection',function(e){__errors.push('unhandled rejection: '+e.reason)});"
             "</script>")
HOOK_END = ("<script>document.documentElement.setAttribute('data-probe',JSON.stringify({errors:__errors,"
            "scroll_width:document.documentElement.scrollWidth,client_width:document.documentElement.clientWidth}))"
            "</script>")
_CONSOLE_ERROR = re.compile(r"CONSOLE\(\d+\)\]\s+\"(Uncaught[^\"]*)\"|Uncaught \w*Error[^\n]*")


def binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise AssertionError("chromium is not installed: run `make setup` (scripts/setup-packages.sh installs it)")
    return found


@dataclass
class Loaded:
    dom: str
    errors: list[str]
    scroll_width: int
    client_width: int
    console_errors: list[str]


def _run(args: list[str], timeout: int = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [binary(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage",
               "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def load(page: Path, width: int = 1400, height: int = 1000) -> Loaded:
    """The DOM of ``page`` after loading it at ``width`` px, with the JavaScript errors it raised."""
    probe = page.with_name(f".probe-{page.name}")
    text = page.read_text(encoding="utf-8")
    head = text.index("<head>") + len("<head>")
    end = text.rindex("</body>")
    probe.write_text(text[:head] + HOOK_HEAD + text[head:end] + HOOK_END + text[end:], encoding="utf-8")
    try:
        proc = _run(["--enable-logging=stderr", "--v=0", f"--window-size={width},{height}", "--dump-dom",
                     probe.resolve().as_uri()])
    finally:
        probe.unlink()
    match = re.search(r"data-probe=\"([^\"]*)\"", proc.stdout)
    assert proc.returncode == 0 and match, f"chromium could not load {page}: rc={proc.returncode}\n{proc.stderr[-3000:]}"
    data = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [m.group(1) or m.group(0) for m in _CONSOLE_ERROR.finditer(proc.stderr)]
    return Loaded(proc.stdout, data["errors"], data["scroll_width"], data["client_width"], console)


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 2000) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--window-size={width},{height}", f"--screenshot={out.resolve()}", page.resolve().as_uri()])
    assert proc.returncode == 0 and out.is_file() and out.stat().st_size > 10_000, \
        f"no screenshot of {page}: rc={proc.returncode}\n{proc.stderr[-3000:]}"
    return out
