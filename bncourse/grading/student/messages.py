"""What a student reads when a check fails: two lines at most, each short enough to survive.

A failed check says what is wrong and where on its first line and gives the hint, when the
judge recognised the mistake, on its second. Each line fits in :data:`WIDTH` characters,
so that ``nbgrader validate`` (which cuts its lines at 87 characters, indent included)
shows it whole. The grader's own frames are never shown: IPython asks an exception for its
``_render_traceback_`` before it formats one, and a :class:`CheckFailed` answers with its
two lines. When the student's own code raised inside a check, :func:`student_traceback`
keeps the student's frames and drops the grader's.

This module runs on both sides: in the student's kernel (at home, and in the grading
sandbox) and in the grader's process, where the judges raise :class:`CheckFailed`.
"""

from __future__ import annotations

import traceback
from pathlib import Path

WIDTH = 80
_PACKAGE = str(Path(__file__).resolve().parents[2])  # .../bncourse


def fit(line: str, width: int = WIDTH) -> str:
    """``line`` shortened to ``width`` characters: clauses after the last ``"; "`` or
    parenthesis that fit are kept, the rest cut with an ellipsis."""
    line = " ".join(line.split())
    if len(line) <= width:
        return line
    for sep in ("; ", " ("):
        head = line[: width + 1]
        cut = head.rfind(sep)
        if cut > width // 2:
            return line[:cut]
    return line[: width - 1].rstrip() + "…"


class CheckFailed(AssertionError):
    """A failed check, as the student reads it.

    Args:
        what: the problem and the value it is in, without numbers ("var: wrong values");
            shown for hidden checks too.
        detail: where and by how much (", off by 0.18 at 3"): a string, or a tuple of
            strings in order of importance, appended to ``what`` as far as they fit; for
            visible checks only, since it describes the inputs.
        hint: the likely mistake, without the leading ``"hint: "``, or None.
    """

    def __init__(self, what: str, detail=(), hint: str | None = None):
        self.what, self.hint = what, hint
        self.detail = (detail,) if isinstance(detail, str) else tuple(detail)
        super().__init__("\n".join(self.lines()))

    def lines(self, hidden: bool = False) -> list[str]:
        """The one or two lines to show; ``hidden`` leaves the detail out."""
        if hidden:
            first = f"{self.what} (in a hidden check)"
        else:
            first = self.what
            for part in self.detail:
                if len(first) + len(part) <= WIDTH:
                    first += part
        out = [fit(first)]
        if self.hint:
            out.append(fit(f"hint: {self.hint}"))
        return out

    def _render_traceback_(self) -> list[str]:
        return self.lines()


def as_failure(err: BaseException) -> CheckFailed:
    """Any ``AssertionError`` as a :class:`CheckFailed`: its first line says what is wrong,
    its first ``hint:`` line gives the hint."""
    if isinstance(err, CheckFailed):
        return err
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return CheckFailed("the check failed without a message")
    hints = [line[len("hint:") :].strip() for line in lines if line.startswith("hint:")]
    what = next((line for line in lines if not line.startswith("hint:")), lines[0])
    return CheckFailed(what, hint=hints[0] if hints else None)


def depends_on(name: str, wrong: str) -> CheckFailed:
    """The failure of a part that uses the student's wrong earlier code ``wrong`` (names
    joined by "and"): it cannot be told right or wrong until that is fixed."""
    verb, pronoun = ("are", "them") if " and " in wrong else ("is", "it")
    return CheckFailed(
        f"{name} uses your {wrong}, which {verb} wrong: fix {pronoun} first",
        hint=f"the test cell of {wrong} says what is wrong",
    )


def student_frames(err: BaseException) -> list:
    """The frames of ``err``'s traceback that are not the grader's (not in ``bncourse``)."""
    return [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if not str(Path(f.filename).resolve()).startswith(_PACKAGE + "/")
    ]


def student_traceback(err: BaseException, limit: int = 6) -> list[str]:
    """The traceback of ``err`` with the grader's frames left out: the student's own frames
    (at most ``limit``, the innermost) and the exception's last line."""
    frames = student_frames(err)
    lines = [line.rstrip("\n") for line in traceback.format_list(frames[-limit:])]
    lines += [line.rstrip("\n") for line in traceback.format_exception_only(type(err), err)]
    return [piece for line in lines for piece in line.split("\n")]


def hide_grader_frames(err: BaseException) -> BaseException:
    """``err``, made to show IPython only the student's frames (see the module doc)."""
    try:
        err._render_traceback_ = lambda: student_traceback(err)
    except (AttributeError, TypeError):  # an exception type without a __dict__
        pass
    return err
