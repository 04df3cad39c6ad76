"""The book's tooling: the local MathJax copy, the execution-cache fingerprint, the chapter
helpers and the colour-blind-safe palette. Downloads are served from a loopback server
with tarballs the tests make."""

from __future__ import annotations

import functools
import http.server
import json
import statistics
import threading
from pathlib import Path

import pytest

from bncourse import book, mathjax, sphinx_ext
from data_fakes import npm_tarball
from bncourse.plotting import PALETTE

ROOT = Path(__file__).resolve().parents[1]


MEMBERS = {
    "package/package.json": b'{"name": "mathjax"}',
    f"package/es5/{mathjax.ENTRY_POINT}": b"window.MathJax = {};",
    "package/es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff": b"font",
    "package/es5/input/tex/extensions/physics.js": b"ext",
    "package/es5/tex-svg.js": b"not kept",
}


@pytest.fixture
def registry(tmp_path):
    """A loopback 'npm registry' serving files from a folder; yields (url, folder)."""
    root = tmp_path / "registry"
    (root / "mathjax" / "-").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def test_mathjax_downloads_checks_and_unpacks_only_what_the_book_needs(
    registry, tmp_path, monkeypatch
):
    url, root = registry
    sha = npm_tarball(root / "mathjax" / "-" / f"mathjax-{mathjax.VERSION}.tgz", MEMBERS)
    monkeypatch.setattr(mathjax, "SHA256", sha)
    target = tmp_path / "share" / "mathjax"
    assert not mathjax.installed(target)
    assert mathjax.ensure(target, registry=url) == target
    assert mathjax.installed(target)
    assert (target / mathjax.ENTRY_POINT).read_bytes() == b"window.MathJax = {};"
    assert (target / "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()
    assert (target / "input/tex/extensions/physics.js").is_file()
    assert not (target / "tex-svg.js").exists()
    assert json.loads((target / ".bncourse-mathjax.json").read_text())["sha256"] == sha
    # Already there: nothing is downloaded again (the registry is gone).
    (root / "mathjax" / "-" / f"mathjax-{mathjax.VERSION}.tgz").unlink()
    assert mathjax.ensure(target, registry=url) == target


def test_mathjax_wrong_checksum_leaves_nothing_behind(registry, tmp_path, monkeypatch):
    url, root = registry
    npm_tarball(root / "mathjax" / "-" / f"mathjax-{mathjax.VERSION}.tgz", MEMBERS)
    monkeypatch.setattr(mathjax, "SHA256", "0" * 64)
    target = tmp_path / "share" / "mathjax"
    with pytest.raises(mathjax.MathJaxError, match="checksum mismatch"):
        mathjax.ensure(target, registry=url)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == []


def test_mathjax_unreachable_registry_says_what_to_do(tmp_path):
    with pytest.raises(mathjax.MathJaxError, match="BNCOURSE_MATHJAX_TARBALL"):
        mathjax.ensure(tmp_path / "mj", registry="http://127.0.0.1:9")


def test_mathjax_from_a_local_tarball(tmp_path, monkeypatch):
    tgz = tmp_path / "mathjax.tgz"
    monkeypatch.setattr(mathjax, "SHA256", npm_tarball(tgz, MEMBERS))
    monkeypatch.setenv("BNCOURSE_MATHJAX_TARBALL", str(tgz))
    assert mathjax.installed(mathjax.ensure(tmp_path / "mj"))
    monkeypatch.setenv("BNCOURSE_MATHJAX_TARBALL", str(tmp_path / "missing.tgz"))
    with pytest.raises(mathjax.MathJaxError, match="is not a file"):
        mathjax.ensure(tmp_path / "other")


def test_mathjax_refuses_paths_outside_the_package_and_non_mathjax(tmp_path, monkeypatch):
    evil = tmp_path / "evil.tgz"
    monkeypatch.setattr(
        mathjax, "SHA256", npm_tarball(evil, {**MEMBERS, "package/es5/../../../escape.js": b"x"})
    )
    with pytest.raises(mathjax.MathJaxError, match="outside the package"):
        mathjax.ensure(tmp_path / "mj", tarball=evil)
    assert not (tmp_path / "escape.js").exists()
    other = tmp_path / "other.tgz"
    monkeypatch.setattr(mathjax, "SHA256", npm_tarball(other, {"package/es5/x.js": b"x"}))
    with pytest.raises(mathjax.MathJaxError, match="not a MathJax"):
        mathjax.ensure(tmp_path / "mj2", tarball=other)


def test_mathjax_installed_by_setup():
    # `make setup` ran `python -m bncourse.mathjax ensure` into this environment.
    assert mathjax.installed(), f"no MathJax in {mathjax.default_dir()}: run make setup"


def test_fingerprint_follows_package_results_and_assignments(tmp_path):
    for top in sphinx_ext.INPUTS:
        (tmp_path / top).mkdir(parents=True)
    (tmp_path / "bncourse" / "numpy_bn.py").write_text("x = 1\n")
    (tmp_path / "results" / "run.json").write_text("{}")
    first = sphinx_ext.fingerprint(tmp_path)
    assert sphinx_ext.fingerprint(tmp_path) == first
    # Byte caches, checkpoints and redrawn figures do not count ...
    (tmp_path / "bncourse" / "__pycache__").mkdir()
    (tmp_path / "bncourse" / "__pycache__" / "numpy_bn.py").write_text("cache")
    (tmp_path / "results" / "figures").mkdir()
    (tmp_path / "results" / "figures" / "a.json").write_text("{}")
    assert sphinx_ext.fingerprint(tmp_path) == first
    # ... a code change, a new result or an edited notebook does.
    (tmp_path / "bncourse" / "numpy_bn.py").write_text("x = 2\n")
    second = sphinx_ext.fingerprint(tmp_path)
    assert second != first
    (tmp_path / "results" / "other.json").write_text("{}")
    third = sphinx_ext.fingerprint(tmp_path)
    assert third != second
    (tmp_path / "assignments" / "source" / "ps.ipynb").write_text("{}")
    assert sphinx_ext.fingerprint(tmp_path) != third


def test_full_records_and_verdicts_from_the_repository():
    from scipy import stats as scipy_stats

    records = book.full_records("t1-mlp")
    assert {r["config"]["bn"] for r in records} == {"none", "before", "after"}
    assert {r["config"]["profile"] for r in records} == {"full"}
    (verdict,) = book.verdicts_for(9, records)
    # Claim 9's rule applied here by hand to the same records: test accuracy with BN after
    # the ReLU minus before it, seed by seed; a 95% Student-t interval over the seeds;
    # supported above 0, contradicted below 0, inconclusive if it includes 0.
    accuracy = {
        bn: {r["config"]["seed"]: r["test"]["accuracy"] for r in records if r["config"]["bn"] == bn}
        for bn in ("before", "after")
    }
    seeds = sorted(set(accuracy["before"]) & set(accuracy["after"]))
    diffs = [accuracy["after"][s] - accuracy["before"][s] for s in seeds]
    mean, n = statistics.fmean(diffs), len(diffs)
    half = scipy_stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / n**0.5
    expected = (
        "supported" if mean - half > 0 else "contradicted" if mean + half < 0 else "inconclusive"
    )
    assert verdict.claim == "9" and verdict.verdict == expected
    (effect,) = verdict.effects
    assert effect.interval.values == pytest.approx(diffs)
    assert (effect.interval.low, effect.interval.high) == pytest.approx((mean - half, mean + half))
    with pytest.raises(ValueError, match="no verdict on claim 1"):
        book.verdicts_for(1, records)


def test_verdicts_for_a_claim_number_gives_all_its_parts():
    records = book.full_records("inference-stats")
    assert [v.claim for v in book.verdicts_for(12, records)] == ["12a", "12b"]
    assert [v.claim for v in book.verdicts_for("12b", records)] == ["12b"]
    with pytest.raises(ValueError, match="no verdict on claim 12c"):
        book.verdicts_for("12c", records)


def test_judge_claim_uses_full_runs_and_falls_back_to_quick_ones(monkeypatch):
    t1 = book.full_records("t1-mlp")
    (full,), profile = book.judge_claim("9", "t1-mlp")
    assert profile == "full" and full.claim == "9"
    # Full runs without one of the variants the judge needs: the quick records decide.
    without_after = [r for r in t1 if r["config"]["bn"] != "after"]
    monkeypatch.setattr(book, "full_records", lambda name: without_after)
    (quick,), profile = book.judge_claim("9", "t1-mlp", quick=t1)
    assert profile == "quick" and quick.verdict == full.verdict

    def missing(name):
        raise FileNotFoundError(name)

    monkeypatch.setattr(book, "full_records", missing)
    (quick,), profile = book.judge_claim("9", ["t1-mlp"], quick=t1)
    assert profile == "quick" and quick.claim == "9"
    with pytest.raises(ValueError, match="no verdict on claim 9"):
        book.judge_claim("9", "t1-mlp", quick=without_after)


def test_profile_sentence_names_the_profile_and_rejects_others():
    assert "full runs" in book.profile_sentence("full")
    assert "quick profile" in book.profile_sentence("quick")
    with pytest.raises(ValueError, match="'full' or 'quick', got 'medium'"):
        book.profile_sentence("medium")


def test_verdict_markdown_shows_intervals_rule_and_what_would_change_it():
    (verdict,) = book.verdicts_for(9, book.full_records("t1-mlp"))
    text = book.verdict_markdown(verdict).data
    (effect,) = verdict.effects
    assert f"[{effect.interval.low:.3g}, {effect.interval.high:.3g}]" in text
    assert f"**{verdict.verdict}**" in text
    assert verdict.rule in text and verdict.change() in text


def test_plot_verdicts_draws_one_panel_per_claim_and_one_row_per_effect():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bncourse.plotting import plot_verdicts

    records = book.full_records("inference-stats") + book.full_records("t1-mlp")
    items = book.verdicts_for(12, records) + book.verdicts_for(9, records)
    axes = plot_verdicts(items)
    assert len(axes) == len(items)
    assert len({id(ax.figure) for ax in axes}) == 1
    for ax, v in zip(axes, items):
        assert len(ax.get_yticks()) == len(v.effects)
        assert ax.get_title() == f"Claim {v.claim}: {v.verdict}"
    plt.close(axes[0].figure)
    with pytest.raises(ValueError, match="at least one verdict"):
        plot_verdicts([])


def test_full_records_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        book.full_records("nope")
    with pytest.raises(FileNotFoundError, match="bncourse reproduce"):
        book.full_records("ics", results_dir=tmp_path)
    (tmp_path / "ics").mkdir()
    (tmp_path / "ics" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        book.full_records("ics", results_dir=tmp_path)


def test_quick_records_rejects_unknown_names_and_empty_selections():
    with pytest.raises(ValueError, match="unknown experiment"):
        book.quick_records("nope")
    with pytest.raises(ValueError, match="no quick runs"):
        book.quick_records("ics", variants=("absent",))


def _colours(ax):
    from matplotlib.colors import to_hex
    from matplotlib.markers import MarkerStyle

    found = set()
    for line in ax.get_lines():
        if line.get_linestyle() not in ("None", "none", " ", ""):
            found.add(to_hex(line.get_color()))
        if line.get_marker() not in ("None", "none", " ", "", None):
            found.add(to_hex(line.get_markeredgecolor()))
            if MarkerStyle(line.get_marker()).is_filled():  # '_' caps have no face
                found.add(to_hex(line.get_markerfacecolor()))
    for patch in ax.patches:
        if patch.get_fill():
            found.add(to_hex(patch.get_facecolor()))
    for collection in ax.collections:
        for colour in list(collection.get_facecolors()) + list(collection.get_edgecolors()):
            found.add(to_hex(colour))
    return found


@pytest.mark.slow
def test_every_course_figure_uses_the_colour_blind_safe_palette():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bncourse import plotting
    from bncourse.results import load_results

    allowed = {c.lower() for c in PALETTE.values()}
    records, bad = load_results(ROOT / "results")
    assert not bad
    protocols = {"t1-mlp": records_of(records, "t1-mlp"), "t4-cnn": records_of(records, "t4-cnn")}
    axes = []
    for runs in protocols.values():
        axes += [
            plotting.plot_learning_curves(runs),
            plotting.plot_test_accuracy(runs),
            plotting.plot_epoch_seconds(runs),
        ]
    for name, (_, plot) in plotting.CLAIM_FIGURES.items():
        axes.append(plot(records_of(records, name)))
    axes.append(plotting.plot_gamma_beta(records_of(records, "bias-before-bn")))
    axes.append(plotting.plot_accuracy_by_epoch(records_of(records, "t4-cnn-mnist")))
    from bncourse.experiments import verdicts

    axes += plotting.plot_verdicts(
        verdicts([r for r in records if r["config"]["profile"] == "full"])
    )
    for ax in axes:
        colours = _colours(ax) - {"#000000", "#ffffff"}
        assert colours, f"{ax.get_title()!r} has no coloured artists"
        assert colours <= allowed, (ax.get_title(), sorted(colours - allowed))
        plt.close(ax.figure)


def records_of(records, name):
    return [r for r in records if r["config"]["experiment"] == name]


def test_book_matplotlibrc_cycles_through_the_palette():
    text = (ROOT / "bncourse" / "matplotlibrc").read_text()
    cycle = text.split("cycler('color', [")[1].split("]")[0]
    colours = {"#" + c.strip(" '").lower() for c in cycle.split(",")}
    assert colours == {c.lower() for c in PALETTE.values()}


def test_grading_benchmark_saved_with_provenance_and_skipped_by_load_results(tmp_path):
    from bncourse.grading import bench as grading_bench
    from bncourse.results import load_results

    result = {
        "rows": [
            {
                "problem_set": "ps1-forward",
                "autograde_seconds": 5.0,
                "kernel_seconds": 1.0,
                "kernel_peak_mb": 60.0,
                "verify_seconds": 0.5,
                "verify_peak_mb": 130.0,
                "score": 12.0,
                "max_score": 12.0,
            }
        ],
        "class": None,
    }
    (tmp_path / "benchmarks").mkdir()
    path = grading_bench.save(
        result, tmp_path / "benchmarks" / "grading.json", started_load=[1.0, 1.0, 1.0]
    )
    loaded = grading_bench.load(path)
    assert loaded["rows"] == result["rows"]
    assert loaded["provenance"]["load_average_at_start"] == [1.0, 1.0, 1.0]
    assert loaded["provenance"]["versions"]["bncourse"]
    assert "ps1-forward" in grading_bench.format_report(loaded)
    assert load_results(tmp_path) == ([], [])  # a benchmark is not a training run
    (tmp_path / "other.json").write_text('{"benchmark": "numpy"}')
    with pytest.raises(ValueError, match="not a grading benchmark"):
        grading_bench.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="not a readable"):
        grading_bench.load(tmp_path / "missing.json")


def test_committed_grading_benchmark_is_complete():
    from bncourse.grading import PROBLEM_SETS
    from bncourse.grading import bench as grading_bench

    measured = grading_bench.load(ROOT / "results" / "benchmarks" / "grading.json")
    assert {r["problem_set"] for r in measured["rows"]} == set(PROBLEM_SETS)
    # what the instructors' chapter reads: the sandbox's overhead, a class, the speed-up
    assert measured["overhead"]["ratio"] > 0 and measured["speedup"]["ratio"] > 0
    assert measured["class"]["students"] >= 300 and measured["class"]["workers"] >= 1
    assert all(r["score"] == r["max_score"] for r in measured["rows"])


def test_bench_save_needs_an_existing_folder(tmp_path, capsys):
    from bncourse import bench

    with pytest.raises(SystemExit):
        bench.main(["grading", "--save", str(tmp_path / "no" / "such.json")])
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.book
def test_a_package_change_re_executes_cached_pages(tiny_book):
    """A tiny book with the course's extension: built twice, its page runs once; after a
    file under bncourse/ changes, the page runs again although its own code did not."""
    from bncourse.bench import build_book

    root = tiny_book("print(open('bncourse/version.py').read().strip())", extension=True)
    (root / "bncourse").mkdir()
    (root / "bncourse" / "version.py").write_text("VERSION = 1\n")

    def build():
        result = build_book(root, timeout=600)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-3000:]
        html = (root / "_build" / "html" / "page.html").read_text()
        return "Executing notebook" in log, html

    executed, html = build()
    assert executed and "VERSION = 1" in html
    executed, html = build()
    assert not executed and "VERSION = 1" in html  # cached
    (root / "bncourse" / "version.py").write_text("VERSION = 2\n")
    executed, html = build()
    assert executed and "VERSION = 2" in html


def test_c_level_stderr_goes_to_the_kernel_log_not_the_page_or_the_build_log(tiny_book):
    """What a page's C code writes to file descriptor 2 (TensorFlow's start-up lines) is
    kept in _build/kernel-stderr.log; a Python warning still shows on the page."""
    from bncourse.bench import build_book

    # the markers are put together at run time, so the page's source does not show them
    code = (
        "import os, warnings\n"
        "os.write(2, b'C-LEVEL-' + b'NOISE\\n')\n"
        "warnings.warn('PYTHON-' + 'WARNING')\n"
        "print('PAGE-' + 'OUTPUT')"
    )
    root = tiny_book(code, extension=True)
    result = build_book(root, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    html = (root / "_build" / "html" / "page.html").read_text()
    assert "PAGE-OUTPUT" in html and "PYTHON-WARNING" in html
    assert "C-LEVEL-NOISE" not in html and "C-LEVEL-NOISE" not in log
    assert "running over TCP without encryption" not in log
    assert "C-LEVEL-NOISE" in (root / "_build" / "kernel-stderr.log").read_text()


def test_each_builder_keeps_its_own_kernel_log(tmp_path):
    """make pdf's single-page build does not empty the HTML build's kernel log."""
    html = sphinx_ext.kernel_log(tmp_path / "_build" / "html")
    single = sphinx_ext.kernel_log(tmp_path / "_build" / "singlehtml")
    assert html == tmp_path / "_build" / "kernel-stderr.log"
    assert single.parent == html.parent and single != html
