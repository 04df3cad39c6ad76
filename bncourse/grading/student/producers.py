"""The student's half of each check: its inputs and the code that runs the student's object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Producer:
    """What a check runs where the student's code runs.

    Attributes:
        id: the check's id, ``"<problem set>.<name>"``.
        description: what the check tests, as the student reads it after ``ok:``.
        make_inputs: ``() -> dict`` of seeded inputs, the same wherever they are made.
        produce: ``(obj, inputs) -> dict`` of plain NumPy arrays: what the student's
            function or class ``obj`` computed on the inputs; with ``depends``,
            ``(obj, inputs, uses) -> dict``.
        depends: names of the student's earlier functions this part builds on. ``uses``
            maps each to the notebook's object of that name (None where it has none), so
            that the judge can grade the part against what the student's own earlier
            functions return (error carried forward: one bug costs one part).
    """

    id: str
    description: str
    make_inputs: Callable[[], dict]
    produce: Callable
    depends: tuple = ()

    @property
    def hidden(self) -> bool:
        """True for a hidden check (its id does not end in ``_visible``): it runs only when
        the notebook is graded."""
        return not self.id.endswith("_visible")

    def run(self, obj, inputs: dict, namespace: dict) -> dict:
        """``produce`` on ``obj``, with the objects it depends on taken from ``namespace``
        (the notebook's globals)."""
        if not self.depends:
            return self.produce(obj, inputs)
        return self.produce(obj, inputs, {name: namespace.get(name) for name in self.depends})


class ProducerRegistry(dict):
    """``{id: Producer}`` of one problem set, filled with :meth:`add` in its producers module."""

    def __init__(self, problem_set_name: str):
        super().__init__()
        self.prefix = problem_set_name + "."

    def add(
        self,
        name: str,
        description: str,
        make_inputs: Callable,
        produce: Callable,
        depends: tuple = (),
    ) -> Producer:
        """Register check ``<problem set>.<name>``; ValueError if it is registered already."""
        check_id = self.prefix + name
        if check_id in self:
            raise ValueError(f"check {check_id!r} is defined twice")
        self[check_id] = producer = Producer(
            check_id, description, make_inputs, produce, tuple(depends)
        )
        return producer
