"""Running experiments: every configuration without a saved result is trained and saved at
once, so a stopped run resumes where it stopped.

:func:`run_configs` trains in this process with a progress line and an ETA; the command
line and the book use it.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time

from bncourse.experiments import experiment

__all__ = ["Progress", "duration", "run_configs", "run_one"]


# --------------------------------------------------------------------------- progress


def duration(seconds) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


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
        remaining = epochs - (epoch + 1) + sum(e for _, e in self.runs[self.index + 1:])
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        acc = logs.get("val_accuracy")
        line = (f"[run {self.index + 1}/{len(self.runs)}] {label} | epoch {epoch + 1}/{epochs}"
                + (f" | val acc {acc:.4f}" if acc is not None else "")
                + f" | elapsed {duration(time.monotonic() - self.start)}"
                + f" | ETA {duration(remaining * mean)}")
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


# --------------------------------------------------------------------------- running


def run_one(config, *, on_epoch=None, command=None, arrays_cache=None) -> dict:
    """Train one configuration and return its record, with provenance (not saved).

    ``arrays_cache``: a dict in which a tutorial protocol's prepared data is kept between
    runs of the same data (one dataset at a time).
    """
    from bncourse.experiments import prepare_data, train_run
    from bncourse.results import make_record

    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    e = experiment(config["experiment"])
    if e.protocol is None:
        outcome = e.train(config, on_epoch=on_epoch)
    else:
        cache = {} if arrays_cache is None else arrays_cache
        key = (config["dataset"], config["model"], str(config["subset"]),
               str(config["validation"]))
        if key not in cache:
            cache.clear()  # keep one dataset in memory at a time
            cache[key] = prepare_data(config)
        outcome = train_run(config, on_epoch=on_epoch, arrays=cache[key])
    return make_record(config, outcome, command=command, started=started)


def run_configs(configs, out_dir, *, rerun=False, command=None, stream=None):
    """Train every configuration that has no saved result yet; return all their records."""
    from bncourse.results import check_result, result_path, save_record

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
        stream.write(f"{len(records)} run(s) already saved in {out_dir}, skipped "
                     "(use --rerun to run them again)\n")
    progress = Progress(
        [(f"{c['experiment']} {'bn=' + c['bn'] if 'bn' in c else c['variant']} seed={c['seed']}",
      c.get("epochs", 1)) for c in todo],
        stream,
    )
    arrays_cache = {}
    for i, config in enumerate(todo):
        progress.begin(i)
        record = run_one(config, on_epoch=progress.epoch, command=command,
                         arrays_cache=arrays_cache)
        path = save_record(record, out_dir)
        accuracy = record.get("test", {}).get("accuracy")
        progress.note(f"saved {path}" + (f" (test accuracy {accuracy:.4f})" if accuracy is not None
                                         else ""))
        records.append(record)
    return records
