"""Kill rate per module of the last `make mutation` run, read from mutmut's files in mutants/.

    python .ci/mutation_report.py bncourse/numpy_bn.py ... [--survivors] [--equivalent]

A mutant counts as killed when a test failed (or it timed out: an infinite loop is caught
too). A surviving mutant is explained as equivalent when its changed line carries a
``# mutation-equivalent: why`` comment in the source (or has one in the comment lines
directly above it), or when one of the RULES below, for families of equivalent mutants,
matches it; the rate is given with and without those. ``--survivors`` prints every
unexplained survivor with the line it changed, ``--equivalent`` every explained one with its
reason.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import sys
from pathlib import Path

MUTANTS = Path("mutants")
MARK = "mutation-equivalent"
KILLED = {1, 3, 36, -24, 24, 152, 255}  # mutmut's exit codes for killed and timed out
SURVIVED, NO_TESTS = {0}, {5, 33}


def _without_copy(line: str) -> str:
    return re.sub(r",\s*(copy=\w+)?\s*\)", ")", line.split("#", 1)[0]).rstrip()


# Families of equivalent mutants that recur, some in functions that the book shows with
# literalinclude, where a comment on every line would be noise for the reader. Each rule:
# (function names it applies to, or None for all; test on the original and the mutated
# line; why no test can tell them apart).
RULES = [
    (
        None,
        lambda b, a: ".astype(" in b and _without_copy(b) == _without_copy(a),
        "astype's copy= only decides whether a new array is allocated; nothing writes into "
        "what these astype calls return",
    ),
    (
        None,
        lambda b, a: any(
            b[:i] + b[i:].replace("reshape(-1)", "reshape(-2)", 1) == a for i in range(len(b))
        ),
        "NumPy reads any negative size in reshape as 'infer it': reshape(-2) is reshape(-1)",
    ),
    (
        None,
        lambda b, a: re.sub(r"astype\(_float64\)", "astype(None)", b) == a,
        "astype(None) is astype(float64)",
    ),
    (
        None,
        lambda b, a: re.match(r"\s*m = ", b) is not None and b.replace("//", "/", 1) == a,
        "m, a size divided by the product of some of its axes' lengths, is an exact multiple: "
        "a / b equals a // b, and m is only divided by and compared",
    ),
    (
        {"_per_sample_forward"},
        lambda b, a: (
            re.sub(r"reshape\(shape\)", "reshape(None)", b) == a
            or (b.strip().startswith("shape = ") and a.strip() == "shape = None")
        ),
        "gamma and beta act on the last axis: shape (C,) broadcasts against (N, ..., C) as "
        "(1, ..., 1, C) does",
    ),
    (
        {"_per_sample_forward"},
        lambda b, a: b.replace("min_ndim=min_ndim", "") == a,
        "every caller asks for 2 dimensions, _check_x's default, except instancenorm_forward, "
        "which has checked for 3 before",
    ),
]


def _functions(path: Path) -> dict[str, list[str]]:
    """Each function of mutmut's rewritten module (originals and mutants) as its lines."""
    source = path.read_text("utf-8")
    lines = source.splitlines()
    return {
        node.name: lines[node.lineno - 1 : node.end_lineno]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def _changed(functions: dict, key: str) -> tuple[list[str], list[str], str | None]:
    """The original lines a mutant replaced, what it put there, and why it is equivalent:
    a ``mutation-equivalent`` comment on a replaced line or directly above one, or a rule."""
    name = key.rsplit(".", 1)[-1]
    stem = name.rsplit("__mutmut_", 1)[0]
    function = stem.rsplit("\u01c1", 1)[-1].removeprefix("x_")  # mutmut's x_f, x\u01c1C\u01c1f
    mutant = [line.replace(name, "") for line in functions.get(name, [])]
    original = [
        line.replace(stem + "__mutmut_orig", "")
        for line in functions.get(stem + "__mutmut_orig", [])
    ]
    matcher = difflib.SequenceMatcher(a=original, b=mutant, autojunk=False)
    before, after, reasons = [], [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        before += original[i1:i2]
        after += mutant[j1:j2]
        above = i1 - 1
        while above >= 0 and original[above].strip().startswith("#"):
            above -= 1
        for k in range(above + 1, i2):
            if MARK in original[k]:
                words = [original[k].split(MARK, 1)[1].lstrip(":( ").strip()]
                while (
                    k + 1 < len(original)
                    and original[k + 1].strip().startswith("#")
                    and MARK not in original[k + 1]
                ):
                    k += 1
                    words.append(original[k].strip().lstrip("# "))
                reasons.append(" ".join(words))
    if not reasons and len(before) == len(after) == 1:
        reasons = [
            why
            for where, rule, why in RULES
            if (where is None or function in where) and rule(before[0], after[0])
        ]
    return before, after, (reasons[0] if reasons else None)


def report(module: str, survivors: bool, equivalent: bool) -> str:
    meta = json.loads((MUTANTS / (module + ".meta")).read_text("utf-8"))["exit_code_by_key"]
    functions = _functions(MUTANTS / module)
    killed = sum(code in KILLED for code in meta.values())
    no_tests = [k for k, code in meta.items() if code in NO_TESTS]
    unchecked = [k for k, code in meta.items() if code is None]
    explained, unexplained = [], []
    for key, code in sorted(meta.items()):
        if code in SURVIVED or code in NO_TESTS:
            before, after, why = _changed(functions, key)
            if why:
                explained.append((key, before, after + [f"(equivalent: {why})"]))
            else:
                unexplained.append((key, before, after))
    total = len(meta)
    rate = killed / total if total else 1.0
    counted = total - len(explained)
    rate_explained = killed / counted if counted else 1.0
    # Equivalent: explained by a comment in the source or by one of the RULES above.
    lines = [
        f"{module}: {total} mutants, {killed} killed, {len(explained)} equivalent, "
        f"{len(unexplained)} survived ({len(no_tests)} of them reached by no test)"
        + (f", {len(unchecked)} not run" if unchecked else "")
        + f"; kill rate {rate:.1%}, {rate_explained:.1%} of the non-equivalent ones"
    ]
    groups = (["survived"] if survivors else []) + (["equivalent"] if equivalent else [])
    for heading in groups:
        for key, before, after in unexplained if heading == "survived" else explained:
            lines.append(f"  {heading}: {key}")
            lines += [f"    - {line.strip()}" for line in before]
            lines += [f"    + {line.strip()}" for line in after]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    survivors, equivalent = "--survivors" in argv, "--equivalent" in argv
    modules = [a for a in argv if not a.startswith("--")]
    if not modules:
        print(__doc__)
        return 2
    for module in modules:
        print(report(module, survivors, equivalent))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
