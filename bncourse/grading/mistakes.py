"""What a student sees for the common mistakes, and what each costs: ``python -m
bncourse.grading.mistakes``.

Five mistakes that students make when they first write BN, each one edit of the reference
solution:

- ``unbiased_variance``: ``batch_mean_var`` divides by N - 1;
- ``epsilon_outside``: ``batchnorm_forward`` adds epsilon to the standard deviation;
- ``wrong_axis``: ``batch_mean_var`` takes the statistics per sample (axis 1);
- ``momentum_reversed``: ``update_moving_stats`` uses PyTorch's convention;
- ``inference_updates``: ps3's layer updates its moving statistics at inference too.

For each, the measurement runs the notebook as a student does at home (every cell, in a
kernel of this Python, from a folder that holds only the notebook) and counts the lines of
the errors shown under the test cells, runs ``nbgrader validate`` there and checks whether
the hint survives its line cut, and autogrades the submission through nbgrader to find the
points it loses and the parts that fail. Nothing here asserts; the numbers are for reading
(the tests assert the behaviour).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .course import BIN, Course, graded_points, index_of, solved


@dataclass(frozen=True)
class Mistake:
    """One wrong solution cell: ``cell``'s source replaced by ``source`` in ``assignment``."""

    name: str
    assignment: str
    cell: str
    source: str
    part: str  # the test cell whose points the mistake costs
    # other parts it costs: later parts that cannot run at all with it (they say which
    # function to fix first; there is no output to judge), or a requirement of another part
    # that the same line of code breaks
    blocks: tuple = ()


_PS3_CALL_WRONG = """\
    def call(self, inputs, training=None):
        ndim = len(inputs.shape)
        broadcast = [1] * ndim
        broadcast[self.axis % ndim] = -1
        mean, var = moments(inputs, self.axis)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
        self.moving_variance.assign(self.moving_variance * m + var * (1 - m))
        if not (training and self.trainable):
            mean, var = self.moving_mean, self.moving_variance
        mean = ops.reshape(mean, broadcast)
        var = ops.reshape(var, broadcast)
        out = (inputs - mean) / ops.sqrt(var + self.epsilon)
        if self.scale:
            out = out * ops.reshape(self.gamma, broadcast)
        if self.center:
            out = out + ops.reshape(self.beta, broadcast)
        return out
"""

MISTAKES = (
    Mistake(
        "unbiased_variance",
        "ps1-forward",
        "batch_mean_var",
        "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n",
        "test_batch_mean_var",
    ),
    Mistake(
        "epsilon_outside",
        "ps1-forward",
        "batchnorm_forward",
        "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
        "    mean, var = batch_mean_var(x)\n"
        "    return gamma * (x - mean) / (np.sqrt(var) + epsilon) + beta\n",
        "test_batchnorm_forward",
    ),
    Mistake(
        "wrong_axis",
        "ps1-forward",
        "batch_mean_var",
        "def batch_mean_var(x):\n    return x.mean(axis=1), x.var(axis=1)\n",
        "test_batch_mean_var",
        blocks=("test_batchnorm_forward", "test_BatchNorm1d"),
    ),
    Mistake(
        "momentum_reversed",
        "ps1-forward",
        "update_moving_stats",
        "def update_moving_stats(moving_mean, moving_var, mean, var, momentum=0.99):\n"
        "    return (moving_mean * (1 - momentum) + mean * momentum,\n"
        "            moving_var * (1 - momentum) + var * momentum)\n",
        "test_update_moving_stats",
    ),
    # the same update also runs in a frozen layer, which test_trainable checks
    Mistake(
        "inference_updates",
        "ps3-keras-layer",
        "MyBatchNorm",
        "",
        "test_inference",
        blocks=("test_trainable",),
    ),
)


def mistaken(mistake: Mistake, release, source):
    """The solved release notebook with the mistake made in it."""
    nb = solved(release, source)
    cell = nb.cells[index_of(nb, mistake.cell)]
    if mistake.name == "inference_updates":
        head, sep, _ = cell.source.partition("    def call(self, inputs, training=None):\n")
        rest = cell.source.split("    def get_config(self):\n", 1)[1]
        if not sep:
            raise ValueError("the ps3 solution has no call method to make the mistake in")
        cell.source = head + _PS3_CALL_WRONG + "\n    def get_config(self):\n" + rest
    else:
        cell.source = mistake.source
    return nb


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_lines(nb) -> dict:
    """``{test cell id: lines}`` of the errors an executed notebook shows under its test
    cells (tracebacks as the student sees them, colours removed)."""
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not (meta.get("grade") and not meta.get("solution")):
            continue
        lines = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                lines += _ANSI.sub("", "\n".join(o.get("traceback", []))).splitlines()
            elif o.get("output_type") == "stream" and o.get("name") == "stderr":
                lines += o.get("text", "").splitlines()
        if lines:
            out[meta["grade_id"]] = lines
    return out


def run_at_home(path: Path, timeout: int = 300):
    """Execute the notebook at ``path`` as Restart-and-run-all does, in its folder."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, 4)
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return nb


def validate_output(path: Path) -> str:
    """What ``nbgrader validate`` prints for the notebook, run from its own folder."""
    proc = subprocess.run(
        [str(BIN / "nbgrader"), "validate", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.stdout + proc.stderr


def measure(root: Path, mistakes=MISTAKES) -> list[dict]:
    """One row per mistake: lines seen at home, the hint in ``validate``, points lost."""
    rows = []
    by_set: dict = {}
    for m in mistakes:
        by_set.setdefault(m.assignment, []).append(m)
    for assignment, group in by_set.items():
        course = Course(root / assignment)
        course.generate(assignment)
        release, source = course.release(assignment), course.source(assignment)
        for m in group:
            nb = mistaken(m, release, source)
            home = root / "home" / m.name / f"{assignment}.ipynb"
            home.parent.mkdir(parents=True)
            nbformat.write(nb, home)
            shown = error_lines(run_at_home(home))
            validated = validate_output(home)
            course.submit(m.name, assignment, nb)
            rows.append(
                {
                    "mistake": m.name,
                    "assignment": assignment,
                    "part": m.part,
                    "cells_with_errors": sorted(shown),
                    "lines": {k: len(v) for k, v in shown.items()},
                    "hint_lines": [line for v in shown.values() for line in v if "hint" in line],
                    "validate_cut_hints": [
                        line.strip()
                        for line in validated.splitlines()
                        if "hint" in line and line.endswith("...")
                    ],
                    "validate_stderr_failure": "cuInit" in validated,
                }
            )
        course.nbgrader("autograde", assignment, "--create", check=False)
        points = graded_points(source)[0]
        scores = course.scores(assignment)
        for row in rows:
            if row["assignment"] != assignment:
                continue
            got = scores.get(row["mistake"], {})
            failed = sorted(g for g, p in points.items() if got.get(g, 0) < p)
            row["failed_parts"] = failed
            row["points_lost"] = sum(points[g] - got.get(g, 0) for g in points)
            row["max_points"] = sum(points.values())
    return rows


def format_report(rows: list[dict]) -> str:
    """The rows as a table: lines seen, hints cut by ``validate``, points lost, parts."""
    lines = [f"{'mistake':<20}{'lines seen':>11}{'cut hints':>10}{'points lost':>12}  failed parts"]
    for r in rows:
        seen = sum(r["lines"].values())
        lines.append(
            f"{r['mistake']:<20}{seen:>11}{len(r['validate_cut_hints']):>10}"
            f"{r['points_lost']:>8g}/{r['max_points']:<3g}  "
            f"{', '.join(r['failed_parts'])}"
        )
    lines.append(
        "lines seen: lines of error under the test cells when the notebook is run "
        "at home; cut hints: hint lines that nbgrader validate cuts short."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.grading.mistakes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--only", default="", help="comma-separated mistakes (default: all)")
    parser.add_argument(
        "--save",
        metavar="PATH",
        help="also write the rows with their provenance as JSON to PATH "
        "(results/benchmarks/mistakes.json is the committed one)",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {m.name for m in MISTAKES})
    if unknown:
        parser.error(
            f"unknown mistake(s) {', '.join(unknown)}; known: {', '.join(m.name for m in MISTAKES)}"
        )
    chosen = [m for m in MISTAKES if not names or m.name in names]
    started_load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bncourse-mistakes-") as tmp:
        rows = measure(Path(tmp), chosen)
    print(format_report(rows))
    if args.save:
        from .bench import save

        save({"rows": rows}, args.save, started_load=started_load, benchmark="mistakes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
