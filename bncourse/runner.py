"""Running experiments: every configuration without a saved result is trained and saved at
once, so a stopped run resumes where it stopped.

:func:`run_configs` trains in this process with a progress line per epoch and an ETA;
``bncourse compare`` and the book use it. :func:`reproduce_configs` runs a whole
reproduction (every experiment's runs together) under one progress bar, in this process
or, given a ``dask.distributed`` scheduler, spread over the cluster's workers; either way
only this process writes the results.
"""

from __future__ import annotations

import datetime as _dt
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict

from bncourse.experiments import experiment
from bncourse.progress import Progress as _Bar
from bncourse.progress import duration

__all__ = [
    "Progress",
    "ReproductionProgress",
    "SchedulerError",
    "duration",
    "estimate_seconds",
    "reproduce_configs",
    "run_configs",
    "run_name",
    "run_one",
    "saved_and_todo",
]


# --------------------------------------------------------------------------- progress


class Progress:
    """A progress line: the current run, its epoch, elapsed time and an ETA.

    On a terminal the line is redrawn in place; elsewhere (logs, CI) a line is printed per
    epoch.
    """

    def __init__(self, runs, stream=None):
        self.runs = runs  # list of (label, epochs) still to train
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.epoch_seconds = []
        self.index = -1

    def begin(self, index):
        self.index = index

    def epoch(self, epoch, logs, seconds):
        self.epoch_seconds.append(seconds)
        label, epochs = self.runs[self.index]
        remaining = epochs - (epoch + 1) + sum(e for _, e in self.runs[self.index + 1 :])
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        acc = logs.get("val_accuracy")
        line = (
            f"[run {self.index + 1}/{len(self.runs)}] {label} | epoch {epoch + 1}/{epochs}"
            + (f" | val acc {acc:.4f}" if acc is not None else "")
            + f" | elapsed {duration(time.monotonic() - self.start)}"
            + f" | ETA {duration(remaining * mean)}"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            if remaining == 0:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message):
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(message + "\n")
        self.stream.flush()


def estimate_seconds(remaining, finished):
    """Seconds that the runs still to do should take, judged from the runs finished so far.

    Runs of different experiments differ in cost by orders of magnitude, so a run is
    expected to take the mean of its own experiment's finished runs where there are any,
    else the mean of all finished runs.

    Args:
        remaining: ``{experiment: number of runs still to do}``.
        finished: ``{experiment: [seconds of each run finished]}``.

    Returns:
        The estimate in seconds, or None before any run has finished.
    """
    every = [s for seconds in finished.values() for s in seconds]
    if not every:
        return None
    overall = sum(every) / len(every)
    total = 0.0
    for name, count in remaining.items():
        if count < 0:
            raise ValueError(f"remaining runs of {name!r} must be >= 0, got {count}")
        seconds = finished.get(name)
        total += count * (sum(seconds) / len(seconds) if seconds else overall)
    return total


def run_name(config) -> str:
    """A run's name, unique within a reproduction: ``<experiment>/<its result file's stem>``."""
    from bncourse.results import result_path

    return f"{config['experiment']}/{result_path('.', config).stem}"


class ReproductionProgress(_Bar):
    """One progress bar for a whole reproduction: runs done / total, elapsed, ETA.

    ``[14/40]  35.0%  elapsed 1:02  ETA 3:10  input-scaling/raw-seed0-quick-... (1s)``,
    redrawn in place on a terminal, a line per finished run elsewhere (the drawing is the
    class grader's, :class:`bncourse.grading.classrun.Progress`). Runs already saved count
    as done. The ETA is :func:`estimate_seconds` of the runs still to do, from the runs
    finished in this invocation, divided by the number of runs going on at once.

    Args:
        todo: the configurations still to run.
        already_done: how many runs of the reproduction were saved before.
        parallel: how many runs go on at once (a cluster's worker threads).
        stream: where to draw (default stderr).
        clock: seconds from a monotonic clock (tests pass a fake one).
    """

    def __init__(self, todo, *, already_done=0, parallel=1, stream=None, clock=time.monotonic):
        super().__init__(already_done + len(todo), stream or sys.stderr)
        self.done = already_done
        self.clock = clock
        self.started = clock()
        self.parallel = parallel
        self.remaining = Counter(config["experiment"] for config in todo)
        self.seconds = defaultdict(list)
        self.failed = 0

    def eta(self):
        """Seconds until every run is done, or None while nothing has finished."""
        left = sum(self.remaining.values())
        if left == 0:
            return 0.0
        estimate = estimate_seconds(self.remaining, self.seconds)
        return None if estimate is None else estimate / max(1, min(self.parallel, left))

    def line(self) -> str:
        eta = self.eta()
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = len(str(self.total))
        return (
            f"[{self.done:{width}d}/{self.total}] {pct:5.1f}%  elapsed "
            f"{self._clock(self.clock() - self.started)}  ETA "
            f"{'?' if eta is None else self._clock(eta)}"
            + (f"  {self.failed} failed" if self.failed else "")
        )

    def finished(self, config, seconds, note="") -> None:
        """A run finished in ``seconds``: count it and draw the bar."""
        self.remaining[config["experiment"]] -= 1
        self.seconds[config["experiment"]].append(seconds)
        self.step(f"{run_name(config)} ({duration(seconds)})" + (f" {note}" if note else ""))

    def failure(self, config, message) -> None:
        """A run failed: say which and why on a line of its own; it is not counted as done."""
        with self.lock:
            self.remaining[config["experiment"]] -= 1
            self.failed += 1
            text = f"failed: {run_name(config)}: {message}\n"
            if self.tty:  # above the bar, which is drawn again under it
                text = f"\r\x1b[2K{text}\r{self.line().ljust(100)}"
            self.stream.write(text)
            self.stream.flush()

    def show(self, note) -> None:
        """On a terminal, redraw the bar with ``note`` (the run going on); elsewhere nothing."""
        if self.tty:
            with self.lock:
                self.stream.write("\r" + f"{self.line()}  {note}".ljust(100))
                self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal (the last step ends it unless a run failed)."""
        if self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- running


def run_one(config, *, on_epoch=None, command=None, arrays_cache=None) -> dict:
    """Train one configuration and return its record, with provenance (not saved).

    ``arrays_cache``: a dict in which a tutorial protocol's prepared data is kept between
    runs of the same data (one dataset at a time).
    """
    from bncourse.results import make_record

    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    e = experiment(config["experiment"])
    # A tutorial protocol's runs share their prepared data (protocol_experiment's train).
    shared = {} if e.protocol is None else {"arrays_cache": arrays_cache}
    outcome = e.train(config, on_epoch=on_epoch, **shared)
    return make_record(config, outcome, command=command, started=started)


def saved_and_todo(configs, out_dir, *, rerun=False, stream=None):
    """Split ``configs`` into the records already saved (and sound) under ``out_dir`` and
    the configurations still to run; say so on ``stream``.

    A file with problems (unreadable, stale, edited by hand) is run again, with a note.
    A ``.json.part`` left by a killed process is not a result: it is overwritten.
    """
    from bncourse.results import check_result, result_path

    stream = stream or sys.stderr
    records, todo = [], []
    for config in configs:
        path = result_path(out_dir, config)
        if path.exists() and not rerun:
            check = check_result(path)
            if check.ok:
                records.append(check.record)
                continue
            stream.write(f"{path}: {'; '.join(check.problems)}; running it again\n")
        todo.append(config)
    if len(records):
        stream.write(
            f"{len(records)} run(s) already saved in {out_dir}, skipped "
            "(use --rerun to run them again)\n"
        )
    return records, todo


def run_configs(configs, out_dir, *, rerun=False, command=None, stream=None):
    """Train every configuration that has no saved result yet; return all their records."""
    from bncourse.results import save_record

    stream = stream or sys.stderr
    records, todo = saved_and_todo(configs, out_dir, rerun=rerun, stream=stream)
    progress = Progress(
        [
            (
                f"{c['experiment']} {'bn=' + c['bn'] if 'bn' in c else c['variant']} seed={c['seed']}",
                c.get("epochs", 1),
            )
            for c in todo
        ],
        stream,
    )
    arrays_cache = {}
    for i, config in enumerate(todo):
        progress.begin(i)
        record = run_one(
            config, on_epoch=progress.epoch, command=command, arrays_cache=arrays_cache
        )
        path = save_record(record, out_dir)
        accuracy = record.get("test", {}).get("accuracy")
        progress.note(
            f"saved {path}" + (f" (test accuracy {accuracy:.4f})" if accuracy is not None else "")
        )
        records.append(record)
    return records


class SchedulerError(RuntimeError):
    """The dask scheduler cannot be reached, or dask.distributed is not installed."""


def reproduce_configs(
    configs,
    out_dir,
    *,
    rerun=False,
    command=None,
    scheduler=None,
    stream=None,
    clock=time.monotonic,
):
    """Run every configuration without a saved result, under one progress bar, and save
    each result at once (atomically, by this process only).

    Args:
        configs: every run of the reproduction, in order.
        out_dir: the results directory.
        scheduler: a ``dask.distributed`` scheduler's address (``tcp://HOST:PORT``): each run
            is then one task on the cluster; None trains here, one run after another.

    Returns:
        ``(records, failures)``: the records of every saved run, old and new, and
        ``(run name, message)`` for each run that failed on the cluster (the others go on).
    """
    stream = stream or sys.stderr
    records, todo = saved_and_todo(configs, out_dir, rerun=rerun, stream=stream)
    progress = ReproductionProgress(todo, already_done=len(records), stream=stream, clock=clock)
    if todo:
        stream.write(
            f"{len(todo)} run(s) to do, each saved in {out_dir} when it finishes"
            + (f", on the dask cluster at {scheduler}" if scheduler else "")
            + "\n"
        )
    try:
        if scheduler is None:
            records += _run_here(todo, out_dir, progress, command)
            failures = []
        else:
            new, failures = _run_on_cluster(todo, out_dir, scheduler, progress, command)
            records += new
    finally:
        progress.close()
    return records, failures


def _accuracy_note(record) -> str:
    accuracy = record.get("test", {}).get("accuracy")
    return "" if accuracy is None else f"test accuracy {accuracy:.4f}"


def _run_here(todo, out_dir, progress, command) -> list:
    """Train ``todo`` in this process, one run after another."""
    from bncourse.results import save_record

    records, arrays_cache = [], {}
    for config in todo:
        name, epochs = run_name(config), config.get("epochs")

        def on_epoch(epoch, logs, seconds, name=name, epochs=epochs):
            progress.show(f"{name} epoch {epoch + 1}" + (f"/{epochs}" if epochs else ""))

        progress.show(name)
        started = progress.clock()
        record = run_one(config, on_epoch=on_epoch, command=command, arrays_cache=arrays_cache)
        save_record(record, out_dir)
        progress.finished(config, progress.clock() - started, _accuracy_note(record))
        records.append(record)
    return records


_WORKER = threading.local()  # a dask worker thread's prepared data, kept between its runs


def _run_on_worker(config, command):
    """One run, on a dask worker: its record (the client saves it) and its seconds."""
    if not hasattr(_WORKER, "arrays"):
        _WORKER.arrays = {}
    started = time.perf_counter()
    record = run_one(config, command=command, arrays_cache=_WORKER.arrays)
    return record, time.perf_counter() - started


def _connect(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError(
            "--scheduler needs dask.distributed: install the package's "
            "'cluster' extra (pip install 'bncourse[cluster]')"
        ) from None
    try:
        return Client(scheduler, timeout=30)
    except (OSError, TimeoutError, ValueError) as e:
        raise SchedulerError(f"cannot reach the dask scheduler at {scheduler!r}: {e}") from None


def _task_error(future) -> str:
    """Why a task did not finish, in one line (a worker that died: KilledWorker)."""
    if future.status != "error":
        return f"the task was {future.status}"
    error = future.exception()
    return f"{type(error).__name__}: {error}"


def _run_on_cluster(todo, out_dir, scheduler, progress, command):
    """Run ``todo`` as tasks on the dask cluster at ``scheduler``; save each record here as
    it comes back. A failed run is reported and the others go on."""
    from distributed import as_completed

    from bncourse.results import save_record

    records, failures = [], []
    if not todo:
        return records, failures
    with _connect(scheduler) as client:
        # the ETA counts the worker threads there are now; more may join later
        progress.parallel = max(1, sum(client.nthreads().values()))
        futures = {
            client.submit(
                _run_on_worker,
                config,
                command,
                pure=False,
                key=f"run-{run_name(config)}-{uuid.uuid4().hex[:8]}",
            ): config
            for config in todo
        }
        for future in as_completed(futures):
            config = futures.pop(future)
            if future.status != "finished":
                message = _task_error(future)
                progress.failure(config, message)
                failures.append((run_name(config), message))
                continue
            record, seconds = future.result()
            save_record(record, out_dir)
            progress.finished(config, seconds, _accuracy_note(record))
            records.append(record)
    return records, failures
