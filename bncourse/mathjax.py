"""A local copy of MathJax for the book, so that its equations render with no network.

The book's pages load MathJax from ``_static/mathjax/`` of the built site rather than from
a CDN. The copy comes from the npm registry's tarball of a pinned MathJax release, checked
against its pinned SHA-256 (the registry publishes the same file's SHA-512 as its
``integrity``), and is unpacked into ``<prefix>/share/bncourse/mathjax`` of the running
Python environment (``.venv`` for the course's Makefile), or ``$BNCOURSE_MATHJAX_DIR``.

    python -m bncourse.mathjax ensure      # done by `make setup`

Offline, point ``$BNCOURSE_MATHJAX_TARBALL`` at a copy of the tarball (``npm pack
mathjax@3.2.2`` makes one); ``$BNCOURSE_NPM_REGISTRY`` replaces the registry's address (a
mirror).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from bncourse.data import fetch, sha256_of

__all__ = ["ENTRY_POINT", "VERSION", "MathJaxError", "default_dir", "ensure", "installed"]

VERSION = "3.2.2"
SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
REGISTRY = "https://registry.npmjs.org"
# The combined TeX + MathML input, CommonHTML output bundle (what Sphinx loads by default),
# and what it loads on demand: TeX extensions, fonts, the menu and its accessibility parts.
ENTRY_POINT = "tex-mml-chtml.js"
_KEEP = (ENTRY_POINT, "input/", "output/chtml/", "a11y/", "ui/", "sre/")
_MARKER = ".bncourse-mathjax.json"


class MathJaxError(RuntimeError):
    """The local MathJax copy is missing or could not be made; the message says why."""


def default_dir() -> Path:
    """Where the copy lives: ``$BNCOURSE_MATHJAX_DIR``, else ``<sys.prefix>/share/bncourse/mathjax``."""
    if os.environ.get("BNCOURSE_MATHJAX_DIR"):
        return Path(os.environ["BNCOURSE_MATHJAX_DIR"])
    return Path(sys.prefix) / "share" / "bncourse" / "mathjax"


def installed(directory=None) -> bool:
    """True if ``directory`` holds a complete copy of the pinned version."""
    directory = Path(directory) if directory is not None else default_dir()
    marker = directory / _MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("version") == VERSION and (directory / ENTRY_POINT).is_file()


def tarball_url(registry: str | None = None) -> str:
    registry = (registry or os.environ.get("BNCOURSE_NPM_REGISTRY") or REGISTRY).rstrip("/")
    return f"{registry}/mathjax/-/mathjax-{VERSION}.tgz"


def _unpack(tarball: Path, directory: Path) -> int:
    """Unpack the kept part of ``package/es5/`` into ``directory``; return the file count."""
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            if len(path.parts) < 3 or path.parts[:2] != ("package", "es5"):
                continue
            relative = PurePosixPath(*path.parts[2:])
            if ".." in relative.parts or relative.is_absolute():
                raise MathJaxError(
                    f"refusing a path outside the package in {tarball}: {member.name!r}"
                )
            if not member.isfile() or not any(
                str(relative) == keep or str(relative).startswith(keep) for keep in _KEEP
            ):
                continue
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    if not (directory / ENTRY_POINT).is_file():
        raise MathJaxError(
            f"{tarball} has no package/es5/{ENTRY_POINT}: not a MathJax {VERSION} tarball"
        )
    return count


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
    directory = Path(directory) if directory is not None else default_dir()
    if installed(directory):
        return directory
    tarball = tarball or os.environ.get("BNCOURSE_MATHJAX_TARBALL")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".mathjax-") as tmp:
        tmp = Path(tmp)
        if tarball:
            tarball = Path(tarball)
            if not tarball.is_file():
                raise MathJaxError(f"BNCOURSE_MATHJAX_TARBALL: {tarball} is not a file")
            got = sha256_of(tarball)
            if got != SHA256:
                raise MathJaxError(
                    f"{tarball} is not mathjax-{VERSION}.tgz: expected sha256 {SHA256}, got {got}"
                )
        else:
            url = tarball_url(registry)
            try:
                tarball = fetch(url, tmp / f"mathjax-{VERSION}.tgz", SHA256, timeout=60)
            except OSError as e:
                raise MathJaxError(
                    f"could not download MathJax {VERSION} from {url}: {e}. Offline, set "
                    f"BNCOURSE_MATHJAX_TARBALL to a copy of the tarball (npm pack "
                    f"mathjax@{VERSION}), or BNCOURSE_NPM_REGISTRY to a mirror"
                ) from e
        staging = tmp / "mathjax"
        count = _unpack(tarball, staging)
        (staging / _MARKER).write_text(
            json.dumps({"version": VERSION, "sha256": SHA256, "files": count}) + "\n"
        )
        if directory.exists():
            shutil.rmtree(directory)  # an incomplete or older copy
        os.replace(staging, directory)
    return directory


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["ensure"]:
        print("usage: python -m bncourse.mathjax ensure", file=sys.stderr)
        return 2
    try:
        already = installed()
        path = ensure()
    except MathJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"MathJax {VERSION} {'already in' if already else 'installed in'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
