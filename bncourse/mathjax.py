"""A local copy of MathJax for the book, so that its equations render with no network.

The book's pages load MathJax from ``_static/mathjax/`` of the built site rather than from
a CDN. The copy comes from the npm registry's tarball of a pinned MathJax release, checked
against its pinned SHA-256 (the registry publishes the same file's SHA-512 as its
``integrity``), and is unpacked into ``<prefix>/share/bncourse/mathjax`` of the running
Python environment (``.venv`` for the course's Makefile), or ``$BNCOURSE_MATHJAX_DIR``.
Downloading, checking and unpacking are :class:`bncourse.npm.NpmPackage`'s, shared with
the browser test's axe-core.

    python -m bncourse.mathjax ensure      # done by `make setup`

Offline, point ``$BNCOURSE_MATHJAX_TARBALL`` at a copy of the tarball (``npm pack
mathjax@3.2.2`` makes one); ``$BNCOURSE_NPM_REGISTRY`` replaces the registry's address (a
mirror).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bncourse.npm import NpmPackage, NpmPackageError, ensure_command

__all__ = ["ENTRY_POINT", "VERSION", "MathJaxError", "default_dir", "ensure", "installed"]

VERSION = "3.2.2"
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
# The combined TeX + MathML input, CommonHTML output bundle (what Sphinx loads by default),
# and what it loads on demand: TeX extensions, fonts, the menu and its accessibility parts.
ENTRY_POINT = "tex-mml-chtml.js"
_KEEP = (ENTRY_POINT, "input/", "output/chtml/", "a11y/", "ui/", "sre/")


class MathJaxError(NpmPackageError):
    """The local MathJax copy is missing or could not be made; the message says why."""


def _package() -> NpmPackage:
    # Built on each call from the module's pins, which the tests replace.
    return NpmPackage(
        name="mathjax",
        version=VERSION,
        sha256=SHA256,
        title="MathJax",
        root="package/es5",
        keep=_KEEP,
        entry_point=ENTRY_POINT,
        env="BNCOURSE_MATHJAX",
        error=MathJaxError,
    )


def default_dir() -> Path:
    """Where the copy lives: ``$BNCOURSE_MATHJAX_DIR``, else ``<sys.prefix>/share/bncourse/mathjax``."""
    return _package().default_dir()


def installed(directory=None) -> bool:
    """True if ``directory`` holds a complete copy of the pinned version."""
    return _package().installed(directory)


def tarball_url(registry: str | None = None) -> str:
    return _package().tarball_url(registry)


def ensure(directory=None, *, registry: str | None = None, tarball=None) -> Path:
    """Make sure ``directory`` holds MathJax |VERSION|; download and unpack it if not.

    Args:
        directory: where to put it (default :func:`default_dir`).
        registry: the npm registry's base URL (default ``$BNCOURSE_NPM_REGISTRY`` or
            registry.npmjs.org).
        tarball: a local copy of the tarball to use instead of downloading (default
            ``$BNCOURSE_MATHJAX_TARBALL``).

    Raises:
        MathJaxError: the download failed, the tarball's checksum is wrong, or it is not
            MathJax; nothing is left half-installed.
    """
    return _package().ensure(directory, registry=registry, tarball=tarball)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["ensure"]:
        print("usage: python -m bncourse.mathjax ensure", file=sys.stderr)
        return 2
    return ensure_command(_package())


if __name__ == "__main__":
    sys.exit(main())
