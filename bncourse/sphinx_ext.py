"""The book's Sphinx extension (``sphinx: extra_extensions`` in ``_config.yml``).

It does four things:

* **No stale pages.** The pages are executed once and their outputs cached
  (``execute_notebooks: cache``), keyed by jupyter-cache on the code cells only. A page's
  outputs also depend on the package it imports, on ``results/`` and on the assignments'
  sources, so the extension fingerprints those files: when the fingerprint changes, it
  empties the execution cache and has Sphinx read every page again, so every page is
  executed anew.
* **Offline equations.** MathJax is loaded from a local copy served with the book
  (``_static/mathjax/``, from :mod:`bncourse.mathjax`), not from a CDN.
* **Kernels set up alike.** TensorFlow's C++ start-up logs (absl's, which
  ``TF_CPP_MIN_LOG_LEVEL`` does not silence) are written to file descriptor 2, and
  ipykernel would copy them into the pages as stderr outputs. The kernels get their own
  IPython directory next to the build, whose kernel configuration turns that copying off
  and sends C-level output to ``_build/kernel-stderr.log`` (:func:`kernel_log`), so the
  build log stays readable, while Python's warnings and ``sys.stderr`` still show on the
  page (and the book's test fails on them). The kernels also inherit
  ``MATPLOTLIBRC``, pointing at the course's matplotlib defaults (Okabe and Ito's
  colour-blind-safe palette as the colour cycle, the figure size of
  :mod:`bncourse.plotting`).
* **Accessible markup.** Two pieces of HTML that other packages write fail the WCAG 2.1 AA
  checks of the book's browser test (axe-core): docutils marks each entry of the
  bibliography with the deprecated ARIA role ``doc-biblioentry`` inside a ``role="list"``,
  which leaves the list with no list items (:func:`_accessible_body` makes them
  ``listitem``), and myst-nb names the summary of a ``hide-input`` cell "Toggle hidden
  content", which hides its visible text ("Show code cell source") from speech input
  (:func:`_visit_hidden_input` lets the text name it). The theme's own two buttons are
  overridden in ``_templates/`` (see ``_config.yml``).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

from bncourse import mathjax

logger = logging.getLogger(__name__)

# What the executed pages read, besides their own code cells (relative to the book's root).
INPUTS = ("bncourse", "results", "assignments/source")
_SUFFIXES = {".py", ".json", ".txt", ".ipynb"}
MARKER = "bncourse-inputs.sha256"


def fingerprint(root) -> str:
    """SHA-256 over the path and contents of every file the pages depend on under ``root``."""
    root = Path(root)
    digest = hashlib.sha256()
    for top in INPUTS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if (
                path.suffix not in _SUFFIXES
                or not path.is_file()
                or "__pycache__" in path.parts
                or ".ipynb_checkpoints" in path.parts
                or "figures" in path.relative_to(base).parts[:1]
            ):
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _use_local_mathjax(app, config):
    directory = mathjax.default_dir()
    if not mathjax.installed(directory):
        raise ExtensionError(
            f"the book's local MathJax is missing from {directory}: run `make setup` (or "
            "`python -m bncourse.mathjax ensure`)"
        )
    # html_static_path copies a folder's contents into _static/, so serve its parent.
    config.html_static_path = [*config.html_static_path, str(directory.parent)]
    config.mathjax_path = f"{directory.name}/{mathjax.ENTRY_POINT}"


def _check_cache(app):
    current = fingerprint(app.srcdir)
    app.bncourse_fingerprint = current
    cache = Path(app.env.mystnb_config.execution_cache_path)
    marker = cache / MARKER
    recorded = marker.read_text().strip() if marker.is_file() else None
    if recorded != current and cache.exists():
        logger.info(
            "bncourse changed since the pages were executed: emptying the execution cache %s", cache
        )
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    marker.write_text(current + "\n")


def _outdated(app, env, added, changed, removed):
    current = app.bncourse_fingerprint
    if getattr(env, "bncourse_fingerprint", None) == current:
        return []
    env.bncourse_fingerprint = current
    stale = sorted(set(env.found_docs) - set(added) - set(changed))
    if stale:
        logger.info("bncourse changed: reading %d unchanged page(s) again", len(stale))
    return stale


def _unique_scripts(app, pagename, templatename, context, doctree):
    # sphinx-thebe registers its inline configuration script once per build from an
    # env-before-read-docs handler (as sphinx-togglebutton does its selector), and each ends
    # up twice on every page: the second copy redeclares a `const` and the browser logs a
    # SyntaxError.
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # The copies differ only in filename: None in one, "" in the other.
        key = (
            getattr(script, "filename", script) or "",
            repr(sorted(getattr(script, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def _accessible_body(app, pagename, templatename, context, doctree):
    # docutils writes <div role="list" class="citation-list"> around entries with the role
    # doc-biblioentry, which WAI-ARIA's DPUB module deprecates; assistive technology and
    # axe-core then find a list without list items (axe: aria-required-children, critical).
    body = context.get("body")
    if body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def _visit_hidden_input(self, node):
    # myst-nb's <summary aria-label="Toggle hidden content"> gives the control a name that
    # does not contain its visible label "Show code cell source" (WCAG 2.5.3, axe:
    # label-content-name-mismatch): without the attribute the visible text names it.
    from myst_nb.sphinx_ import visit_HideCellInput

    start = len(self.body)
    visit_HideCellInput(self, node)
    self.body[start:] = [
        part.replace(' aria-label="Toggle hidden content"', "") for part in self.body[start:]
    ]


def _override_hidden_input(app, config):
    # After myst-nb's own setup (the extension is loaded after it), so this one wins.
    from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput

    app.add_node(HideCodeCellNode, override=True, html=(_visit_hidden_input, depart_HideCellInput))


KERNEL_CONFIG = """\
# Written by bncourse.sphinx_ext for the book's kernels. C-level output (TensorFlow's absl,
# oneDNN and CUDA start-up lines, which TF_CPP_MIN_LOG_LEVEL does not silence) is not copied
# into the pages, and the kernel's file descriptor 2 is sent to {log!r}, so that it does not
# fill the build log either; Python's warnings and sys.stderr still show on the page.
c.IPKernelApp.capture_fd_output = False
c.IPKernelApp.exec_lines = [
    "__import__('os').dup2(__import__('os').open({log!r}, 0o2101, 0o644), 2)",
]
# The one warning the kernel logs at start-up here says that it talks to the build over TCP
# on 127.0.0.1 (jupyter-cache's executor chooses the transport); errors are still logged.
c.IPKernelApp.log_level = "ERROR"
"""
# 0o2101 above is os.O_WRONLY | os.O_CREAT | os.O_APPEND (Linux), written as a number so that
# the line leaves no name behind in the page's namespace.


def kernel_log(outdir) -> Path:
    """Where the book's kernels write their C-level stderr: next to the build's output,
    ``_build/kernel-stderr.log`` for the HTML build and ``kernel-stderr-<builder>.log`` for
    the others (``make pdf``'s single-page build), so that one build does not empty the
    other's log."""
    outdir = Path(outdir)
    suffix = "" if outdir.name == "html" else f"-{outdir.name}"
    return outdir.parent / f"kernel-stderr{suffix}.log"


def _kernel_profile(outdir) -> Path:
    ipython_dir = Path(outdir).parent / ".ipython"
    profile = ipython_dir / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(
        KERNEL_CONFIG.format(log=str(kernel_log(outdir)))
    )
    return ipython_dir


def _favicon_ico(app, exception):
    # Browsers ask for /favicon.ico on pages that name no icon, such as the redirect that
    # Jupyter Book writes as the site's index.html; without one the request is a 404 in
    # the console. Drawn like book/favicon.svg: an orange curve on a blue square.
    if exception is not None or app.builder.format != "html":
        return
    from PIL import Image, ImageDraw

    size = 32
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=5, fill="#0072B2")
    xs = [4 + i * 24 / 40 for i in range(41)]
    points = [(x, 24 - 18 * math.exp(-(((x - 16) / 5.5) ** 2))) for x in xs]
    draw.line(points, fill="#E69F00", width=3)
    icon.save(Path(app.outdir) / "favicon.ico", sizes=[(32, 32), (16, 16)])


BIBLIOGRAPHY_STYLE = "bncourse_author_year"


def _register_bibliography_style():
    """The bibliography's entries labelled like the citations in the text: "Ioffe and
    Szegedy, 2015", "Santurkar et al., 2018", sorted by author and year."""
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = []
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [" ".join(p.last_names) for p in people]
                who = f"{names[0]} et al." if len(names) > 2 else " and ".join(names)
                label = f"{who or entry.key}, {entry.fields.get('year', 'n.d.')}"
                labels.append(label.replace("{", "").replace("}", ""))
            # Labels must be unique: the same authors and year become 1998a, 1998b, ...
            for label in set(labels):
                where = [i for i, other in enumerate(labels) if other == label]
                if len(where) > 1:
                    for letter, i in zip("abcdefghijklmnopqrstuvwxyz", where):
                        labels[i] = f"{label}{letter}"
            yield from labels

    class AuthorYearStyle(Style):
        default_label_style = AuthorYearLabels
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.formatting", BIBLIOGRAPHY_STYLE, AuthorYearStyle, force=True)


def setup(app):
    _register_bibliography_style()
    os.environ["IPYTHONDIR"] = str(_kernel_profile(app.outdir))
    kernel_log(app.outdir).write_text("")  # this build's kernels only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["MATPLOTLIBRC"] = str(Path(__file__).with_name("matplotlibrc"))
    app.connect("config-inited", _use_local_mathjax)
    # After myst-nb's own builder-inited handler, which sets the cache path.
    app.connect("builder-inited", _check_cache, priority=900)
    app.connect("env-get-outdated", _outdated)
    app.connect("config-inited", _override_hidden_input)
    app.connect("html-page-context", _unique_scripts, priority=999)
    app.connect("html-page-context", _accessible_body)
    app.connect("build-finished", _favicon_ico)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
