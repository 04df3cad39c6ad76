"""Saved run results: one JSON file per run, with provenance, checked when read back.

A result file is named after its configuration's hash, so a run whose file exists is not
run again. Each file carries a digest of its own content: a file edited by hand no longer
matches it. A file whose configuration differs from what the code now defines for its
experiment is *stale*.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bncourse.experiments import config_hash, experiment, experiment_names, protocols, run_config
from bncourse.experiments.common import steady_epoch_seconds
from bncourse.stats import mean_std

__all__ = [
    "Check",
    "check_result",
    "load_results",
    "make_record",
    "result_path",
    "save_record",
    "summarize",
    "epochs_to_fraction",
    "steady_epoch_seconds",
    "training_seconds",
]

FORMAT = 1
# results/benchmarks/ holds benchmark measurements (``python -m bncourse.bench ... --save``),
# which are not training runs and are skipped by load_results.
BENCHMARKS = "benchmarks"


def _digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def result_path(out_dir, config: dict) -> Path:
    """``<out>/<experiment>/<bn>-seed<seed>-<profile>-<hash12>.json``."""
    variant = config["bn"] if "bn" in config else config["variant"]
    name = f"{variant}-seed{config['seed']}-{config['profile']}-{config_hash(config)[:12]}"
    return Path(out_dir) / config["experiment"] / f"{name}.json"


def _versions() -> dict:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("bncourse", "keras", "numpy", "tensorflow", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _machine() -> dict:
    # Importing Keras only to name its backend costs seconds (TensorFlow loads) in runs that
    # never used it; then the backend is the one Keras would pick.
    keras = sys.modules.get("keras")
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "keras_backend": keras.backend.backend()
        if keras is not None
        else os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    try:
        machine["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    devices = None  # None: the framework was not loaded by this run
    if machine["keras_backend"] == "jax" and "jax" in sys.modules:
        devices = [str(d) for d in sys.modules["jax"].devices()]
    elif machine["keras_backend"] == "tensorflow" and "tensorflow" in sys.modules:
        devices = [d.name for d in sys.modules["tensorflow"].config.list_logical_devices()]
    machine["devices"] = devices
    return machine


def provenance_now(command=None) -> dict:
    """Where and when a measurement is being made: command, date, package versions and the
    machine (with its load average now)."""
    return {
        "command": command if command is not None else sys.argv,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "machine": _machine(),
    }


def make_record(config: dict, outcome: dict, *, command=None, started=None) -> dict:
    """A result record: configuration, outcome of :func:`train_run`, and provenance."""
    protocol = protocols().get(config["experiment"])
    provenance = {
        **provenance_now(command),
        "started": started,
        "deterministic_ops": outcome.pop("deterministic", None),
        "data": outcome.pop("data_note", None),
    }
    if protocol is not None and protocol.legacy:
        provenance["tutorial_optimizer"] = protocol.legacy
    record = {
        "format": FORMAT,
        "config": config,
        "config_hash": config_hash(config),
        **outcome,
        "provenance": provenance,
    }
    record["digest"] = _digest(record)
    return record


def save_record(record: dict, out_dir) -> Path:
    """Write a record atomically (a temporary file renamed into place) and return its path."""
    path = result_path(out_dir, record["config"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


@dataclass
class Check:
    """A result file read back: its record (None if unreadable) and what is wrong with it."""

    path: Path
    record: dict | None
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems


def check_result(path) -> Check:
    """Read a result file and list its problems: unreadable, hand-edited, misnamed, stale."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return Check(path, None, [f"unreadable: {e}"])
    problems = []
    if not isinstance(record, dict) or "config" not in record or "digest" not in record:
        return Check(path, None, ["not a bncourse result (no config or digest)"])
    if record["digest"] != _digest(record):
        problems.append("edited by hand: its content no longer matches its digest")
    config = record["config"]
    if record.get("config_hash") != config_hash(config):
        problems.append("its config_hash does not match its configuration")
    if path.name != result_path(".", config).name:
        problems.append(f"misnamed: expected {result_path('.', config).name}")
    name = config.get("experiment")
    if name not in experiment_names():
        problems.append(f"stale: experiment {name!r} is no longer defined")
    elif experiment(name).protocol is None:
        try:
            current = experiment(name).configs(config.get("profile"))
        except ValueError as e:
            current = []
            problems.append(f"stale: {e}")
        if current and config not in current:
            problems.append("stale: the experiment's definition changed since this run")
    else:
        try:
            current = run_config(
                experiment(name).protocol,
                config["bn"],
                config["seed"],
                config["profile"],
                epochs=config["epochs"],
                dataset=config["dataset"],
            )
        except (KeyError, ValueError) as e:
            problems.append(f"stale: its configuration cannot be rebuilt ({e})")
        else:
            if current != config:
                changed = sorted(
                    k for k in set(current) | set(config) if current.get(k) != config.get(k)
                )
                problems.append(
                    "stale: the experiment's definition changed since this run "
                    f"(differs in {', '.join(changed)})"
                )
    return Check(path, record, problems)


def repository_results_dir() -> Path | None:
    """Where the course's committed full results are: ``$BNCOURSE_RESULTS_DIR`` if set, else
    the ``results/`` folder of the source checkout this package runs from, else None."""
    if os.environ.get("BNCOURSE_RESULTS_DIR"):
        return Path(os.environ["BNCOURSE_RESULTS_DIR"])
    candidate = Path(__file__).resolve().parent.parent / "results"
    return candidate if candidate.is_dir() else None


def load_results(directory, *, include_bad=False):
    """Every result under ``directory``, checked; by default only the good ones' records.

    Returns:
        ``(records, bad)``: the records of files without problems, and the :class:`Check`
        of every file with one.
    """
    records, bad = [], []
    for path in sorted(Path(directory).rglob("*.json")):
        if BENCHMARKS in path.relative_to(directory).parts[:-1]:
            continue  # benchmark measurements, not training runs
        check = check_result(path)
        if check.ok:
            records.append(check.record)
        else:
            bad.append(check)
    return records, bad


def training_seconds(records) -> dict:
    """{experiment: seconds} that the runs took, from each record's provenance (from the
    run's start to its record), and the total under ``"all"``; runs without a start time
    are left out."""
    out = {}
    for r in records:
        p = r.get("provenance", {})
        if not p.get("started"):
            continue
        seconds = (
            _dt.datetime.fromisoformat(p["date"]) - _dt.datetime.fromisoformat(p["started"])
        ).total_seconds()
        name = r["config"]["experiment"]
        out[name] = out.get(name, 0.0) + seconds
        out["all"] = out.get("all", 0.0) + seconds
    return out


def epochs_to_fraction(val_accuracy, fraction: float = 0.9):
    """The first epoch (1-based) at which validation accuracy reaches ``fraction`` of its
    final value."""
    target = fraction * val_accuracy[-1]
    for epoch, value in enumerate(val_accuracy, start=1):
        if value >= target:
            return epoch
    return len(val_accuracy)


def summarize(records):
    """Rows of the comparison table, one per (experiment, profile, dataset, epochs, variant).

    Each row: ``n`` seeds, test accuracy mean and std, best validation accuracy (mean over
    seeds), epochs to 90% of the final validation accuracy (mean), median seconds per
    epoch (over every epoch but the first of all seeds; see :func:`steady_epoch_seconds`)
    and its ratio to the group's 'none' variant.
    """
    groups = {}
    for r in records:
        c = r["config"]
        if c["experiment"] not in protocols():
            continue  # the other experiments have verdicts instead (bncourse.verdicts)
        key = (c["experiment"], c["profile"], c["dataset"], c["model"], c["epochs"])
        groups.setdefault(key, {}).setdefault(c["bn"], []).append(r)
    rows = []
    order = {"none": 0, "before": 1, "after": 2}
    for key in sorted(groups):
        variants = groups[key]
        medians = {
            bn: statistics.median(s for r in runs for s in steady_epoch_seconds(r))
            for bn, runs in variants.items()
        }
        for bn in sorted(variants, key=order.get):
            runs = sorted(variants[bn], key=lambda r: r["config"]["seed"])
            acc_mean, acc_std = mean_std([r["test"]["accuracy"] for r in runs])
            rows.append(
                {
                    "experiment": key[0],
                    "profile": key[1],
                    "dataset": key[2],
                    "model": key[3],
                    "epochs": key[4],
                    "bn": bn,
                    "seeds": [r["config"]["seed"] for r in runs],
                    "n": len(runs),
                    "test_accuracy_mean": acc_mean,
                    "test_accuracy_std": acc_std,
                    "best_val_accuracy": statistics.fmean(
                        max(r["history"]["val_accuracy"]) for r in runs
                    ),
                    "epochs_to_90pct": statistics.fmean(
                        epochs_to_fraction(r["history"]["val_accuracy"]) for r in runs
                    ),
                    "seconds_per_epoch": medians[bn],
                    "time_ratio": medians[bn] / medians["none"] if "none" in medians else None,
                }
            )
    return rows


def format_table(rows) -> str:
    """The summary rows as aligned text tables, one per experiment and profile."""
    if not rows:
        return "no results"
    out = []
    current = None
    header = (
        f"{'BN':<7} {'seeds':>5} {'test accuracy':>17} {'best val':>9} "
        f"{'epochs to 90%':>13} {'s/epoch':>8} {'vs none':>8}"
    )
    for row in rows:
        key = (row["experiment"], row["profile"], row["dataset"], row["epochs"])
        if key != current:
            if current is not None:
                out.append("")
            current = key
            out.append(
                f"{row['experiment']} [{row['profile']}] {row['model']} on "
                f"{row['dataset']}, {row['epochs']} epochs"
            )
            out.append(header)
        ratio = f"{row['time_ratio']:.2f}x" if row["time_ratio"] is not None else "-"
        out.append(
            f"{row['bn']:<7} {row['n']:>5} "
            f"{row['test_accuracy_mean']:>9.4f} ± {row['test_accuracy_std']:.4f} "
            f"{row['best_val_accuracy']:>9.4f} {row['epochs_to_90pct']:>13.1f} "
            f"{row['seconds_per_epoch']:>8.2f} {ratio:>8}"
        )
    return "\n".join(out)
