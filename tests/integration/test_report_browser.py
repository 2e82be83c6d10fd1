"""The field report in a real headless Chromium, and ``tag-folder --report --explain`` through a real
TorchServe (both integration: they need Debian's ``chromium``, installed by the ``chromium`` fixture
through scripts/install_system_tools.sh when missing, or Java).

The tests drive Chromium over the DevTools protocol (``websocket-client``): they record every
console message, exception, log entry, dialog and network request of the page, so "no errors,
nothing fetched from outside the report folder" is checked, not assumed. The review is driven with
real input events (mouse clicks and key presses, as a person makes them), and its export is read back
from Chromium's download folder.
``LIZAALERT_UPDATE_DOCS=1`` makes the screenshot test write docs/report.png.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import (HOSTILE_DATE, HOSTILE_FILES, HOSTILE_MAKE, HOSTILE_NAMES, ROOT, add_hostile_photos, field_photos,
                      make_field_run as make_run, read_details_csv, run_tagctl)

pytestmark = pytest.mark.integration

INSTALL_TOOLS = ROOT / "scripts" / "install_system_tools.sh"
SCREENSHOT = ROOT / "docs" / "report.png"


def tokens_of(row: dict, spec) -> set[str]:
    """The report's filter tokens of a details.csv row: binary key, or key-code for categorical values."""
    out = set()
    for a in spec.attributes:
        code = int(row[f"{a.key}_code"])
        if code:
            out.add(a.key if a.is_binary else f"{a.key}-{code}")
    return out


# --- Chromium over the DevTools protocol ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed when missing (integration tests only)."""
    if not shutil.which("chromium"):
        result = subprocess.run(["bash", str(INSTALL_TOOLS), "chromium"], capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            pytest.fail(f"chromium missing and {INSTALL_TOOLS.name} could not install it:\n{result.stdout}\n{result.stderr}")
    path = shutil.which("chromium")
    if not path:
        pytest.fail("chromium still not on the PATH after installing the Debian package")
    return path


class Browser:
    """One headless Chromium; ``open(url)`` gives a fresh tab (``Tab``) that records what the page does."""

    def __init__(self, binary: str) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="lizaalert-chromium-")
        args = [binary, "--headless", "--disable-gpu", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--mute-audio", "--hide-scrollbars",
                "--lang=ru-RU", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and len(port_file.read_text().split()) == 2):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().split()
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def _receive(self, timeout: float) -> dict:
        self.ws.settimeout(max(0.05, timeout))
        message = json.loads(self.ws.recv())
        if message.get("method") == "Page.javascriptDialogOpening":  # an alert() would block the page: dismiss it
            self.next_id += 1
            self.ws.send(json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": False}, "sessionId": message.get("sessionId")}))
        return message

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        wanted = self.next_id
        message = {"id": wanted, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline - time.monotonic())
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def pump(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds``."""
        import websocket

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = self._receive(deadline - time.monotonic())
            except websocket.WebSocketTimeoutException:
                return
            if "method" in message:
                self.events.append(message)

    def open(self, url: str, width: int = 1200, height: int = 900) -> "Tab":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session, target)
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            tab.send(method)
        tab.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        tab.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + 60
        while not tab.events("Page.loadEventFired"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            self.pump(0.2)
        tab.wait_images()
        return tab

    def close(self) -> None:
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser, self.session, self.target = browser, session, target

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events if e["method"] == method and e.get("sessionId") == self.session]

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_images(self) -> None:
        """Until every image the page asked for (in view: the rest are lazy) has loaded or failed."""
        self.js("Promise.all(Array.from(document.images).filter(i => i.src && !i.complete && i.loading !== 'lazy')"
                ".map(i => new Promise(r => { i.onload = i.onerror = r; })))")
        self.browser.pump(0.3)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, log errors (CSP violations included),
        failed loads and dialogs, as lines."""
        out = [f"console.{e['type']}: {' '.join(str(a.get('value', a.get('description', ''))) for a in e['args'])}"
               for e in self.events("Runtime.consoleAPICalled") if e["type"] in ("error", "warning", "assert")]
        out += [f"exception: {e['exceptionDetails'].get('exception', {}).get('description') or e['exceptionDetails']['text']}"
                for e in self.events("Runtime.exceptionThrown")]
        out += [f"log {e['entry']['level']} ({e['entry']['source']}): {e['entry']['text']}"
                for e in self.events("Log.entryAdded") if e["entry"]["level"] in ("error", "warning")]
        # A cancelled load is the page dropping a request it no longer needs (the viewer moved on to
        # another photo before the last one arrived): not a failure. Everything else is.
        out += [f"load failed: {e.get('errorText')} {e.get('blockedReason', '')}" for e in self.events("Network.loadingFailed")
                if not e.get("canceled")]
        out += [f"dialog: {e['type']} {e['message']}" for e in self.events("Page.javascriptDialogOpening")]
        return out

    def requests(self) -> list[str]:
        return [e["request"]["url"] for e in self.events("Network.requestWillBeSent")]

    def outside(self, folder: Path) -> list[str]:
        """Requests for anything but the files under ``folder`` (``data:`` URLs are Chromium's own icons)."""
        prefix = folder.resolve().as_uri() + "/"
        return [u for u in self.requests() if not u.startswith(prefix) and not u.startswith("data:")]

    def click(self, selector: str) -> None:
        """A real mouse click (pressed, released) in the middle of the first element ``selector`` finds."""
        x, y = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                       "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    KEYS = {"Enter": ("Enter", 13, "\r"), "Backspace": ("Backspace", 8, ""), "Escape": ("Escape", 27, ""),
            "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowRight": ("ArrowRight", 39, "")}

    def press(self, key: str) -> None:
        """A real key press: ``Enter``, ``Backspace``, ``Escape``, an arrow, or a digit."""
        code, number, text = self.KEYS[key] if key in self.KEYS else (f"Digit{key}", ord(key), key)
        common = {"key": key, "code": code, "windowsVirtualKeyCode": number, "nativeVirtualKeyCode": number}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **common, **({"text": text} if text else {})})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **common})

    def reload(self) -> None:
        loads = len(self.events("Page.loadEventFired"))
        self.send("Page.reload", {"ignoreCache": True})
        deadline = time.monotonic() + 60
        while len(self.events("Page.loadEventFired")) == loads:
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load again")
            self.browser.pump(0.2)
        self.wait_images()

    def shown(self) -> list[str]:
        return self.js("Array.from(document.querySelectorAll('.card')).filter(c => !c.hidden && "
                       "c.getBoundingClientRect().height > 0).map(c => c.dataset.path)")

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(chromium):
    b = Browser(chromium)
    yield b
    b.close()


def test_the_browser_harness_sees_errors_and_outside_requests(browser, tmp_path):
    """The checks below mean something: a page with a console error, an exception and an image from
    outside its folder is caught on all three counts."""
    page = tmp_path / "bad" / "index.html"
    page.parent.mkdir()
    page.write_text('<!DOCTYPE html><img src="../elsewhere.png"><img src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom"); null.x;</script>', encoding="utf-8")
    tab = browser.open(page.as_uri())
    browser.pump(0.5)
    problems = tab.problems()
    assert any("console.error: boom" in p for p in problems) and any(p.startswith("exception:") for p in problems), problems
    assert sorted(tab.outside(page.parent)) == [(tmp_path / "elsewhere.png").as_uri(), "http://127.0.0.1:9/x.png"]
    tab.close()


@pytest.fixture(scope="module")
def field_run(tmp_path_factory, spec):
    """~30 generated scenes (half with EXIF time and GPS), and an explanation overlay for one photo."""
    from lizaalert_tagger.client import tagctl

    tmp = tmp_path_factory.mktemp("field_run")
    folder, run, fake = make_run(tmp, spec, 30, seed=21, size=(480, 720))
    rows = read_details_csv(run / "details.csv")
    explained = next(r["path"] for r in rows if r["dog_handler_code"] == "1" or r["car_code"] == "1")
    overlay = run / "explanations" / f"{explained}.png"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (64, 48), (255, 0, 0, 120)).save(overlay)
    assert tagctl.main(["report", str(run), "--quiet"]) == 0
    return {"folder": folder, "run": run, "rows": rows, "explained": explained}


def test_report_loads_offline_without_errors_and_filters_exactly(browser, field_run, spec):
    run, rows = field_run["run"], field_run["rows"]
    report = run / "report"
    tab = browser.open((report / "index.html").as_uri())
    try:
        assert tab.js("document.querySelectorAll('.card').length") == len(rows) == 30
        assert sorted(tab.shown()) == sorted(r["path"] for r in rows)
        assert tab.js("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length") > 0

        tokens = {r["path"]: tokens_of(r, spec) for r in rows}
        buttons = tab.js("Array.from(document.querySelectorAll('.tag[data-tag]')).map(b => b.dataset.tag)")
        assert buttons[:8] == [a.key for a in spec.attributes if a.is_binary], "objects first"
        for tag in buttons:
            tab.js(f"document.querySelector('.tag[data-tag=\"{tag}\"]').click()")
            expected = sorted(p for p, t in tokens.items() if tag in t)
            assert sorted(tab.shown()) == expected, tag
            assert tab.js("document.getElementById('shown').textContent") == f"показано {len(expected)} из 30"
            tab.js(f"document.querySelector('.tag[data-tag=\"{tag}\"]').click()")  # off again
        assert len(tab.shown()) == 30

        # time range: local capture time as written, minutes compared; photos without time only on request
        times = sorted(r["time"][:16] for r in rows if r["time"])
        lo, hi = times[1], times[-2]
        tab.js(f"var f = document.getElementById('from'); f.value = '{lo}'; f.dispatchEvent(new Event('change'));"
               f"var t = document.getElementById('to'); t.value = '{hi}'; t.dispatchEvent(new Event('change'));")
        in_range = sorted(r["path"] for r in rows if r["time"] and lo <= r["time"][:16] <= hi)
        assert sorted(tab.shown()) == in_range and 0 < len(in_range) < 30
        tab.js("var u = document.getElementById('untimed'); u.checked = true; u.dispatchEvent(new Event('change'))")
        assert sorted(tab.shown()) == sorted(set(in_range) | {r["path"] for r in rows if not r["time"]})
        tab.js("document.getElementById('reset').click()")
        assert len(tab.shown()) == 30

        # the larger view: the preview, the chips and, for the explained photo, the overlay
        explained = field_run["explained"]
        tab.js(f"Array.from(document.querySelectorAll('.card')).find(c => c.dataset.path === {json.dumps(explained)})"
               ".querySelector('.thumb').click()")
        tab.wait_images()
        assert tab.js("document.getElementById('viewer').open") is True
        width = Image.open(field_run["folder"] / explained).size[0]  # under 1280 px: the preview is the full photo
        assert tab.js("document.getElementById('viewer-img').naturalWidth") == width > 320  # not the thumbnail
        assert tab.js("document.getElementById('viewer-path').textContent") == explained
        assert tab.js("document.getElementById('explain').hidden") is False
        tab.js("document.getElementById('explain').click()")
        tab.wait_images()
        assert tab.js("(() => { const o = document.getElementById('viewer-overlay'); return !o.hidden && o.naturalWidth; })()") == 64
        tab.js("document.getElementById('next').click()")
        assert tab.js("document.getElementById('explain').hidden") is True  # the next photo has no overlay
        tab.js("document.getElementById('close').click()")
        assert tab.js("document.getElementById('viewer').open") is False

        browser.pump(0.3)
        assert tab.problems() == []
        assert tab.outside(report) == [], "the report fetched something outside its folder"
    finally:
        tab.close()


def test_screenshot_of_the_report(browser, field_run, tmp_path):
    """A 1200 px wide screenshot of the report of 30 scenes; LIZAALERT_UPDATE_DOCS=1 writes docs/report.png."""
    tab = browser.open((field_run["run"] / "report" / "index.html").as_uri(), width=1200, height=900)
    try:
        tab.js("document.fonts.ready.then(() => true)")
        shot = base64.b64decode(tab.send("Page.captureScreenshot", {"format": "png"})["data"])
    finally:
        tab.close()
    image = Image.open(io.BytesIO(shot))
    assert image.size == (1200, 900)
    assert len(set(image.convert("RGB").resize((60, 45)).getdata())) > 200, "a blank page"
    if os.environ.get("LIZAALERT_UPDATE_DOCS") == "1":  # 256 colours: a third of the size, for the repository
        image.convert("RGB").quantize(256, Image.Quantize.MEDIANCUT).save(SCREENSHOT, optimize=True)
    else:
        (tmp_path / "report.png").write_bytes(shot)


def test_markup_in_names_and_exif_is_shown_as_text_and_never_runs(browser, tmp_path, spec):
    folder, run, fake = make_run(tmp_path, spec, 2, extra=add_hostile_photos)
    tab = browser.open((run / "report" / "index.html").as_uri())
    try:
        assert tab.js("document.querySelectorAll('.card').length") == 6
        for card in range(6):  # the viewer moves the card's nodes: open each one too
            tab.js(f"document.querySelectorAll('.card .thumb')[{card}].click()")
            tab.wait_images()
        tab.js("document.getElementById('close').click()")
        browser.pump(0.5)
        assert tab.js("typeof window.__xss") == "undefined"
        assert tab.js("document.querySelectorAll('script').length") == 1
        assert tab.js("document.querySelectorAll('svg, img[src=\"x\"]').length") == 0
        text = tab.js("document.body.textContent")
        for literal in ("<script>window.__xss=1;</script>.jpg", *HOSTILE_FILES, HOSTILE_MAKE):
            assert literal in text, literal
        titles = tab.js("Array.from(document.querySelectorAll('[title]')).map(e => e.title).join('\\n')")
        assert HOSTILE_DATE in titles  # the unusable DateTimeOriginal, quoted in the EXIF warning
        assert tab.problems() == [] and tab.outside(run / "report") == []
    finally:
        tab.close()


def test_tag_folder_report_through_the_real_server(server, browser, tmp_path, spec):
    """TorchServe with seeded weights: tag-folder DIR --out RUN/ --report, nested folders, some EXIF."""
    import geojson

    folder = tmp_path / "photos"
    truth = field_photos(folder, 9, seed=33, exif_fraction=0.7, size=(320, 480))
    code, out = run_tagctl(server, "tag-folder", str(folder), "--out", f"{tmp_path / 'run'}/", "--report", "--quiet",
                           "--concurrency", "4", "--explain")
    assert code == 0, out
    run = tmp_path / "run"
    rows = read_details_csv(run / "details.csv")
    assert sorted(r["path"] for r in rows) == sorted(truth)
    # --explain: the server's Grad-CAM overlay for each photo with an object found, and only those
    objects = [a.key for a in spec.attributes if a.is_binary]
    found = sorted(r["path"] for r in rows if any(r[f"{key}_code"] == "1" for key in objects))
    overlays = sorted(str(p.relative_to(run / "explanations"))[:-4] for p in (run / "explanations").rglob("*.png")) \
        if (run / "explanations").exists() else []
    print(f"--explain: {len(found)} of {len(rows)} photos with objects")
    assert overlays == found, out
    assert len(list((run / "report" / "overlays").glob("*.png"))) == len(found)
    assert all(r["model"].startswith("lizaalert_tagger ") and r["time_of_day_score"] for r in rows)
    collection = geojson.loads((run / "photos.geojson").read_text(encoding="utf-8"))
    assert collection.is_valid and len(collection["features"]) == sum(1 for r in rows if r["latitude"])
    assert f"report: {run / 'report' / 'index.html'} (9 photos" in out
    tab = browser.open((run / "report" / "index.html").as_uri())
    try:
        assert tab.js("document.querySelectorAll('.card').length") == 9
        assert tab.problems() == [] and tab.outside(run / "report") == []
    finally:
        tab.close()


# --- the review: corrections with clicks and keys, kept across a reload, exported -------------------------------


def _aim(tab: Tab, photo: str) -> str:
    """A selector for the thumbnail of ``photo`` (any name: found by its data, not through CSS quoting)."""
    tab.js("document.querySelectorAll('#aim').forEach(e => e.removeAttribute('id'));"
           f"Array.from(document.querySelectorAll('.card')).find(c => c.dataset.path === {json.dumps(photo)})"
           ".querySelector('.thumb').id = 'aim'")
    return "#aim"


def _downloads(browser: Browser, count: int, timeout: float = 30) -> None:
    """Until ``count`` downloads have completed (Browser.downloadProgress)."""
    deadline = time.monotonic() + timeout
    while sum(1 for e in browser.events if e["method"] == "Browser.downloadProgress"
              and e["params"].get("state") == "completed") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} downloads did not complete")
        browser.pump(0.2)


class _Reviewer:
    """What the test's reviewer did, kept beside the page: the codes each reviewed photo should have and
    the changes (attribute, before, after) the page should have logged."""

    def __init__(self, served: dict[str, dict[str, int]]) -> None:
        self.served, self.expected, self.changes = served, {}, {}

    def accept(self, photo: str) -> None:
        self.expected.setdefault(photo, dict(self.served[photo]))

    def set(self, photo: str, key: str, code: int) -> None:
        codes = self.expected.setdefault(photo, dict(self.served[photo]))
        self.changes.setdefault(photo, []).append((key, codes[key], code))
        codes[key] = code

    def flip(self, photo: str, key: str) -> None:
        self.set(photo, key, 1 - self.expected.get(photo, self.served[photo])[key])

    def undo(self, photo: str) -> None:
        self.expected.pop(photo, None)
        self.changes.pop(photo, None)


def test_review_with_clicks_and_keys_is_kept_across_a_reload_and_exported_exactly(browser, tmp_path, spec):
    from datetime import datetime

    from lizaalert_tagger.common.certainty import decision_margin
    from lizaalert_tagger.common.labels_csv import write_labels

    folder, run, fake = make_run(tmp_path, spec, 8, extra=add_hostile_photos)
    rows = {r["path"]: r for r in read_details_csv(run / "details.csv")}
    served = {p: {a.key: int(r[f"{a.key}_code"]) for a in spec.attributes} for p, r in rows.items()}
    margins = {p: decision_margin(served[p], {a.key: float(r[f"{a.key}_score"]) for a in spec.attributes}, spec)
               for p, r in rows.items()}
    objects = [a.key for a in spec.attributes if a.is_binary]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True})
    report = run / "report"
    reviewer = _Reviewer(served)
    tab = browser.open((report / "index.html").as_uri())

    def viewing() -> str:
        return tab.js("document.getElementById('viewer').open ? document.getElementById('viewer-path').textContent : ''")

    def cards() -> list[list]:
        return tab.js("Array.from(document.querySelectorAll('.card')).map(c => [c.dataset.path, c.classList.contains('reviewed'),"
                      " c.querySelector('.mark').hidden ? '' : c.querySelector('.mark').textContent, c.dataset.tags])")

    try:
        tab.js("const s = document.getElementById('sort'); s.value = 'uncertain'; s.dispatchEvent(new Event('change'))")
        order = [c[0] for c in cards()]
        assert [margins[p] for p in order] == sorted(margins.values()), "least certain first"
        first, second, third, fourth, fifth = order[:5]

        # clicks: open the least certain photo, toggle an object, choose another season, "всё верно"
        tab.click(_aim(tab, first))
        assert viewing() == first
        tab.click('#review .toggle[data-key="car"]')
        reviewer.flip(first, "car")
        season = next(c.code for c in spec["season"].classes if c.code != served[first]["season"])
        tab.click(f'#review .choice[data-key="season"] [data-code="{season}"]')
        reviewer.set(first, "season", season)
        assert tab.js("document.querySelector('#review .toggle[data-key=\"car\"]').getAttribute('aria-pressed')") == \
            ("true" if reviewer.expected[first]["car"] else "false")
        tab.click("#accept")
        assert viewing() == second

        # keys: digits toggle the objects in the spec's order, arrows move without marking, Enter accepts, Backspace undoes
        tab.press("3")
        reviewer.flip(second, objects[2])
        tab.press("8")
        reviewer.flip(second, objects[7])
        tab.press("ArrowRight")
        assert viewing() == third
        tab.press("ArrowLeft")
        assert viewing() == second
        tab.press("Enter")
        assert viewing() == third
        tab.press("Enter")  # as the model said: reviewed, nothing changed
        reviewer.accept(third)
        assert viewing() == fourth
        tab.press("5")
        tab.press("5")  # back to the model's answer: reviewed, both changes logged
        reviewer.flip(fourth, objects[4])
        reviewer.flip(fourth, objects[4])
        tab.press("Enter")
        assert viewing() == fifth
        tab.press("1")
        tab.press("Backspace")
        assert tab.js("document.getElementById('review-state').textContent") == "не проверено"
        # markup in names and EXIF: photos like the others, corrected, marked, exported (those not met above, so
        # that the cases above stay what they are; one with a quote, for the CSV's quoting)
        hostile = [p for p in (*HOSTILE_FILES, "/".join(HOSTILE_NAMES), "exif_markup.jpg") if p not in order[:5]]
        assert any('"' in p for p in hostile), f"the fixture's scores moved: {order[:5]}"
        for photo in hostile:
            tab.press("Escape")
            tab.click(_aim(tab, photo))
            assert viewing() == photo
            tab.press("2")
            reviewer.flip(photo, objects[1])
            tab.press("Enter")
        tab.press("Escape")
        assert viewing() == ""

        # the grid: marks, the reviewed tags in the filters, the count, the filter "не проверенные"
        grid = cards()
        reviewed = set(reviewer.expected)
        assert {p for p, is_reviewed, _, _ in grid if is_reviewed} == reviewed and len(reviewed) >= 5

        def mark(photo: str) -> str:
            if photo not in reviewer.expected:
                return ""
            fixed = sum(reviewer.expected[photo][k] != served[photo][k] for k in spec.keys)
            return f"✓ исправлено: {fixed}" if fixed else "✓ проверено"

        assert {p: m for p, _, m, _ in grid} == {p: mark(p) for p in rows}
        assert mark(third) == mark(fourth) == "✓ проверено" and mark(fifth) == "", "accepted as served, toggled back, undone"
        for p, _, _, tags in grid:
            codes = reviewer.expected.get(p, served[p])
            assert set(tags.split()) == tokens_of({f"{k}_code": str(v) for k, v in codes.items()}, spec), p
        assert tab.js("document.getElementById('reviewed-count').textContent") == str(len(reviewed))
        tab.click("#unreviewed")
        assert sorted(tab.shown()) == sorted(set(rows) - reviewed)
        tab.click("#unreviewed")

        # closing the page loses nothing: after a reload, the same marks and the corrected answer in the viewer
        tab.reload()
        run_id = (report / "run-id.txt").read_text(encoding="ascii").strip()
        assert tab.js("Object.keys(localStorage)") == [f"lizaalert-review:{run_id}"]
        assert sorted(cards()) == sorted(grid)
        tab.click(_aim(tab, first))
        assert tab.js("document.querySelector('#review .toggle[data-key=\"car\"]').getAttribute('aria-pressed')") == \
            ("true" if reviewer.expected[first]["car"] else "false")
        assert tab.js(f"document.querySelector('#review .choice[data-key=\"season\"] [data-code=\"{season}\"]')"
                      ".getAttribute('aria-checked')") == "true"
        tab.press("Escape")

        # export: reviewed.csv is what write_labels writes for the corrections; review.json logs every change
        tab.click("#export")
        _downloads(browser, 2)
        assert sorted(p.name for p in downloads.iterdir()) == ["review.json", "reviewed.csv"]
        write_labels(tmp_path / "expected.csv", sorted(reviewer.expected.items()), spec)
        assert (downloads / "reviewed.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
        log = json.loads((downloads / "review.json").read_text(encoding="utf-8"))
        assert log["run"] == run_id and log["columns"] == (run / "labels.csv").read_text(encoding="utf-8").split("\n")[0].split(";")
        assert [p["path"] for p in log["photos"]] == sorted(reviewed)
        for entry in log["photos"]:
            photo = entry["path"]
            assert entry["codes"] == reviewer.expected[photo] and entry["model"] == served[photo]
            assert [(c["attribute"], c["before"], c["after"]) for c in entry["changes"]] == reviewer.changes.get(photo, [])
            stamps = [datetime.fromisoformat(c["at"].replace("Z", "+00:00")) for c in entry["changes"]]
            reviewed_at = datetime.fromisoformat(entry["reviewed"].replace("Z", "+00:00"))
            assert stamps == sorted(stamps) and all(stamp <= reviewed_at for stamp in stamps)

        browser.pump(0.3)
        assert tab.js("typeof window.__xss") == "undefined"
        assert tab.js("document.querySelectorAll('script').length") == 1
        assert tab.js("document.querySelectorAll('svg, img[src=\"x\"]').length") == 0
        assert tab.problems() == [] and tab.outside(report) == []
    finally:
        tab.close()
