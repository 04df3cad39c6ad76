"""``bncourse reproduce``: one progress bar with an ETA for the whole reproduction, resuming
after ``kill -9``, and the runs spread over a dask.distributed cluster (a scheduler and two
worker processes on 127.0.0.1)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bncourse import cli
from bncourse.experiments import experiment_configs
from bncourse.results import check_result, load_results, result_path
from bncourse.runner import ReproductionProgress, estimate_seconds, reproduce_configs, run_name


BIN = Path(sys.executable).parent
QUICK = ["reproduce", "--profile", "quick", "--only", "input-scaling"]
BAR_LINE = re.compile(r"^\[\s*\d+/6\] ", re.MULTILINE)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def fake_config(experiment, seed):
    return {"experiment": experiment, "variant": "x", "seed": seed, "profile": "quick"}


# --------------------------------------------------------------------------- the ETA


def test_estimate_uses_each_experiments_mean_else_the_overall_mean():
    assert estimate_seconds({"slow": 3}, {}) is None  # nothing finished yet
    finished = {"slow": [100.0, 300.0], "fast": [2.0]}
    # slow: 2 x 200; fast: 4 x 2; never run: 1 x the mean of all three (134)
    assert estimate_seconds({"slow": 2, "fast": 4, "new": 1}, finished) == pytest.approx(
        400 + 8 + 134
    )
    assert estimate_seconds({"slow": 0, "fast": 0}, finished) == 0
    with pytest.raises(ValueError, match="remaining runs of 'slow' must be >= 0, got -1"):
        estimate_seconds({"slow": -1}, finished)


def test_progress_bar_with_a_fake_clock():
    clock, stream = FakeClock(), io.StringIO()
    slow = [fake_config("slow", s) for s in (0, 1)]
    fast = [fake_config("fast", s) for s in (0, 1)]
    progress = ReproductionProgress(slow + fast, already_done=1, stream=stream, clock=clock)
    assert progress.line() == "[1/5]  20.0%  elapsed 0:00  ETA ?"

    clock.now = 100
    progress.finished(slow[0], 100.0)
    # one slow run left (100 s) and two fast ones, not measured yet: the overall mean, 100 s
    assert stream.getvalue() == (
        f"[2/5]  40.0%  elapsed 1:40  ETA 5:00  {run_name(slow[0])} (1m40s)\n"
    )
    clock.now = 110
    progress.finished(fast[0], 10.0, "test accuracy 0.9000")
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("[3/5]  60.0%  elapsed 1:50  ETA 1:50  fast/x-seed0-quick-")
    assert last.endswith("(10s) test accuracy 0.9000")
    progress.parallel = 2  # two runs at once: half the time
    assert progress.line().endswith("ETA 0:55")

    progress.failure(slow[1], "ValueError: bad")
    assert stream.getvalue().splitlines()[-1] == f"failed: {run_name(slow[1])}: ValueError: bad"
    clock.now = 120
    progress.finished(fast[1], 10.0)
    assert (
        stream.getvalue()
        .splitlines()[-1]
        .startswith("[4/5]  80.0%  elapsed 2:00  ETA 0:00  1 failed  fast/")
    )
    assert progress.line().endswith("ETA 0:00  1 failed")
    lines = stream.getvalue().splitlines()
    progress.close()  # not a terminal: nothing more
    assert stream.getvalue().splitlines() == lines and len(lines) == 4


def test_progress_bar_on_a_terminal_is_one_line_redrawn():
    clock, stream = FakeClock(), Terminal()
    todo = [fake_config("a", s) for s in range(3)]
    progress = ReproductionProgress(todo, stream=stream, clock=clock)
    progress.show("a/x-seed0 epoch 1/2")
    assert stream.getvalue().startswith("\r[0/3]   0.0%  elapsed 0:00  ETA ?  a/x-seed0 epoch 1/2")
    for i, config in enumerate(todo):
        clock.now += 5
        progress.finished(config, 5.0)
        if i == 0:
            progress.show("a/x-seed1 epoch 1/2")  # redraws with the ETA of the others
            assert (
                stream.getvalue()
                .split("\r")[-1]
                .startswith("[1/3]  33.3%  elapsed 0:05  ETA 0:10  a/x-seed1 epoch 1/2")
            )
    progress.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # ended by the last run, once
    assert text.split("\r")[-1].startswith("[3/3] 100.0%  elapsed 0:15  ETA 0:00")


def test_a_failure_on_a_terminal_gets_a_line_of_its_own_and_the_bar_is_ended():
    stream = Terminal()
    todo = [fake_config("a", 0), fake_config("a", 1)]
    progress = ReproductionProgress(todo, stream=stream, clock=FakeClock())
    progress.finished(todo[0], 1.0)
    progress.failure(todo[1], "KilledWorker: gone")
    progress.close()
    lines = stream.getvalue().split("\n")
    assert lines[-3].endswith(f"\x1b[2Kfailed: {run_name(todo[1])}: KilledWorker: gone")
    # the bar is drawn again under it, and ended once
    assert lines[-2] == "\r" + "[1/2]  50.0%  elapsed 0:00  ETA 0:00  1 failed".ljust(100)
    assert lines[-1] == ""


# --------------------------------------------------------------------------- resuming


def _result_files(out: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*.json")}


@pytest.mark.slow
def test_reproduce_resumes_after_kill_9(tmp_path):
    out = tmp_path / "results"
    command = [str(BIN / "bncourse"), *QUICK, "--out", str(out)]
    configs = experiment_configs("input-scaling", "quick")
    assert len(configs) == 6
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(out.rglob("*.json")):
            assert proc.poll() is None, f"it exited ({proc.returncode}) before saving a run"
            assert time.monotonic() < deadline, "no result file within 300 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _result_files(out)
    assert 1 <= len(before) < 6, sorted(before)
    for path in before:
        assert check_result(path).ok, path
    # what a kill during a save leaves behind: a half-written temporary file
    unsaved = [c for c in configs if not result_path(out, c).exists()]
    part = result_path(out, unsaved[0]).with_suffix(".json.part")
    part.write_text('{"config": {"experim')

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} run(s) already saved" in again.stderr
    assert len(BAR_LINE.findall(again.stderr)) == len(unsaved)  # a line per run, no tty
    assert "[6/6] 100.0%" in again.stderr

    after = _result_files(out)
    assert sorted(after) == sorted(result_path(out, c) for c in configs)  # one file each
    assert not list(out.rglob("*.part"))
    assert all(after[path] == before[path] for path in before)  # not run again
    records, bad = load_results(out)
    assert not bad and len(records) == 6
    for config in unsaved:
        assert check_result(result_path(out, config)).ok


# --------------------------------------------------------------------------- a cluster


@pytest.mark.slow
def test_reproduce_on_a_dask_cluster(tmp_path, capsys, scheduler):  # noqa: F811
    out = tmp_path / "results"
    argv = [*QUICK, "--scheduler", scheduler, "--out", str(out)]
    assert cli.main(argv) == 0
    stderr = capsys.readouterr().err
    assert (
        f"6 run(s) to do, each saved in {out} when it finishes, on the dask cluster at "
        f"{scheduler}" in stderr
    )
    assert len(BAR_LINE.findall(stderr)) == 6 and "[6/6] 100.0%" in stderr
    records, bad = load_results(out)
    assert not bad and len(records) == 6
    configs = experiment_configs("input-scaling", "quick")
    assert sorted(r["config_hash"] for r in records) == sorted(
        check_result(result_path(out, c)).record["config_hash"] for c in configs
    )
    assert {tuple(r["provenance"]["command"][:2]) for r in records} == {("bncourse", "reproduce")}

    assert cli.main(argv) == 0  # everything saved: nothing is submitted
    stderr = capsys.readouterr().err
    assert "6 run(s) already saved" in stderr and not BAR_LINE.search(stderr)


@pytest.mark.slow
def test_a_run_failing_on_the_cluster_is_named_and_the_others_are_saved(tmp_path, scheduler):  # noqa: F811
    out, stream = tmp_path / "results", io.StringIO()
    good = experiment_configs("input-scaling", "quick")[:2]
    broken = dict(good[0], experiment="no-such-experiment")
    records, failures = reproduce_configs(
        [good[0], broken, good[1]], out, scheduler=scheduler, stream=stream
    )
    assert [name for name, _ in failures] == [run_name(broken)]
    assert failures[0][1].startswith("ValueError: ") and "no-such-experiment" in failures[0][1]
    assert f"failed: {run_name(broken)}: ValueError: " in stream.getvalue()
    assert sorted(r["config_hash"] for r in records) == sorted(
        r["config_hash"] for r in load_results(out)[0]
    )
    assert len(records) == 2 and not load_results(out)[1]


def test_a_bad_scheduler_address_is_refused_in_one_line(capsys):
    assert cli.main([*QUICK, "--scheduler", "localhost"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: bncourse reproduce: argument --scheduler: expected a dask scheduler "
        "address such as tcp://HOST:8786, got 'localhost'\n"
    )
