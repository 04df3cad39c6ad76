"""The benchmark runs and prints every row with its ratio; it asserts no time."""

import re

import pytest

from bncourse import bench


def test_bench_prints_every_operation_with_its_ratio(capsys):
    assert bench.main(["--rows", "64", "--features", "8", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    for name in [
        "copy of x (bandwidth floor)",
        "numpy_bn forward (training)",
        "numpy_bn backward, staged",
        "numpy_bn backward, closed form",
        "keras BatchNormalization forward (training, ",
    ]:
        assert name in out
    # The copy is the unit: its own ratio is exactly 1.00.
    assert re.search(r"copy of x \(bandwidth floor\)\s+[\d.]+\s+1\.00\n", out)
    assert re.search(r"closed-form backward is [\d.]+x as fast as the staged one", out)
    assert re.search(r"our forward takes [\d.]+x the time of Keras's layer", out)


def test_bench_rejects_bad_sizes(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--rows", "1"])
    assert exit_info.value.code == 2
    assert "--rows must be >= 2" in capsys.readouterr().err


def test_fold_bench_prints_both_placements_of_both_models(capsys):
    assert bench.main(["fold", "--images", "200", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "predict 200 Fashion-MNIST test images" in out
    for model in ("mlp before", "mlp after", "cnn before", "cnn after"):
        assert re.search(model + r"\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\n?", out), model


@pytest.mark.slow
def test_book_bench_builds_twice_and_prints_ratios_to_the_budgets(tiny_book):
    tmp_path = tiny_book()
    rows = bench.run_book(tmp_path)
    assert [what for what, _, _ in rows] == list(bench.BOOK_BUDGETS)
    assert all(seconds > 0 for _, seconds, _ in rows)
    table = bench.format_book_table(rows)
    assert "cold build" in table and "x" in table.splitlines()[1]
    (tmp_path / "_toc.yml").unlink()
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        bench.run_book(tmp_path)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: missing\n")
    with pytest.raises(RuntimeError, match="did not build"):
        bench.run_book(tmp_path)
