"""nbgrader plug-ins: measure the grading kernel, verify each graded cell out of reach.

``assignments/nbgrader_config.py`` puts these in nbgrader's autograde pipeline:

- :class:`MeasuredExecute` is nbgrader's ``Execute`` that also records the kernel's peak
  resident memory (``VmHWM``) and the time the notebook took;
- :class:`VerifyChecks` runs the submission again in a sealed process
  (:func:`bncourse.grading.sandbox.verify`), fails any test cell that passed in the kernel
  but whose checks fail there, and writes what it found to
  ``verification/<student>/<assignment>/<notebook>.json`` for the class report
  (:mod:`bncourse.grading.report`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Unicode

from .registry import PROBLEM_SETS, cell_timeout
from .sandbox import checks_in_cell, is_demo_cell, is_test_cell, verify

TIMEOUT_ENAMES = frozenset({"CellTimeoutError", "TimeoutError"})


def _peak_memory_mb(pid) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MeasuredExecute(Execute):
    """nbgrader's Execute, recording the kernel's peak memory and the notebook's time."""

    def preprocess(self, nb, resources=None, km=None):
        self._peak_mb = 0.0
        ps = PROBLEM_SETS.get((resources or {}).get("nbgrader", {}).get("assignment"))
        if ps is not None:
            self.timeout = int(round(cell_timeout(ps)))
        started = time.perf_counter()
        try:
            return super().preprocess(nb, resources, km=km)
        finally:
            if resources is not None:
                resources.setdefault("bncourse", {}).update(
                    kernel_seconds=round(time.perf_counter() - started, 3),
                    kernel_peak_mb=round(self._peak_mb, 1),
                )

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        provisioner = getattr(self.km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if pid is not None:
            mb = _peak_memory_mb(pid)
            if mb is not None:
                self._peak_mb = max(self._peak_mb, mb)


def _has_error(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _timed_out(cell) -> bool:
    return any(o.get("output_type") == "error" and o.get("ename") in TIMEOUT_ENAMES
               for o in cell.get("outputs", []))


class VerifyChecks(NbGraderPreprocessor):
    """Re-run the graded checks in a sealed process; fail cells the kernel passed wrongly."""

    output_root = Unicode(
        "verification", help="Folder (relative to the course root) for the reports."
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources):
        info = resources["nbgrader"]
        ps = PROBLEM_SETS.get(info["assignment"])
        if ps is None:
            self.log.warning("no bncourse checks for assignment %s", info["assignment"])
            return nb, resources
        code_cells = [c for c in nb.cells if c.cell_type == "code"]
        sources = [c.source for c in code_cells if not (is_test_cell(c) or is_demo_cell(c))]
        tests = [(c, checks_in_cell(c.source)) for c in code_cells if is_test_cell(c)]
        checks = [pair for _, pairs in tests for pair in pairs]
        groups = [i for i, (_, pairs) in enumerate(tests) for _ in pairs]
        cwd = resources.get("metadata", {}).get("path") or "."
        result = verify(ps, sources, checks, cwd=cwd, groups=groups)
        tampered, failed_here = [], []
        for cell, pairs in tests:
            grade_id = cell.metadata["nbgrader"]["grade_id"]
            problems = [f"{cid}: {result['checks'][cid]['message']}"
                        for cid, _ in pairs if not result["checks"][cid]["passed"]]
            if not problems:
                continue
            failed_here.append(grade_id)
            if not _has_error(cell):
                tampered.append(grade_id)
                cell.outputs.append(NotebookNode(
                    output_type="error",
                    ename="VerificationError",
                    evalue="this cell passed in your notebook, but its checks fail when "
                           "your code is run on its own",
                    traceback=[
                        "VerificationError: this cell passed in your notebook, but the same "
                        "checks failed when your code was run again in a separate, clean "
                        "process. Something in the notebook changed how the checks behave.",
                        *problems,
                    ],
                ))
        report = {
            "student": info["student"],
            "assignment": info["assignment"],
            "notebook": info["notebook"],
            "kernel_timed_out": [c.metadata.get("nbgrader", {}).get("grade_id", i)
                                 for i, c in enumerate(code_cells) if _timed_out(c)],
            "tampered": tampered,
            "failed_in_verification": failed_here,
            "verification": result,
            **resources.get("bncourse", {}),
        }
        path = Path(self.output_root, info["student"], info["assignment"],
                    info["notebook"] + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        return nb, resources
