"""The class report after autograding: each student's score per problem set, and why.

nbgrader's export shows 0.0 for an honest zero, a crashed notebook, an unreadable file and a
missing submission alike. This report tells them apart:

- ``missing``: no submission for this problem set;
- ``misplaced``: a file or folder under ``submitted/<student>/`` that is no problem set's
  folder (never graded);
- ``crashed``: submitted, but no autograded notebook came out (invalid JSON, a kernel that
  died, ...), with the reason when it can be found;
- ``timed out``: graded, but at least one cell ran past the time limit;
- ``tampered``: graded, and at least one test cell passed in the student's kernel but failed
  when the checks were run again out of the notebook's reach (it scores 0);
- ``graded``: none of the above (``zero`` when the score is 0).

Run from the course root (``assignments/``)::

    python -m bncourse.grading.report [--csv FILE] [ASSIGNMENT ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .experiment import MODEL_MISMATCH


@dataclass
class Row:
    """One student's result on one problem set."""

    student: str
    assignment: str
    score: float | None
    max_score: float
    status: str
    flags: list = field(default_factory=list)
    needs_manual_grade: bool = False
    kernel_seconds: float | None = None
    kernel_peak_mb: float | None = None
    cpu_seconds: float | None = None
    verify_seconds: float | None = None
    verify_peak_mb: float | None = None
    failed_parts: list = field(default_factory=list)


def _notebook_problem(path: Path) -> str | None:
    """Why a submitted notebook cannot be read, or None if it can."""
    import nbformat
    from nbformat.reader import NotJSONError

    try:
        nbformat.read(str(path), as_version=4)
    except (NotJSONError, json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"{path.name} is not valid JSON ({err.__class__.__name__})"
    except Exception as err:  # nbformat raises several kinds for a broken notebook
        return f"{path.name} is not a valid notebook ({err.__class__.__name__}: {str(err)[:200]})"
    return None


def collect(root=".", assignments=None, db_url=None) -> list[Row]:
    """Classify every (student, problem set) pair known to the gradebook of ``root`` (its
    ``gradebook.db``, or the database at ``db_url``)."""
    from nbgrader.api import Gradebook, MissingEntry

    root = Path(root)
    rows = []
    with Gradebook(db_url or f"sqlite:///{root / 'gradebook.db'}") as gb:
        names = [a.name for a in gb.assignments]
        if assignments:
            unknown = sorted(set(assignments) - set(names))
            if unknown:
                raise ValueError(
                    f"unknown assignment(s): {', '.join(unknown)}; "
                    f"the gradebook has: {', '.join(names) or 'none'}"
                )
            names = [n for n in names if n in assignments]
        students = sorted(s.id for s in gb.students)
        for name in names:
            assignment = gb.find_assignment(name)
            notebooks = [nb.name for nb in assignment.notebooks]
            for student in students:
                rows.append(
                    _row(gb, MissingEntry, root, name, notebooks, student, assignment.max_score)
                )
    return rows + misplaced(root, names)


def misplaced(root: Path, names: list) -> list[Row]:
    """A row for everything under ``submitted/<student>/`` that is not a problem set's
    folder: such files are never graded, and nobody should find that out from a zero."""
    rows = []
    submitted = Path(root) / "submitted"
    if not submitted.is_dir():
        return rows
    for student in sorted(p for p in submitted.iterdir() if p.is_dir()):
        for entry in sorted(student.iterdir()):
            if entry.is_dir() and entry.name in names:
                continue
            rows.append(
                Row(
                    student.name,
                    entry.name,
                    None,
                    0.0,
                    "misplaced",
                    [
                        f"submitted/{student.name}/{entry.name} is not a problem set's folder "
                        f"(expected submitted/{student.name}/<problem set>/<problem set>.ipynb, "
                        f"with a problem set among {', '.join(names)})"
                    ],
                )
            )
    return rows


def _row(gb, MissingEntry, root, name, notebooks, student, max_score) -> Row:
    submitted = root / "submitted" / student / name
    if not submitted.is_dir():
        return Row(student, name, None, max_score, "missing")
    try:
        submission = gb.find_submission(name, student)
    except MissingEntry:
        submission = None
    row = Row(student, name, submission.score if submission else None, max_score, "graded")
    if submission is not None:
        row.needs_manual_grade = bool(submission.needs_manual_grade)
    problems = []
    for nb in notebooks:
        autograded = root / "autograded" / student / name / f"{nb}.ipynb"
        sub_nb = submitted / f"{nb}.ipynb"
        if not sub_nb.exists():
            others = sorted(p.name for p in submitted.iterdir() if p.suffix == ".ipynb")
            problems.append(
                f"{nb}.ipynb not submitted"
                + (f" (found instead: {', '.join(others)}; rename it {nb}.ipynb)" if others else "")
            )
            continue
        if not autograded.exists():
            problems.append(
                _notebook_problem(sub_nb)
                or f"{nb}.ipynb could not be graded (the kernel died or nbgrader failed)"
            )
            continue
        report = root / "verification" / student / name / f"{nb}.json"
        if report.exists():
            data = json.loads(report.read_text())
            if data.get("kernel_timed_out"):
                row.flags.append("timed out: " + ", ".join(map(str, data["kernel_timed_out"])))
            if data.get("tampered"):
                row.flags.append("tampered: " + ", ".join(data["tampered"]))
            if data.get("kernel_killed_after"):
                row.flags.append(f"killed after {data['kernel_killed_after']:g} s")
            errors = data.get("cell_errors") or []
            if errors:
                row.flags.append(
                    "errors: "
                    + ", ".join(f"{e['cell']} ({e['ename']})" for e in errors[:5])
                    + (f" and {len(errors) - 5} more" if len(errors) > 5 else "")
                )
            if data.get("sandbox") is False:
                row.flags.append("graded without the sandbox (--no-sandbox)")
            row.failed_parts += data.get("failed", [])
            if any(MODEL_MISMATCH in m for m in (data.get("failed_messages") or {}).values()):
                row.flags.append("model does not match its reported results")
            verification = data.get("verification", {})
            row.kernel_seconds = data.get("kernel_seconds")
            row.kernel_peak_mb = data.get("kernel_peak_mb")
            row.cpu_seconds = round(
                (data.get("kernel_cpu_seconds") or 0) + (verification.get("cpu_seconds") or 0), 3
            )
            row.verify_seconds = verification.get("seconds")
            row.verify_peak_mb = verification.get("max_rss_mb")
    if problems:
        row.status = "crashed"
        row.flags = problems + row.flags
        row.score = None
        row.needs_manual_grade = False
    elif any(f.startswith("tampered") for f in row.flags):
        row.status = "tampered"
    elif any(f.startswith("timed out") for f in row.flags):
        row.status = "timed out"
    elif row.score == 0:
        row.status = "zero"
    return row


def format_report(rows: list[Row]) -> str:
    """A plain-text table, one line per student and problem set, then the counts.

    Each line gives the score, the status, the time and peak memory of grading (the
    notebook's kernel and the verification re-run together), and the failed parts and flags.
    A problem set that nobody submitted is summarised in one line instead of one per student.
    """
    submitted = {r.assignment for r in rows if r.status != "missing"}
    unsubmitted = sorted({r.assignment for r in rows} - submitted)
    lines = [
        f"{'student':<16} {'problem set':<18} {'score':>11}  {'status':<10} "
        f"{'time s':>7} {'peak MB':>8}  details"
    ]
    for r in rows:
        if r.assignment in unsubmitted:
            continue
        score = "-" if r.score is None else f"{r.score:g}/{r.max_score:g}"
        details = []
        if r.failed_parts:
            details.append("failed: " + ", ".join(r.failed_parts))
        details += r.flags
        if r.needs_manual_grade:
            details.append("needs manual grading")
        seconds = (r.kernel_seconds or 0) + (r.verify_seconds or 0)
        peak = max(r.kernel_peak_mb or 0, r.verify_peak_mb or 0)
        timing = f"{seconds:>7.1f} {peak:>8.0f}" if seconds else f"{'-':>7} {'-':>8}"
        lines.append(
            f"{r.student:<16} {r.assignment:<18} {score:>11}  {r.status:<10} "
            f"{timing}  {'; '.join(details)}"
        )
    if unsubmitted:
        lines.append(f"no submissions yet: {', '.join(unsubmitted)}")
    counts = {}
    for r in rows:
        if r.assignment not in unsubmitted:
            counts[r.status] = counts.get(r.status, 0) + 1
    lines.append("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def write_csv(rows: list[Row], path) -> None:
    """The report as CSV, one row per student and problem set."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "student",
                "assignment",
                "score",
                "max_score",
                "status",
                "flags",
                "failed_parts",
                "needs_manual_grade",
                "kernel_seconds",
                "kernel_peak_mb",
                "verify_seconds",
                "verify_peak_mb",
                "cpu_seconds",
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.student,
                    r.assignment,
                    "" if r.score is None else r.score,
                    r.max_score,
                    r.status,
                    " | ".join(r.flags),
                    " ".join(r.failed_parts),
                    r.needs_manual_grade,
                    r.kernel_seconds,
                    r.kernel_peak_mb,
                    r.verify_seconds,
                    r.verify_peak_mb,
                    r.cpu_seconds,
                ]
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.grading.report",
        description="Scores per student and problem set after `nbgrader autograde`, with "
        "crashed, timed-out, missing and tampered submissions flagged apart from honest "
        "zeros. Run it from the course root (assignments/).",
    )
    parser.add_argument("assignments", nargs="*", help="problem sets to report (default: all)")
    parser.add_argument("--csv", metavar="FILE", help="also write the report as CSV")
    parser.add_argument("--db-url", help="the gradebook's URL, if not gradebook.db here")
    args = parser.parse_args(argv)
    if args.db_url is None and not Path("gradebook.db").exists():
        print(
            "error: no gradebook.db here; run this from the course root after `nbgrader autograde`",
            file=sys.stderr,
        )
        return 2
    try:
        rows = collect(".", args.assignments, db_url=args.db_url)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(rows))
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
