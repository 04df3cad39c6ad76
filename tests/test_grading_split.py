"""The checks split by trust domain: producers next to the student's code, judges outside.

:mod:`bncourse.grading.student` is all that runs where student code runs, so it must not
drag in a reference implementation, a judge or the grader; each check must have exactly one
producer and one judge; and neither half may be registered twice.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bncourse.grading import registry
from bncourse.grading.registry import JudgeRegistry, ProblemSet
from bncourse.grading.student.producers import ProducerRegistry

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "bncourse" / "grading" / "student"
STUDENT_MODULES = sorted(p.stem for p in STUDENT.glob("*.py") if p.stem != "__init__")
# Imported lazily, inside the produce functions of the sets that use them, if at all.
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "matplotlib")

_IMPORT_STUDENT_SIDE = """
import importlib, json, pkgutil, sys
import bncourse.grading.student as student
names = sorted(m.name for m in pkgutil.iter_modules(student.__path__))
for name in names:
    importlib.import_module("bncourse.grading.student." + name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def _is_student_side(name: str) -> bool:
    return (
        name in ("bncourse", "bncourse.grading")
        or name == "bncourse.grading.student"
        or name.startswith("bncourse.grading.student.")
    )


def test_the_student_side_imports_nothing_from_outside():
    """Every student module, imported in a fresh interpreter, loads no outside module."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_STUDENT_SIDE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["imported"] == STUDENT_MODULES and "ps1_forward" in STUDENT_MODULES
    modules = set(result["modules"])
    outside = sorted(m for m in modules if m.startswith("bncourse") and not _is_student_side(m))
    assert not outside, f"the student side imported {outside}"
    for name in (
        "bncourse.numpy_bn",
        "bncourse.keras_bn",
        "bncourse.models",
        "bncourse.fold",
        "bncourse.results",
        "bncourse.grading.solutions",
    ):
        assert name not in modules
    frameworks = sorted(m for m in modules if m.split(".")[0] in FRAMEWORKS)
    assert not frameworks, f"the student side imported {frameworks[:5]} when it was imported"


def _allowed_import(name: str) -> bool:
    """Whether student-side code may import module ``name`` (absolute), even lazily."""
    notebook_may = {m for ps in registry.PROBLEM_SETS.values() for m in ps.allowed}
    root = name.split(".")[0]
    return (
        root in sys.stdlib_module_names
        or root in ("numpy", "keras", "matplotlib", "IPython")
        or name.startswith("bncourse.grading.student.")
        or name in notebook_may
    )


@pytest.mark.parametrize("module", STUDENT_MODULES)
def test_the_student_side_imports_nothing_from_outside_even_lazily(module):
    """Imports inside functions too: the standard library, NumPy, Keras, Matplotlib, what a
    notebook may import, and the student side itself (relative imports stay in it)."""
    tree = ast.parse((STUDENT / f"{module}.py").read_text())
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            wrong += [a.name for a in node.names if not _allowed_import(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1 or (node.level == 0 and not _allowed_import(node.module)):
                wrong.append("." * node.level + (node.module or ""))
    assert not wrong, f"bncourse.grading.student.{module} imports {wrong}"


@pytest.mark.parametrize("name", list(registry.PROBLEM_SETS))
def test_every_producer_has_a_judge_and_every_judge_a_producer(name):
    ps = registry.problem_set(name)
    producers, judges = registry.producers_of(ps), registry.judges_of(ps)
    assert producers and set(producers) == set(judges)
    assert all(check_id.startswith(name + ".") for check_id in producers)
    assert ps.producers_module.startswith("bncourse.grading.student.")
    assert not ps.judges_module.startswith("bncourse.grading.student")
    checks = registry.checks_of(ps)
    assert list(checks) == list(producers)
    for check_id, check in checks.items():
        producer = producers[check_id]
        assert (check.description, check.make_inputs, check.produce, check.judge) == (
            producer.description,
            producer.make_inputs,
            producer.produce,
            judges[check_id],
        )


def _fake_problem_set(monkeypatch, producer_names, judge_names) -> ProblemSet:
    producers = ProducerRegistry("psx")
    for name in producer_names:
        producers.add(name, f"{name} works", dict, lambda obj, inputs: {})
    judges = JudgeRegistry("psx")
    for name in judge_names:
        judges.judge(name)(lambda inputs, outputs: [])
    for module, attr, value in (
        ("fake_producers", "PRODUCERS", producers),
        ("fake_judges", "JUDGES", judges),
    ):
        fake = types.ModuleType(module)
        setattr(fake, attr, value)
        monkeypatch.setitem(sys.modules, module, fake)
    return ProblemSet("psx", "fake_producers", "fake_judges")


def test_checks_of_refuses_checks_that_do_not_pair_up(monkeypatch):
    ps = _fake_problem_set(monkeypatch, ["a", "b"], ["a", "c"])
    with pytest.raises(
        ValueError,
        match=r"the checks of psx do not pair up: no judge in "
        r"fake_judges for psx\.b; no producer in fake_producers for psx\.c",
    ):
        registry.checks_of(ps)
    ps = _fake_problem_set(monkeypatch, ["a", "b"], ["b", "a"])
    assert list(registry.checks_of(ps)) == ["psx.a", "psx.b"]


def test_a_check_cannot_be_produced_or_judged_twice():
    producers = ProducerRegistry("psx")
    first = producers.add("a", "a works", dict, lambda obj, inputs: {})
    assert producers == {"psx.a": first} and first.id == "psx.a"
    with pytest.raises(ValueError, match="check 'psx.a' is defined twice"):
        producers.add("a", "a again", dict, lambda obj, inputs: {})
    assert producers["psx.a"] is first

    judges = JudgeRegistry("psx")

    @judges.judge("a_visible")
    @judges.judge("a")
    def judge(inputs, outputs):
        return []

    assert judges == {"psx.a": judge, "psx.a_visible": judge}
    with pytest.raises(ValueError, match="the judge of check 'psx.a' is defined twice"):
        judges.judge("a")(lambda inputs, outputs: [])
    assert judges["psx.a"] is judge


def test_the_import_contract_forbids_every_outside_grading_module():
    """pyproject's forbidden-imports contract for the student side names every module of
    bncourse.grading that is not on the student side, so a new judge cannot be left out."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c.get("source_modules") == ["bncourse.grading.student"]]
    outside = {
        "bncourse.grading." + p.stem
        for p in (ROOT / "bncourse" / "grading").glob("*.py")
        if p.stem != "__init__"
    }
    assert "bncourse.grading.keras_layer_state" in outside
    assert outside - set(contract["forbidden_modules"]) == set()
