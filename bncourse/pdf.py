"""The whole book as one PDF, printed offline by headless Chromium.

``make pdf`` (``python -m bncourse.pdf``) builds the book as a single HTML page
(``jupyter-book build . --builder singlehtml -W --keep-going``, into ``_build/singlehtml``).
That build shares ``_build/.jupyter_cache`` with ``make book``, so after ``make book`` no page
is executed again. It then serves the page on 127.0.0.1, opens it in Debian's headless
Chromium through chromium-driver (the browser of the book's test, installed by ``make
setup``) with every other host unreachable, waits until MathJax has typeset every equation,
the fonts are loaded and the images decoded, opens every dropdown (a reader of paper cannot
click one: the exercises' solutions follow them), and prints the page with the DevTools
command ``Page.printToPDF`` into ``_build/pdf/bncourse.pdf``: A4, the book's title at the top
of each page and its number at the bottom, a bookmark outline from the headings and a tagged
(structured) PDF for screen readers. How the page is laid out on paper is in
``_static/print.css``.

    python -m bncourse.pdf                 # build _build/singlehtml, print _build/pdf/bncourse.pdf
    python -m bncourse.pdf --no-build      # print an existing single-page build
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "ChromiumNotFoundError",
    "build_singlehtml",
    "chromium_paths",
    "headless_chromium",
    "main",
    "print_book",
    "serve",
]

ROOT = Path(__file__).resolve().parents[1]
A4_INCHES = (8.27, 11.69)
MARGIN_INCHES = 0.6


class ChromiumNotFoundError(FileNotFoundError):
    """Chromium or its WebDriver (or selenium, which drives them) is not installed."""


def chromium_paths() -> tuple[str, str]:
    """The paths of Debian's ``chromium`` and ``chromedriver``.

    Raises:
        ChromiumNotFoundError: either is missing; the message says how to install them.
    """
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        raise ChromiumNotFoundError(
            f"{' and '.join(missing)} not found on PATH: `make setup` installs Debian's "
            "chromium and chromium-driver when run as root with apt-get (or run "
            "`apt-get install chromium chromium-driver`)"
        )
    return browser, driver


def headless_chromium(width: int = 1280, height: int = 900, timeout: float = 60):
    """A selenium WebDriver on headless Chromium that reaches only 127.0.0.1.

    Every other host is unreachable, so a page that needs the internet shows up as a
    failed request in the browser's console (its log is kept: ``driver.get_log``). The
    caller quits it.

    Raises:
        ChromiumNotFoundError: Chromium, chromedriver or selenium is missing.
    """
    browser, driver_path = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise ChromiumNotFoundError(
            "selenium is not installed: it comes with the package's `test` extra "
            "(`make setup`, or `pip install -e '.[test]'`)"
        ) from e
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(timeout)
    driver.set_script_timeout(timeout)
    return driver


class _Quiet(http.server.SimpleHTTPRequestHandler):
    root_page = None  # the file served at "/", relative to the directory (None: index.html)

    def log_message(self, *args):
        pass

    def translate_path(self, path):
        if self.root_page is not None and path.split("?", 1)[0].split("#", 1)[0] == "/":
            return str(Path(self.directory) / self.root_page)
        return super().translate_path(path)


@contextlib.contextmanager
def serve(directory, root_page=None):
    """Serve ``directory`` on 127.0.0.1 (a free port) while the block runs; yields its URL.

    ``root_page`` (a file in ``directory``) is served at "/" instead of ``index.html``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"directory: {directory} is not a folder")
    if root_page is not None and not (directory / root_page).is_file():
        raise FileNotFoundError(f"root_page: no {root_page} in {directory}")
    handler = functools.partial(
        type("_Handler", (_Quiet,), {"root_page": root_page}), directory=str(directory)
    )
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def build_singlehtml(root=ROOT, path_output=None, timeout=None) -> subprocess.CompletedProcess:
    """``jupyter-book build root --builder singlehtml -W --keep-going`` into
    ``root/_build/singlehtml`` (sharing ``root/_build``'s execution cache with ``make
    book``), or ``path_output/_build/singlehtml``; returns the finished process, its output
    captured as text."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(root), "--builder", "singlehtml"]
    command += ["-W", "--keep-going"]
    if path_output is not None:
        command += ["--path-output", str(path_output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


# Resolves once the page is ready to print: MathJax has typeset (when the page loads it),
# every dropdown is open, the images are decoded and the fonts loaded. Reports the typeset
# equations, those with TeX errors, images that did not load, and TeX delimiters left in
# the prose (outside code and typeset equations): an equation MathJax did not recognise.
READY_TO_PRINT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  await document.fonts.ready;
  const broken = images.filter(img => !img.complete || img.naturalWidth === 0)
                       .map(img => img.getAttribute('src'));
  const errors = Array.from(document.querySelectorAll('mjx-merror'))
                      .map(e => e.getAttribute('data-mjx-error') || e.textContent);
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, textarea')
       .forEach(e => e.remove());
  const raw = ['$$', '\\begin{', '\\end{'].flatMap(tex => {
    const at = prose.textContent.indexOf(tex);
    return at < 0 ? [] : [prose.textContent.slice(Math.max(0, at - 40), at + 40)];
  });
  return {equations: document.querySelectorAll('mjx-container').length, errors, broken, raw};
})().then(done, e => done({failed: String(e)}));
"""

HEADER = (
    '<div style="font-size:8px;width:100%;margin:0 0.6in;color:#444">'
    '<span class="title"></span></div>'
)
FOOTER = (
    '<div style="font-size:8px;width:100%;text-align:center;color:#444">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)


def _main_page(html_dir: Path) -> str:
    """``index.html``, or the page it redirects to: Jupyter Book's index.html is a redirect
    to the root page, ``book/intro.html`` in the single-page build, whose links are
    relative to the build's root folder all the same (so it is served at "/")."""
    index = (html_dir / "index.html").read_text(errors="replace")
    match = re.search(
        r"""<meta\s+http-equiv=["']?refresh["']?\s+content=["']?\d+;\s*url=([^"'>\s]+)""",
        index,
        flags=re.I,
    )
    if match and (html_dir / match.group(1)).is_file():
        return match.group(1)
    return "index.html"


def print_book(html_dir, out, *, timeout: float = 600) -> dict:
    """Print ``html_dir/index.html`` (a single-page build; the page it redirects to, if it
    is a redirect) into the PDF file ``out``.

    Returns what was checked before printing: the number of typeset equations, and the
    seconds the printing took. Raises ``FileNotFoundError`` when there is no page to print,
    ``ValueError`` when ``out`` is not a ``.pdf`` path, ``RuntimeError`` when the page is not
    fit to print (an equation with a TeX error, ``$$`` or ``\\begin{`` left in the text, an
    image that did not load), and :class:`ChromiumNotFoundError` when there is no browser.
    """
    html_dir, out = Path(html_dir), Path(out)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(
            f"html_dir: no index.html in {html_dir}; build the single page first "
            "(`jupyter-book build . --builder singlehtml`, or `make pdf`)"
        )
    if out.suffix.lower() != ".pdf":
        raise ValueError(f"out must be a path ending in .pdf, got {str(out)!r}")
    started = time.perf_counter()
    driver = headless_chromium(timeout=timeout)
    # Printing a few hundred pages is one DevTools command, which may outlast selenium's
    # 120 s wait for an answer on a slow machine (its only setting for it is this one).
    config = getattr(driver.command_executor, "_client_config", None)
    if config is not None:
        config.timeout = max(timeout, 120)
    try:
        with serve(html_dir, root_page=_main_page(html_dir)) as url:
            driver.get(f"{url}/")
            state = driver.execute_async_script(READY_TO_PRINT)
            if "failed" in state:
                raise RuntimeError(
                    f"the page could not be prepared for printing: {state['failed']}"
                )
            if state["errors"] or state["broken"] or state["raw"]:
                raise RuntimeError(
                    f"not printed: {len(state['errors'])} equation(s) with TeX errors "
                    f"{state['errors']}, TeX left untypeset in {state['raw']}, images that "
                    f"did not load: {state['broken']}"
                )
            pdf = driver.execute_cdp_cmd(
                "Page.printToPDF",
                {
                    "paperWidth": A4_INCHES[0],
                    "paperHeight": A4_INCHES[1],
                    "marginTop": MARGIN_INCHES,
                    "marginBottom": MARGIN_INCHES,
                    "marginLeft": MARGIN_INCHES,
                    "marginRight": MARGIN_INCHES,
                    "printBackground": True,
                    "displayHeaderFooter": True,
                    "headerTemplate": HEADER,
                    "footerTemplate": FOOTER,
                    "generateDocumentOutline": True,
                    "generateTaggedPDF": True,
                },
            )
    finally:
        driver.quit()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(base64.b64decode(pdf["data"]))
    tmp.replace(out)
    return {"equations": state["equations"], "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.pdf",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the book's root (.)")
    parser.add_argument(
        "--path-output",
        type=Path,
        default=None,
        help="build into PATH_OUTPUT/_build (as jupyter-book's option; default ROOT)",
    )
    parser.add_argument(
        "--no-build", action="store_true", help="print the single-page build as it is"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the PDF (PATH_OUTPUT/_build/pdf/bncourse.pdf)"
    )
    args = parser.parse_args(argv)
    build_dir = (args.path_output or args.root) / "_build"
    html_dir = build_dir / "singlehtml"
    out = args.out or build_dir / "pdf" / "bncourse.pdf"
    try:
        chromium_paths()  # before a build that would be wasted
        if not args.no_build:
            started = time.perf_counter()
            result = build_singlehtml(args.root, args.path_output)
            if result.returncode != 0:
                sys.stderr.write((result.stdout + result.stderr)[-6000:])
                print("error: the single-page build failed (output above)", file=sys.stderr)
                return 1
            print(f"built {html_dir} in {time.perf_counter() - started:.0f} s")
        info = print_book(html_dir, out)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = out.stat().st_size / 2**20
    print(
        f"wrote {out} ({size:.1f} MiB, {info['equations']} typeset equations) "
        f"in {info['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
