"""The verification re-run, inside the sandbox: the student's cells, then each check's
``produce``, with what it computed saved for the grader to judge outside.

Run by :func:`bncourse.grading.verify.verify` as
``python -m bncourse.grading.student.rerun JOB.json`` in the submission's sandbox. The job
lists the code cells to run (no test cells, no demo cells) and the ``(check id,
expression)`` pairs of the test cells, each a *step*. Progress goes to a status file
(``start N`` / ``end N``), which the grader uses only to tell which step was running when
it had to kill the sandbox; the time limits themselves are kept by the grader, so writing
to that file changes nothing but the student's own report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    status = open(job["status"], "a", buffering=1)
    errors = open(job["errors"], "a", buffering=1)
    from . import record
    from .problem_sets import problem_set, producers_of
    from .seal import seal, set_rerun

    ps = problem_set(job["problem_set"])
    producers = producers_of(ps)
    set_rerun()
    from IPython.core.interactiveshell import InteractiveShell

    save = record.saver(Path(job["results"]))
    seal(ps)
    shell = InteractiveShell.instance()
    skip = set(job["skip"])
    step = 0
    for source in job["cells"]:
        if step not in skip:
            status.write(f"start {step}\n")
            shell.run_cell(source, store_history=False, silent=False)
            status.write(f"end {step}\n")
        step += 1
    for check_id, expr in job["checks"]:
        if step not in skip:
            status.write(f"start {step}\n")
            producer = producers[check_id]
            try:
                obj = eval(expr, shell.user_ns)  # the expression comes from a locked test cell
                outputs = producer.run(obj, producer.make_inputs(), shell.user_ns)
                save(step, check_id, outputs)
            except BaseException as err:  # a student's code may raise anything, SystemExit too
                message = f"{type(err).__name__}: {err}"[:2000]
                errors.write(json.dumps({"step": step, "message": message}) + "\n")
            status.write(f"end {step}\n")
        step += 1
    status.write("finished\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
