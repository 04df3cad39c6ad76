"""The book builds as `make book` builds it, and works in a real browser with no network.

The build runs once per session (the fixture `built_book`), into the repository's own
`_build/` like `make book`, so an unchanged book is not executed twice. The browser test
serves `_build/html` on 127.0.0.1 and opens every page in Debian's headless Chromium
through chromium-driver, with every other host unreachable; it saves a screenshot of each
page under `_build/screenshots/` (long pages in parts of 8,000 pixels).
"""

from __future__ import annotations

import base64
import functools
import html.parser
import http.server
import re
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
PROBLEM_SETS = ("ps1-forward", "ps2-backward", "ps3-keras-layer", "ps4-experiment")


def _toc_files() -> list:
    """The pages `_toc.yml` lists, as paths relative to the root without suffix."""
    text = (ROOT / "_toc.yml").read_text()
    return re.findall(r"^\s*(?:root|-\s*file):\s*(\S+)\s*$", text, flags=re.M)


@pytest.fixture(scope="session")
def built_book():
    from bncourse.bench import build_book

    result = build_book(ROOT, timeout=1800)  # as `make book`, into ROOT/_build
    return result, result.stdout + result.stderr


# --------------------------------------------------------------------------- the build


@pytest.mark.slow
@pytest.mark.book
def test_book_builds_without_warnings(built_book):
    result, log = built_book
    assert result.returncode == 0, log[-6000:]
    assert ": WARNING:" not in log, log[-6000:]  # Sphinx's form; -W also fails the build
    assert "build succeeded" in log
    assert (HTML / "index.html").exists()
    for page in _toc_files():
        assert (HTML / f"{page}.html").is_file(), f"{page} is in _toc.yml but was not built"
    intro = (HTML / "book" / "intro.html").read_text()
    # Executed: the printed output of the page's code and the glued defaults are there.
    assert "moving mean:" in intro
    assert "0.99" in intro and "0.001" in intro
    # The instructors' chapter lists every problem set, read from the source notebooks.
    instructors = (HTML / "book" / "instructors.html").read_text()
    for name in PROBLEM_SETS:
        assert name in instructors
    assert "NumPy only" in instructors
    # No page shows an error or a stderr stream from its execution.
    for page in HTML.rglob("*.html"):
        text = page.read_text()
        assert "output stderr" not in text, f"{page.relative_to(HTML)} shows stderr output"
        assert "output traceback" not in text, f"{page.relative_to(HTML)} shows a traceback"
    # MathJax is the local copy, never a CDN.
    scripts = re.findall(
        r'<script[^>]+src="([^"]+)"', (HTML / "book" / "bn-transform.html").read_text()
    )
    assert any("_static/mathjax/tex-mml-chtml.js" in s for s in scripts), scripts
    assert not [s for s in scripts if "://" in s], scripts
    assert (HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    # Browsers ask for /favicon.ico on the redirecting index.html, which names no icon.
    assert (HTML / "favicon.ico").read_bytes()[:4] == b"\x00\x00\x01\x00"


# --------------------------------------------------------------------------- the browser


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(built_book):
    result, log = built_book
    assert result.returncode == 0, "the book did not build:\n" + log[-3000:]
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _chromium_paths():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [
        name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None
    ]
    assert not missing, (
        f"{' and '.join(missing)} not found: `make setup` installs Debian's "
        "chromium and chromium-driver when run as root with apt-get"
    )
    return browser, driver


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
        # Every host but this one is unreachable: a page that needs the internet
        # shows up as a failed request in the console.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


class _Anchors(html.parser.HTMLParser):
    """The ids of a page and the local links it makes."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def _pages():
    return sorted(
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if "_static" not in p.parts and "_sources" not in p.parts
    )


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) { done("absent"); return; }
MathJax.startup.promise.then(() => done("typeset"), (e) => done("error: " + e));
"""

# The visible text outside code, with typeset equations removed: raw TeX left here means
# an equation that was not typeset.
PROSE_TEXT = """
const body = document.querySelector('main') || document.body;
const copy = body.cloneNode(true);
copy.querySelectorAll('pre, code, script, style, mjx-container, .MathJax, textarea')
    .forEach(e => e.remove());
return copy.textContent;
"""

IMAGES = """
return Array.from(document.querySelectorAll('main img, article img')).map(img => ({
    src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
    complete: img.complete, width: img.naturalWidth}));
"""


def _screenshot(driver, stem: str, width: int = 1280, segment: int = 8000):
    """Save the whole page as ``stem``.png (and ``stem``-2.png, ... below 8,000 pixels).

    The viewport is resized to the part being saved: capturing beyond the viewport instead
    shifts the theme's layout sideways on long pages."""
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
    )
    try:
        for i, top in enumerate(range(0, int(height), segment)):
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": min(segment, int(height) - top),
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            driver.execute_script("window.scrollTo(0, arguments[0])", top)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            name = f"{stem}.png" if i == 0 else f"{stem}-{i + 1}.png"
            (SCREENSHOTS / name).write_bytes(base64.b64decode(shot["data"]))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_every_page_renders_offline_in_chromium(browser, server):
    from selenium.webdriver.support.ui import WebDriverWait

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = _pages()
    assert len(pages) >= len(_toc_files())
    anchors = {}
    for page in pages:
        parser = _Anchors()
        parser.feed((HTML / page).read_text())
        anchors[page] = parser
    problems, typeset_pages = [], 0
    for page in pages:
        browser.get(f"{server}/{page}")
        # index.html redirects to the first chapter: wait for the page that stays.
        WebDriverWait(browser, 30).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete' && document.body !== null && "
                "!document.querySelector('meta[http-equiv=refresh]')"
            )
        )
        state = browser.execute_async_script(WAIT_FOR_MATHJAX)
        for entry in browser.get_log("browser"):
            if entry["level"] in ("SEVERE", "WARNING"):
                problems.append(f"{page}: console {entry['level']}: {entry['message']}")
        source = (HTML / page).read_text()
        has_math = 'class="math' in source
        if has_math:
            if state != "typeset":
                problems.append(f"{page}: has equations but MathJax is {state}")
            typeset = browser.execute_script(
                "return document.querySelectorAll('mjx-container').length"
            )
            errors = browser.execute_script("return document.querySelectorAll('mjx-merror').length")
            if typeset == 0:
                problems.append(f"{page}: no equation was typeset")
            if errors:
                problems.append(f"{page}: {errors} equation(s) with TeX errors")
            typeset_pages += typeset > 0
        text = browser.execute_script(PROSE_TEXT)
        for raw in ("$$", "\\frac", "\\begin{", "\\sqrt", "\\mathbb", "\\hat", "\\sum_"):
            if raw in text:
                at = text.index(raw)
                problems.append(
                    f"{page}: raw TeX {raw!r} left in the text: "
                    f"...{text[max(0, at - 60) : at + 60]!r}..."
                )
        for img in browser.execute_script(IMAGES):
            if not img["complete"] or img["width"] == 0:
                problems.append(f"{page}: image {img['src']} did not load")
            alt = img["alt"].strip()
            if len(alt.split()) < 4 or re.search(r"\.(png|svg|jpg)|_build|jupyter_execute", alt):
                problems.append(
                    f"{page}: image {img['src']} has no alt text that says what it shows: {alt!r}"
                )
        for href in anchors[page].links:
            parsed = urllib.parse.urlparse(href)
            if parsed.scheme or parsed.netloc or href.startswith("mailto:"):
                continue
            target = urllib.parse.urljoin(page, parsed.path) if parsed.path else page
            target = target.lstrip("/")
            if target.endswith("/"):
                target += "index.html"
            if not (HTML / target).exists():
                problems.append(f"{page}: link {href!r} points to a missing file")
            elif parsed.fragment and target.endswith(".html"):
                ids = anchors.get(target)
                fragment = urllib.parse.unquote(parsed.fragment)
                if ids is not None and fragment not in ids.ids:
                    problems.append(f"{page}: link {href!r}: no id {fragment!r} in {target}")
        _screenshot(browser, page.replace("/", "__").removesuffix(".html"))
    assert not problems, "\n".join(problems)
    assert typeset_pages >= 5, f"only {typeset_pages} page(s) had typeset equations"


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_search_finds_epsilon(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/search.html?q=epsilon")
    # Sphinx's search lists its hits one at a time (5 ms apart) and only then writes
    # "Search finished, found N page(s)" in the summary: read the list after that line.
    summary = WebDriverWait(browser, 60).until(
        lambda d: next(
            (
                p.text
                for p in d.find_elements(By.CSS_SELECTOR, "#search-results p.search-summary")
                if p.text.startswith("Search finished")
            ),
            None,
        )
    )
    found = int(re.search(r"found (\d+) page", summary).group(1))
    hits = [
        a.get_attribute("href")
        for a in browser.find_elements(By.CSS_SELECTOR, "#search-results ul.search li > a")
    ]
    assert len(hits) == found, (summary, hits)
    assert any("bn-transform" in h for h in hits), hits
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
