"""The book builds as `make book` builds it, and works in a real browser with no network.

The build runs once per session (the fixture `built_book`), into the repository's own
`_build/` like `make book`, so an unchanged book is not executed twice. The browser tests
serve `_build/html` on 127.0.0.1 and open every page once (the fixture `visited`) in
Debian's headless Chromium through chromium-driver, with every other host unreachable;
they save a screenshot of each page under `_build/screenshots/` (long pages in parts of
8,000 pixels), and check each page with axe-core against WCAG 2.1 A and AA in the theme's
light and dark mode, its report next to the screenshots (`axe-report.json`,
`axe-summary.txt`). The PDF test does what `make pdf` does, after the html build and from
its execution cache, and reads the PDF back with pypdf.
"""

from __future__ import annotations

import base64
import html.parser
import json
import re
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


@pytest.fixture(scope="module")
def server(built_book):
    from bncourse.pdf import serve

    result, log = built_book
    assert result.returncode == 0, "the book did not build:\n" + log[-3000:]
    with serve(HTML) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    from bncourse.pdf import headless_chromium

    driver = headless_chromium(1280, 900)  # reaches 127.0.0.1 only
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def axe_source():
    from bncourse.npm import AXE_CORE

    directory = AXE_CORE.default_dir()
    assert AXE_CORE.installed(directory), (
        f"no axe-core {AXE_CORE.version} in {directory}: run `make setup` "
        "(or `python -m bncourse.npm ensure axe-core`)"
    )
    return (directory / AXE_CORE.entry_point).read_text()


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

# Each figure's image with its alt text, its title and its caption without the number.
FIGURES = """
return Array.from(document.querySelectorAll('main figure')).flatMap(fig => {
  const caption = fig.querySelector('figcaption');
  const text = caption ? (caption.querySelector('.caption-text') || caption).textContent : '';
  return Array.from(fig.querySelectorAll('img')).map(img => ({
    src: img.getAttribute('src'), alt: img.getAttribute('alt') || '',
    title: img.getAttribute('title') || '', caption: text}));
});
"""

# WCAG 2.0 and 2.1, levels A and AA: the rules axe-core tags with these.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Each page is checked with all of them in the theme's light mode, and again in its dark
# mode with those whose outcome depends on colours (both tagged wcag2a or wcag2aa): the
# markup is the same in both modes.
AXE_MODES = {
    "light": {"type": "tag", "values": AXE_TAGS},
    "dark": {"type": "rule", "values": ["color-contrast", "link-in-text-block"]},
}
FAILING_IMPACTS = ("serious", "critical")
# axe runs in a window tall enough to show the whole navigation sidebar: in a 900-pixel one
# the sidebar scrolls, and axe cannot tell the background of the entries it clips.
AXE_VIEWPORT = {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False}

# Runs axe-core (already injected) on the page in the theme's colour mode arguments[0]
# ("light" or "dark", as the theme's own switch sets it) with the rules arguments[1]
# selects, once the theme's colour transitions have ended; returns the violations and the
# nodes axe could not decide on.
AXE_RUN = """
const [mode, runOnly] = arguments;
const done = arguments[arguments.length - 1];
(async () => {
  document.documentElement.dataset.theme = mode;
  window.scrollTo(0, 0);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  await Promise.all(document.getAnimations().filter(a => a instanceof CSSTransition)
                            .map(a => a.finished.catch(() => null)));
  const r = await axe.run(document, {runOnly, resultTypes: ['violations', 'incomplete']});
  const keep = rules => rules.map(v => ({
    id: v.id, impact: v.impact, tags: v.tags, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({target: n.target, impact: n.impact, html: n.html.slice(0, 300),
                              summary: n.failureSummary || ''}))}));
  return {engine: r.testEngine.version, violations: keep(r.violations),
          incomplete: keep(r.incomplete), passes: r.passes.map(v => v.id)};
})().then(done, e => done({error: String(e)}));
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


def _link_problems(page, anchors) -> list:
    problems = []
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
    return problems


def _axe_summary(reports: dict) -> str:
    """A short readable account of ``reports`` ({page: {mode: axe result}})."""
    engine = next((r["engine"] for modes in reports.values() for r in modes.values()), "?")
    lines = [
        f"axe-core {engine}, rules tagged {', '.join(AXE_TAGS)} (WCAG 2.0/2.1, A and AA), "
        f"{len(reports)} pages in the theme's light mode, and in its dark mode with the rules "
        f"on colours ({', '.join(AXE_MODES['dark']['values'])}).",
        f"A violation of impact {' or '.join(FAILING_IMPACTS)} fails the test.",
    ]
    for kind, title in (("violations", "Violations"), ("incomplete", "Needs review (undecided)")):
        rules: dict = {}
        for page, modes in reports.items():
            for mode, result in modes.items():
                for rule in result.get(kind, []):
                    entry = rules.setdefault(
                        rule["id"], {"impact": rule["impact"], "help": rule["help"], "n": 0}
                    )
                    entry["n"] += len(rule["nodes"])
                    entry.setdefault("where", set()).add(f"{page} ({mode})")
        lines.append(f"\n{title}: " + ("none" if not rules else ""))
        for rule_id, entry in sorted(rules.items()):
            where = sorted(entry["where"])
            lines.append(
                f"  {rule_id} ({entry['impact']}): {entry['n']} element(s) in {len(where)} "
                f"page view(s), e.g. {where[0]}: {entry['help']}"
            )
    lines.append("\nPer page (violations / to review), light | dark:")
    for page, modes in sorted(reports.items()):
        counts = " | ".join(
            f"{sum(len(r['nodes']) for r in result.get('violations', []))} / "
            f"{sum(len(r['nodes']) for r in result.get('incomplete', []))}"
            for result in modes.values()
        )
        lines.append(f"  {page}: {counts}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def visited(browser, server, axe_source):
    """Opens every page once and gathers what the tests below check: the rendering's
    problems, the figures, and axe-core's report in light and dark mode (saved next to the
    screenshots as axe-report.json and axe-summary.txt before any test looks at it)."""
    from selenium.webdriver.support.ui import WebDriverWait

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = _pages()
    assert len(pages) >= len(_toc_files())
    anchors = {}
    for page in pages:
        parser = _Anchors()
        parser.feed((HTML / page).read_text())
        anchors[page] = parser
    problems, typeset_pages, figures, reports = [], 0, {}, {}
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
        redirect = 'http-equiv="refresh"' in source.lower()
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
        figures[page] = browser.execute_script(FIGURES)
        problems += _link_problems(page, anchors)
        _screenshot(browser, page.replace("/", "__").removesuffix(".html"))
        if not redirect:  # index.html shows the first chapter, checked under its own name
            browser.execute_script(axe_source)
            browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", AXE_VIEWPORT)
            try:
                reports[page] = {
                    mode: browser.execute_async_script(AXE_RUN, mode, rules)
                    for mode, rules in AXE_MODES.items()
                }
            finally:
                browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    (SCREENSHOTS / "axe-report.json").write_text(json.dumps(reports, indent=1) + "\n")
    (SCREENSHOTS / "axe-summary.txt").write_text(_axe_summary(reports))
    return {
        "problems": problems,
        "typeset_pages": typeset_pages,
        "figures": figures,
        "axe": reports,
    }


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_every_page_renders_offline_in_chromium(visited):
    assert not visited["problems"], "\n".join(visited["problems"])
    typeset_pages = visited["typeset_pages"]
    assert typeset_pages >= 5, f"only {typeset_pages} page(s) had typeset equations"


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_every_page_meets_wcag_21_aa_in_light_and_dark_mode(visited):
    reports = visited["axe"]
    assert len(reports) >= len(_toc_files())
    failures = []
    for page, modes in reports.items():
        for mode, result in modes.items():
            if "error" in result:
                failures.append(f"{page} ({mode}): axe-core failed: {result['error']}")
                continue
            assert "color-contrast" in result["passes"] + [
                r["id"] for r in result["violations"] + result["incomplete"]
            ], f"{page} ({mode}): axe did not check colour contrast"
            for rule in result["violations"]:
                for node in rule["nodes"]:
                    if (node["impact"] or rule["impact"]) in FAILING_IMPACTS:
                        failures.append(
                            f"{page} ({mode}): {rule['id']} ({node['impact']}): {rule['help']}"
                            f"\n    {node['target']}: {node['html'][:160]}"
                            f"\n    {node['summary'][:300]}"
                        )
    assert not failures, (
        f"{len(failures)} serious or critical WCAG 2.1 AA violation(s) "
        f"(see {SCREENSHOTS / 'axe-summary.txt'}):\n" + "\n".join(failures)
    )


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _letters(text: str) -> str:
    """Letters and digits only: Chromium's PDF outline drops the spaces where a heading
    wraps, and text read back from a PDF has its own idea of spaces."""
    return re.sub(r"[\W_]", "", text.lower())


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_every_figure_has_alt_text_that_is_more_than_its_caption(visited):
    figures = [(page, fig) for page, figs in visited["figures"].items() for fig in figs]
    assert len(figures) >= 10, f"only {len(figures)} figures found"
    problems = []
    for page, fig in figures:
        alt, caption, title = _words(fig["alt"]), _words(fig["caption"]), _words(fig["title"])
        if not alt:
            problems.append(f"{page}: figure {fig['src']} has no alt text")
        elif caption and alt in caption:
            problems.append(f"{page}: figure {fig['src']}: the alt text only repeats the caption")
        elif alt == title:
            problems.append(f"{page}: figure {fig['src']}: the alt text only repeats the title")
    assert not problems, "\n".join(problems)


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


# --------------------------------------------------------------------------- the PDF


def _chapter_titles() -> list:
    """The title (first `# ` heading) of every page in `_toc.yml`."""
    titles = []
    for page in _toc_files():
        match = re.search(r"^# (.+)$", (ROOT / f"{page}.md").read_text(), flags=re.M)
        assert match, f"{page}.md has no title"
        titles.append(match.group(1).strip())
    return titles


@pytest.fixture(scope="session")
def book_pdf(built_book):
    """What `make pdf` does, after the session's html build: the single-page build into
    `_build/singlehtml`, from the same execution cache, printed into `_build/pdf/`."""
    from bncourse import pdf

    result, log = built_book
    assert result.returncode == 0, "the book did not build:\n" + log[-3000:]
    build = pdf.build_singlehtml(ROOT, timeout=1800)
    build_log = build.stdout + build.stderr
    assert build.returncode == 0, build_log[-6000:]
    out = ROOT / "_build" / "pdf" / "bncourse.pdf"
    info = pdf.print_book(ROOT / "_build" / "singlehtml", out)
    return out, info, build_log


@pytest.mark.slow
@pytest.mark.book
@pytest.mark.browser
def test_the_pdf_holds_every_chapter_with_its_equations_typeset(book_pdf):
    from pypdf import PdfReader

    out, info, log = book_pdf
    # The html build executed the pages; the single-page build only read its cache.
    assert "Executing notebook" not in log, log[-3000:]
    assert ": WARNING:" not in log, log[-6000:]
    assert info["equations"] > 100, info
    reader = PdfReader(out)
    assert len(reader.pages) >= 2 * len(_toc_files()), len(reader.pages)
    raw = " ".join(page.extract_text() for page in reader.pages)
    text = _letters(raw)
    outline, stack = [], list(reader.outline)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            outline.append(_letters(item.title))
    missing = [t for t in _chapter_titles() if _letters(t) not in text]
    assert not missing, f"chapter titles not in the PDF's text: {missing}"
    unlisted = [t for t in _chapter_titles() if not any(_letters(t) in e for e in outline)]
    assert not unlisted, f"chapter titles not in the PDF's outline: {unlisted}"
    for tex in ("$$", "\\begin{", "\\frac"):
        assert tex not in raw, f"raw TeX {tex!r} in the PDF: an equation was not typeset"
