"""bncourse.npm: pinned npm tarballs, checked and unpacked (axe-core for the browser test).

MathJax goes the same way and is tested in tests/test_book_tools.py; here, axe-core's pin
and the command line, with tarballs the tests make."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bncourse import mathjax, npm
from data_fakes import npm_tarball

MEMBERS = {
    "package/package.json": b'{"name": "axe-core"}',
    "package/axe.min.js": b"window.axe = {};",
    "package/LICENSE": b"MPL-2.0",
    "package/axe.js": b"not kept",
    "package/locales/de.json": b"{}",
}


def test_axe_core_is_pinned_and_kept_apart_from_what_the_book_serves(monkeypatch):
    monkeypatch.delenv("BNCOURSE_AXE_DIR", raising=False)
    monkeypatch.delenv("BNCOURSE_MATHJAX_DIR", raising=False)
    package = npm.AXE_CORE
    assert package.tarball_url("https://r.example/") == (
        f"https://r.example/axe-core/-/axe-core-{package.version}.tgz"
    )
    assert len(package.sha256) == 64 and int(package.sha256, 16) >= 0
    # The book's build serves every folder next to MathJax's (bncourse.sphinx_ext).
    assert package.default_dir().parent != mathjax.default_dir().parent


def test_only_the_kept_files_are_unpacked_and_a_second_call_downloads_nothing(tmp_path):
    tgz = tmp_path / "axe.tgz"
    package = dataclasses.replace(npm.AXE_CORE, sha256=npm_tarball(tgz, MEMBERS))
    target = tmp_path / "share" / "axe-core"
    assert not package.installed(target)
    assert package.ensure(target, tarball=tgz) == target
    assert package.installed(target)
    files = sorted(p.name for p in target.iterdir())
    assert files == [".bncourse-axe-core.json", "LICENSE", "axe.min.js"]
    assert json.loads((target / ".bncourse-axe-core.json").read_text())["files"] == 2
    tgz.unlink()
    assert package.ensure(target, tarball=tgz) == target  # already there


def test_a_wrong_tarball_is_refused_and_leaves_nothing(tmp_path):
    tgz = tmp_path / "axe.tgz"
    npm_tarball(tgz, MEMBERS)
    target = tmp_path / "share" / "axe-core"
    with pytest.raises(npm.NpmPackageError, match=r"is not axe-core-4\.\d+\.\d+\.tgz"):
        npm.AXE_CORE.ensure(target, tarball=tgz)  # the real pin, another file
    other = tmp_path / "other.tgz"
    package = dataclasses.replace(npm.AXE_CORE, sha256=npm_tarball(other, {"package/axe.js": b"x"}))
    with pytest.raises(npm.NpmPackageError, match="has no package/axe.min.js: not a axe-core"):
        package.ensure(target, tarball=other)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_the_command_line(tmp_path, monkeypatch, capsys):
    assert npm.main(["ensure"]) == 2
    assert npm.main(["ensure", "left-pad"]) == 2
    assert "usage: python -m bncourse.npm ensure {axe-core}" in capsys.readouterr().err
    monkeypatch.setenv("BNCOURSE_AXE_DIR", str(tmp_path / "axe"))
    monkeypatch.setenv("BNCOURSE_AXE_TARBALL", str(tmp_path / "missing.tgz"))
    assert npm.main(["ensure", "axe-core"]) == 1
    assert "BNCOURSE_AXE_TARBALL:" in capsys.readouterr().err
    tgz = tmp_path / "axe.tgz"
    monkeypatch.setattr(
        npm,
        "PACKAGES",
        {"axe-core": dataclasses.replace(npm.AXE_CORE, sha256=npm_tarball(tgz, MEMBERS))},
    )
    monkeypatch.setenv("BNCOURSE_AXE_TARBALL", str(tgz))
    assert npm.main(["ensure", "axe-core"]) == 0
    assert "installed in" in capsys.readouterr().out
    assert npm.main(["ensure", "axe-core"]) == 0
    assert "already in" in capsys.readouterr().out
