"""nbgrader plug-ins: run the notebook in its sandbox, judge every test cell outside it.

``assignments/nbgrader_config.py`` puts these in nbgrader's autograde pipeline:

- :class:`MeasuredExecute` is nbgrader's ``Execute`` with the kernel in the submission's
  OS sandbox (:mod:`bncourse.grading.isolation`), its time, CPU and peak memory measured
  from outside, and what its checks produced read back as plain arrays;
- :class:`JudgeChecks` judges those arrays and a verification re-run's
  (:func:`bncourse.grading.verify.verify`) in the grader's process, writes the verdicts
  into the test cells, and writes what it found to
  ``verification/<student>/<assignment>/<notebook>.json`` for the class report
  (:mod:`bncourse.grading.report`);
- :class:`RestoreTestCells` restores the hidden tests of the submitted test cells without
  nbgrader's warning for every one of them;
- :class:`HideHiddenTests` takes the hidden tests' code out of the feedback again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Unicode

from .isolation import Sandbox, UsageMeter, check_available, claim_slot
from .kernel import SandboxedKernelManager
from .records import next_record, read_records
from .student.messages import fit
from .registry import PROBLEM_SETS, cell_timeout, checks_of
from .verify import checks_in_cell, is_demo_cell, is_test_cell, judge, verify

TIMEOUT_ENAMES = frozenset({"CellTimeoutError", "TimeoutError"})


_PROCESS: dict = {}


def sandbox_slot() -> int:
    """This grader process's sandbox slot: ``$BNCOURSE_SANDBOX_PROCESS`` when the class runner
    handed one out, else one claimed for this process (:func:`~.isolation.claim_slot`)."""
    value = os.environ.get("BNCOURSE_SANDBOX_PROCESS")
    if value is None:
        if "slot" not in _PROCESS:
            _PROCESS["slot"] = claim_slot()
        return _PROCESS["slot"]
    if not value.isdigit() or int(value) > 999:
        raise ValueError(f"BNCOURSE_SANDBOX_PROCESS must be a whole number 0-999, got {value!r}")
    return int(value)


def sandbox_wanted() -> bool:
    """False only when the grading run was started with ``--no-sandbox``."""
    return os.environ.get("BNCOURSE_NO_SANDBOX") != "1"


class MeasuredExecute(Execute):
    """nbgrader's Execute, in the submission's sandbox, measured from outside.

    The kernel runs in a :class:`~bncourse.grading.isolation.Sandbox` (unless the run was
    started with ``--no-sandbox``); a watchdog kills the whole sandbox when the notebook
    as a whole runs past its wall-clock limit (one cell limit per code cell, plus a
    minute), whatever the code inside does. What the kernel's checks produced is read
    back from the sandbox as plain arrays (:func:`~.records.read_records`) before its
    scratch directory is thrown away.
    """

    sandbox = Bool(True, help="Run the kernel in the OS sandbox.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        resources = resources if resources is not None else {}
        info = resources.setdefault("bncourse", {})
        ps = PROBLEM_SETS.get(resources.get("nbgrader", {}).get("assignment"))
        if ps is not None:
            self.timeout = int(round(cell_timeout(ps)))
        started = time.perf_counter()
        self._sandbox = None
        if ps is None or not (self.sandbox and sandbox_wanted()):
            info["sandbox"] = False
            try:
                return super().preprocess(nb, resources, km=km)
            finally:
                info["kernel_seconds"] = round(time.perf_counter() - started, 3)
        if "checked" not in _PROCESS:  # once per grader process: refuse, saying how to fix it
            check_available()
            _PROCESS["checked"] = True
        n_code = sum(1 for c in nb.cells if c.cell_type == "code")
        wall = (n_code + 2) * (self.timeout or 60) + 60
        workdir = resources.get("metadata", {}).get("path") or "."
        with (
            Sandbox(ps, slot=sandbox_slot(), workdir=Path(workdir)) as box,
            UsageMeter(box.uid) as meter,
        ):
            self._sandbox = box
            killed = threading.Event()

            def kill():
                killed.set()
                box.kill_all()

            watchdog = threading.Timer(wall, kill)
            watchdog.daemon = True
            watchdog.start()
            try:
                return super().preprocess(nb, resources, km=km)
            finally:
                watchdog.cancel()
                info.update(
                    sandbox=True,
                    kernel_records=read_records(box.results),
                    kernel_killed_after=wall if killed.is_set() else None,
                )
                meter.sample()
                box.kill_all()
                info.update(
                    kernel_seconds=round(time.perf_counter() - started, 3),
                    kernel_peak_mb=round(meter.peak_mb, 1),
                    kernel_cpu_seconds=meter.cpu_seconds,
                )

    def create_kernel_manager(self):
        if self._sandbox is None:
            return super().create_kernel_manager()
        self.km = SandboxedKernelManager(sandbox=self._sandbox, config=self.config)
        return self.km


def _has_error(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _timed_out(cell) -> bool:
    return any(
        o.get("output_type") == "error" and o.get("ename") in TIMEOUT_ENAMES
        for o in cell.get("outputs", [])
    )


def _stream(text: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=text)


def _failure(ename: str, message: str) -> NotebookNode:
    """An error output that shows ``message`` (at most two short lines) as its traceback."""
    lines = message.splitlines()[:2] or [message]
    return NotebookNode(output_type="error", ename=ename, evalue=lines[0], traceback=lines)


class JudgeChecks(NbGraderPreprocessor):
    """Decide every test cell outside the sandbox, from what the sandboxes handed back.

    For each test cell, its checks are judged twice, here: on the outputs the notebook's own
    kernel saved when the cell ran (:class:`MeasuredExecute` read them back), and on those of
    the verification re-run (:func:`~.verify.verify`). The cell passes when both pass; its
    outputs then say ``ok: ...`` for each check. Otherwise the judge's message is added as
    the cell's error, and the cell scores 0. A cell that raised no error in the notebook
    but whose checks saved nothing (``check`` was replaced) or failed only in the re-run is
    flagged as tampered.
    """

    output_root = Unicode(
        "verification", help="Folder (relative to the course root) for the reports."
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources):
        info = resources["nbgrader"]
        ps = PROBLEM_SETS.get(info["assignment"])
        if ps is None:
            self.log.warning("no bncourse checks for assignment %s", info["assignment"])
            return nb, resources
        measured = resources.get("bncourse", {})
        all_checks = checks_of(ps)
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        sources = [c.source for c in code_cells if not (is_test_cell(c) or is_demo_cell(c))]
        tests = [(c, checks_in_cell(c.source)) for c in code_cells if is_test_cell(c)]
        checks = [pair for _, pairs in tests for pair in pairs]
        groups = [i for i, (_, pairs) in enumerate(tests) for _ in pairs]
        cwd = resources.get("metadata", {}).get("path") or "."
        result = verify(
            ps,
            sources,
            checks,
            cwd=cwd,
            groups=groups,
            slot=sandbox_slot(),
            sandbox=bool(measured.get("sandbox")),
        )
        records = measured.get("kernel_records")
        used: set = set()
        tampered, failed_here, failed = [], [], []
        messages: dict = {}
        for cell, pairs in tests:
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            errored = _has_error(cell)
            lines, kernel_problems, kernel_full, missing = [], [], [], False
            hidden_passed = 0
            for cid, _ in pairs:
                if records is None:  # --no-sandbox: the kernel judged the checks itself
                    continue
                record = next_record(records, cid, used)
                if record is None:
                    missing = True
                    continue
                ok, message, public = judge(all_checks[cid], record["outputs"])
                if ok and all_checks[cid].hidden:
                    hidden_passed += 1
                elif ok:
                    lines.append(f"ok: {all_checks[cid].description}")
                if ok and message != "ok" and fit(message) not in lines:
                    lines.append(fit(message))  # passed on the student's own wrong code
                elif not ok:
                    kernel_problems.append(public)
                    kernel_full.append(message)
            if hidden_passed:
                lines.append(f"ok: {hidden_passed} hidden check{'s' * (hidden_passed > 1)} passed")
            rerun = [
                result["checks"][cid] for cid, _ in pairs if not result["checks"][cid]["passed"]
            ]
            if errored:
                failed.append(grade_id)
                continue
            if kernel_problems:
                failed.append(grade_id)
                messages[grade_id] = "\n".join(kernel_full)[:2000]
                cell.outputs.append(_failure("AssertionError", kernel_problems[0]))
                continue
            if lines:
                cell.outputs.append(_stream("\n".join(lines) + "\n"))
            if missing or rerun:
                failed.append(grade_id)
                messages[grade_id] = "\n".join(r["message"] for r in rerun)[:2000]
                failed_here.append(grade_id)
                tampered.append(grade_id)
                why = (
                    "its checks saved nothing (check replaced?)"
                    if missing
                    else "fails when your code runs again alone"
                )
                first = rerun[0]["public"].splitlines()[0] if rerun else None
                cell.outputs.append(
                    _failure(
                        "VerificationError",
                        f"VerificationError: passed here, but {why}"
                        + (f"\n{first}" if first else ""),
                    )
                )
        cell_errors = [
            {
                "cell": c.metadata.get("nbgrader", {}).get("grade_id", f"cell {i + 1}"),
                "ename": str(o.get("ename", ""))[:100],
                "evalue": str(o.get("evalue", ""))[:300],
            }
            for i, c in enumerate(code_cells)
            if not is_test_cell(c)
            for o in c.get("outputs", [])[:1000]
            if o.get("output_type") == "error"
        ]
        report = {
            "student": info["student"],
            "assignment": info["assignment"],
            "notebook": info["notebook"],
            "kernel_timed_out": [
                c.metadata.get("nbgrader", {}).get("grade_id", i)
                for i, c in enumerate(code_cells)
                if _timed_out(c)
            ],
            "tampered": tampered,
            "failed": failed,
            "cell_errors": cell_errors,
            "failed_messages": messages,
            "failed_in_verification": failed_here,
            "verification": result,
            **{k: v for k, v in measured.items() if k != "kernel_records"},
        }
        path = Path(
            self.output_root, info["student"], info["assignment"], info["notebook"] + ".json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        return nb, resources


def released_source(source: str) -> str:
    """A test cell's source as students receive it: the hidden tests taken out, as
    ``nbgrader generate_assignment`` does."""
    cell = NotebookNode(cell_type="code", source=source, metadata={})
    ClearHiddenTests()._remove_hidden_test_region(cell)
    return cell.source


class RestoreTestCells(OverwriteCells):
    """nbgrader's OverwriteCells, quiet where nothing is wrong.

    Every test cell with hidden tests reaches the grader without them, so its checksum
    never matches the instructor's and nbgrader logs "Attribute 'checksum' for cell ... has
    changed!" for each (nbgrader issue 1961), which reads like tampering. This version
    restores such cells as before but logs that only for a cell the student really edited:
    one whose source is neither the instructor's nor the released one.
    """

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and self._untouched:
            self.log.debug("restored the hidden tests of cell %s", name)
            return
        if attr == "checksum":
            self.log.warning(
                "test cell %s was edited in the submission; it is graded as "
                "released, with the original source",
                name,
            )
            return
        super().report_change(name, attr, old, new)

    def preprocess_cell(self, cell, resources, cell_index):
        self._untouched = False
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and cell.metadata.get("nbgrader", {}).get("locked"):
            try:
                source = self.gradebook.find_source_cell(
                    grade_id, self.notebook_id, self.assignment_id
                ).source
            except MissingEntry:
                source = None
            self._untouched = source is not None and cell.source in (
                source,
                released_source(source),
            )
        return super().preprocess_cell(cell, resources, cell_index)


_HIDDEN_NOTE = "# hidden checks ran here when your notebook was graded; results below"


class HideHiddenTests(NbGraderPreprocessor):
    """For the feedback: the hidden tests' code taken out of every test cell again.

    The autograded notebook holds the instructor's test cells, hidden tests included;
    feedback is made from it. Here their code becomes one comment line, so that a student's
    feedback shows what each hidden check found (its outputs) but not what it ran.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and "BEGIN HIDDEN TESTS" in cell.source:
            released = released_source(cell.source)
            cell.source = released.rstrip("\n") + "\n" + _HIDDEN_NOTE
            # a traceback through a test cell quotes its source (an error in the call's
            # argument, a time-out's preview of the cell): keep the error's first line only
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and len(output.get("traceback", [])) > 2:
                    first = str(output.get("evalue", "")).splitlines()[:1] or [""]
                    output["evalue"] = first[0]
                    output["traceback"] = [fit(f"{output.get('ename', 'Error')}: {first[0]}")]
        return cell, resources
