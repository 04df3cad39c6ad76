"""The bncourse command end to end: compare, reproduce, report, resume, and bad options."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bncourse import cli, data, experiments
from bncourse.experiments import protocol
from bncourse.results import check_result, load_results

from test_data import fake_dataset, write_idx_set

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A generated Fashion-MNIST of 400 training and 100 test images, staged for the course."""
    (x_train, _), (x_test, _) = fake_dataset(12, n_train=400, n_test=100)

    # Learnable labels: the class is the brightness decile of the image's top-left quarter.
    def labels(x):
        score = x[:, :14, :14].mean(axis=(1, 2))
        return np.searchsorted(np.quantile(score, np.linspace(0.1, 0.9, 9)), score).astype(np.uint8)

    staged = tmp_path / "staged"
    write_idx_set(staged / "fashion-mnist", ((x_train, labels(x_train)), (x_test, labels(x_test))))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(staged))
    return staged


def run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_on_generated_data_then_report(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    code, stdout, stderr = run_cli(
        [
            "compare",
            "--model",
            "mlp",
            "--bn",
            "none,before",
            "--seeds",
            "0,1",
            "--epochs",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, stderr
    files = sorted(out.rglob("*.json"))
    assert len(files) == 4
    # Progress: the current run, epoch and an ETA.
    assert "[run 4/4] t1-mlp bn=before seed=1 | epoch 2/2" in stderr and "ETA" in stderr
    assert "[run 2/4] t1-mlp bn=before seed=0" in stderr  # seed by seed
    assert "validation images are also training images" in stdout
    lines = stdout.strip().splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("BN "))
    assert lines[header - 1] == "t1-mlp [quick] mlp on fashion_mnist, 2 epochs"
    assert lines[header + 1].split()[:2] == ["none", "2"]
    assert lines[header + 1].endswith("1.00x") and lines[header + 2].startswith("before")
    record = json.loads(files[0].read_text())
    assert record["provenance"]["data"].startswith(
        "fashion_mnist: validation = the first 33 of the 400 training images"
    )
    assert len(record["history"]["val_accuracy"]) == 2 and len(record["epoch_seconds"]) == 2
    assert record["provenance"]["tutorial_optimizer"]["translation"][1].startswith("decay=1e-6")
    assert record["provenance"]["command"][:3] == ["bncourse", "compare", "--model"]
    for key in ("versions", "machine", "date"):
        assert record["provenance"][key]

    code, report, _ = run_cli(["report", str(out)], capsys)
    assert code == 0
    assert report.splitlines()[:2] == lines[header - 1 : header + 1]
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert len(figures) == 6 and "t1-mlp-quick-curves.png" in figures


def test_saved_runs_are_skipped_and_an_interrupted_run_resumes(
    tiny_data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "runs"
    argv = [
        "compare",
        "--model",
        "small",
        "--bn",
        "none,after",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    real_train = experiments.train_run
    calls = []

    def interrupted(config, **kwargs):
        calls.append(config["bn"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C came during the second run
        return real_train(config, **kwargs)

    monkeypatch.setattr(protocol, "train_run", interrupted)  # what every protocol run calls
    code, _, stderr = run_cli(argv, capsys)
    assert code == 130 and "finished runs are saved" in stderr
    assert [p.name.split("-")[0] for p in out.rglob("*.json")] == ["none"]
    assert not list(out.rglob("*.part"))

    monkeypatch.setattr(protocol, "train_run", real_train)
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0
    assert "1 run(s) already saved" in stderr and "[run 1/1] small bn=after" in stderr
    assert sorted(p.name.split("-")[0] for p in out.rglob("*.json")) == ["after", "none"]
    # --rerun trains both again.
    code, _, stderr = run_cli(argv + ["--rerun"], capsys)
    assert code == 0 and "[run 2/2]" in stderr


def test_same_configuration_same_history(tiny_data):
    """Seeded and deterministic: one quick configuration trained twice gives equal numbers."""
    config = experiments.run_config(
        experiments.protocols()["t4-cnn"], "after", seed=3, profile="quick", epochs=2
    )
    first = experiments.train_run(config)
    second = experiments.train_run(config)
    assert first["history"] == second["history"]
    assert first["test"] == second["test"]
    other_seed = experiments.train_run(dict(config, seed=4))
    assert other_seed["history"] != first["history"]


def test_reproduce_quick_runs_every_variant_and_seed(tiny_data, tmp_path, capsys):
    out = tmp_path / "results"
    code, stdout, stderr = run_cli(
        ["reproduce", "--profile", "quick", "--only", "small", "--out", str(out)], capsys
    )
    assert code == 0, stderr
    protocol = experiments.protocols()["small"]
    assert len(list(out.rglob("*.json"))) == len(protocol.variants) * len(protocol.seeds)
    records, bad = load_results(out)
    assert not bad and {r["config"]["profile"] for r in records} == {"quick"}
    assert "small [quick] small on fashion_mnist, 3 epochs" in stdout


def test_reproduce_skips_experiments_whose_data_is_missing(
    tiny_data, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(data, "load_dataset", _no_kmnist(data.load_dataset))
    code, stdout, _ = run_cli(
        [
            "reproduce",
            "--profile",
            "quick",
            "--only",
            "t3-cnn-kmnist",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert code == 0
    assert stdout.startswith("skipped t3-cnn-kmnist: dataset 'kmnist' was not found")


def _no_kmnist(load):
    def loader(name, **kwargs):
        if name == "kmnist":
            raise data.DatasetNotFoundError("dataset 'kmnist' was not found. Tried, in order: x")
        return load(name, **kwargs)

    return loader


@pytest.mark.slow
def test_compare_on_real_fashion_mnist(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    out = tmp_path / "runs"
    code, stdout, stderr = run_cli(
        ["compare", "--model", "cnn", "--bn", "none,after", "--seeds", "0", "--out", str(out)],
        capsys,
    )
    assert code == 0, stderr
    records, bad = load_results(out)
    assert not bad and len(records) == 2
    for r in records:
        assert r["config"]["subset"] == {"train": 10000, "test": 2000}
        assert r["config"]["batch_size"] == 20
        assert "validation = the last 2000 of the 10000 training images" in r["provenance"]["data"]
        # Two quick epochs of the tutorial CNN, BN or not, already beat chance by far: the
        # moving statistics have converged (see the quick profile's docstring).
        assert r["test"]["accuracy"] > 0.7
    assert "t4-cnn [quick] cnn on fashion_mnist, 2 epochs" in stdout


# ----------------------------------------------------------------------------- stale files


def _saved(tiny_data, tmp_path, capsys):
    out = tmp_path / "runs"
    assert (
        cli.main(
            [
                "compare",
                "--model",
                "small",
                "--bn",
                "none",
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    return out, next(out.rglob("*.json"))


def test_a_hand_edited_result_is_reported(tiny_data, tmp_path, capsys):
    out, path = _saved(tiny_data, tmp_path, capsys)
    record = json.loads(path.read_text())
    record["test"]["accuracy"] = 0.99
    path.write_text(json.dumps(record))
    assert "edited by hand" in check_result(path).problems[0]
    code, stdout, _ = run_cli(["report", str(out), "--no-figures"], capsys)
    assert code == 1 and "problem: " in stdout and "edited by hand" in stdout


def test_a_result_of_an_older_definition_is_stale(tiny_data, tmp_path, capsys, monkeypatch):
    out, path = _saved(tiny_data, tmp_path, capsys)
    assert check_result(path).ok
    import dataclasses

    from bncourse.experiments import registry

    small = experiments.experiment("small")
    changed = dataclasses.replace(small.protocol, batch_size=64)
    monkeypatch.setitem(registry._registry(), "small", dataclasses.replace(small, protocol=changed))
    problems = check_result(path).problems
    assert problems == [
        "stale: the experiment's definition changed since this run (differs in batch_size)"
    ]
    code, stdout, _ = run_cli(["report", str(out), "--no-figures"], capsys)
    assert code == 1 and "stale" in stdout


def test_committed_results_are_neither_stale_nor_edited():
    """Everything in results/ was written by the runner for the current definitions."""
    results = ROOT / "results"
    assert results.is_dir(), f"{results} is committed: it is missing from this checkout"
    records, bad = load_results(results)
    assert not bad, "\n".join(f"{c.path}: {c.problems}" for c in bad)
    # Both tutorials' protocols have full runs: an empty results/ would check nothing.
    experiments_run = {r["config"]["experiment"] for r in records}
    assert experiments_run >= {"t1-mlp", "t4-cnn"}, f"results/ holds runs of {experiments_run}"


# ----------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--dataset", "cifar10"], "argument --dataset: invalid choice: 'cifar10'"),
        (["compare", "--seeds", "0,one"], "expected a comma-separated list of integers"),
        (["compare", "--seeds", "0,0"], "seeds must not repeat"),
        (["compare", "--epochs", "-3"], "expected a positive integer, got '-3'"),
        (["compare", "--epochs", "0"], "expected a positive integer, got '0'"),
        (["compare", "--bn", "none,middle"], "none, before, after"),
        (["compare", "--model", "resnet"], "invalid choice: 'resnet'"),
        (["compare", "--out", "/dev/null/results"], "cannot write to the output directory"),
        (["reproduce", "--only", "t9-transformer"], "unknown experiment(s) t9-transformer"),
        (["report", "/nonexistent/results"], "is not a directory of results"),
        (["train"], "invalid choice: 'train'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_options_exit_with_one_line(argv, message, capsys):
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: bncourse")
    assert message in stderr
    assert "Traceback" not in stderr


def test_help_explains_every_option():
    for command, options in [
        (
            "compare",
            [
                "--model",
                "--dataset",
                "--bn",
                "--seeds",
                "--epochs",
                "--profile",
                "--out",
                "--rerun",
            ],
        ),
        ("reproduce", ["--profile", "--only", "--out", "--rerun"]),
        ("report", ["directory", "--figures", "--no-figures"]),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "bncourse.cli", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0
        for option in options:
            assert option in result.stdout, (command, option)
    top = subprocess.run(
        [Path(sys.executable).with_name("bncourse"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert top.returncode == 0 and "compare" in top.stdout and "reproduce" in top.stdout


def test_compare_without_the_data_fails_in_one_line_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", _no_kmnist(data.load_dataset))
    code, stdout, stderr = run_cli(
        ["compare", "--dataset", "kmnist", "--out", str(tmp_path / "r")], capsys
    )
    assert code == 1 and stdout == ""
    assert stderr == "error: dataset 'kmnist' was not found. Tried, in order: x\n"


def test_experiment_configs_cover_protocols_and_claims_and_narrow():
    from bncourse.experiments import experiment_configs, experiment_names, protocols

    assert "t1-mlp" in experiment_names() and "ics" in experiment_names()
    t1 = experiment_configs("t1-mlp", "full")
    assert [(c["seed"], c["bn"]) for c in t1][:3] == [(0, "none"), (0, "before"), (0, "after")]
    protocol = protocols()["t1-mlp"]
    assert len(t1) == len(protocol.seeds) * len(protocol.variants) > 1
    narrowed = experiment_configs("t1-mlp", "quick", seeds=(1,), variants=("after",))
    assert [(c["seed"], c["bn"], c["profile"]) for c in narrowed] == [(1, "after", "quick")]
    ics = experiment_configs("ics", "quick", variants=("bn",))
    assert {c["variant"] for c in ics} == {"bn"} and ics
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiment_configs("nope", "quick")
