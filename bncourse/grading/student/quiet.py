"""Keep TensorFlow's start-up logs off a test cell's stderr, where nbgrader counts them.

TensorFlow's C++ runtime writes to file descriptor 2 directly (``cuInit`` failing on a machine
without a GPU, absl's notice that logging is not set up yet, oneDNN's note), the first time
an operation runs. nbgrader scores any stderr output of a test cell 0, and ``validate`` calls
the cell failed, though nothing is wrong with the student's code. :func:`native_stderr`
captures that descriptor while a check runs (and while a sealed notebook starts its
framework); :func:`report` drops the runtime's own log lines and shows anything else on
stdout, so that nothing the student's code wrote is lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# glog/absl lines ("E0000 00:00:1796414159.577346 4898 cuda_platform.cc:52] ...") and the
# runtime's notices that have no such prefix
_RUNTIME_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|oneDNN custom operations are on)"
)


@contextlib.contextmanager
def native_stderr():
    """Capture file descriptor 2 in the block; yields a list that holds the text after it."""
    captured: list = []
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to capture
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def other_lines(captured: list) -> list[str]:
    """The captured lines that are not the runtime's own log lines."""
    text = "".join(captured)
    return [line for line in text.splitlines() if line.strip() and not _RUNTIME_LINE.match(line)]


def report(captured: list, print_=print, stream=None) -> None:
    """Show on stdout what the block wrote to descriptor 2, less the runtime's log lines."""
    for line in other_lines(captured):
        print_(line, file=stream if stream is not None else sys.stdout)


def start_framework() -> None:
    """Run one Keras operation, so that the backend's runtime starts (and logs) now."""
    if "keras" not in sys.modules:
        return
    ops = sys.modules["keras"].ops
    ops.convert_to_numpy(ops.add(ops.ones((1,)), 1.0))
