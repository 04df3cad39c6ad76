"""Reading back what a sandbox produced: plain arrays, read as untrusted data.

Inside the sandbox, :mod:`bncourse.grading.student.record` saves what each check's
``produce`` computed as ``NNNNNN.npz`` files (the check's id under the key ``__check__``).
Here the grader reads them without unpickling anything, skipping what is malformed, and
never more than :data:`MAX_RECORDS` files: the sandbox's code may have written anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .student.record import CHECK_KEY

MAX_RECORDS = 2000
_NAME = re.compile(r"^(\d{6})\.npz$")


def read_records(directory: Path) -> list[dict]:
    """``[{"seq": n, "check": id, "outputs": {key: array}}]``, in the order of ``seq``."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = sorted(p.name for p in directory.iterdir() if _NAME.match(p.name))
    records = []
    for name in names[:MAX_RECORDS]:
        path = directory / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as data:
                outputs = {key: data[key] for key in data.files}
        except Exception:  # whatever the sandbox wrote, a bad file is just not a record
            continue
        check = outputs.pop(CHECK_KEY, None)
        if check is None or check.shape != () or check.dtype.kind != "U":
            continue
        records.append({"seq": int(name[:6]), "check": str(check), "outputs": outputs})
    return records


def next_record(records: list[dict], check_id: str, used: set) -> dict | None:
    """The first record of ``check_id`` not yet in ``used`` (indices), marked used."""
    for i, record in enumerate(records):
        if i not in used and record["check"] == check_id:
            used.add(i)
            return record
    return None
