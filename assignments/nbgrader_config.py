"""nbgrader's configuration for the course; nbgrader reads it from the current directory.

Run every nbgrader command from this folder, with the virtual environment's ``bin`` on
``PATH`` (nbgrader runs ``alembic`` by name): ``make assignments`` and ``make autograde`` at
the repository root do both.
"""

import os

from bncourse.grading.autograde import (
    HideHiddenTests,
    JudgeChecks,
    MeasuredExecute,
    RestoreTestCells,
)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteKernelspec,
    SaveAutoGrades,
)

# TensorFlow's C++ start-up messages go to stderr, and any stderr output in a test cell
# scores 0; the grading kernels inherit this setting.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Where nbgrader runs from this folder (the instructor validating the source notebooks, or
# grading with --no-sandbox), hidden checks run in the notebook's own kernel; in a student's
# copy, which has no such file, they refuse to.
os.environ.setdefault("BNCOURSE_HIDDEN_CHECKS", "1")

c = get_config()  # noqa: F821 (provided by nbgrader when it reads this file)

c.CourseDirectory.course_id = "bncourse"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.IncludeHeaderFooter.header = "source/header.ipynb"

# Restore test cells that a student deleted (graded as the original, not "needs manual grade").
c.OverwriteCells.add_missing_cells = True

# The hidden tests come back into the submitted test cells without a warning for each
# (nbgrader logs one only for a test cell the student edited).
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreTestCells,
    CheckCellMetadata,
]
# The kernel runs in the submission's sandbox; then every test cell is judged outside it,
# from what the kernel and a verification re-run (in a fresh sandbox) handed back.
c.Autograde.autograde_preprocessors = [
    MeasuredExecute,
    IgnorePattern,
    JudgeChecks,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Only messages named here are removed from stderr: absl's notice printed before logging is
# configured (TensorFlow), which is not the student's doing.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\n"
)
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

# Feedback shows what every check found, but not the hidden tests' code.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
