"""One registry of the course's experiments: each is a module of this package.

A module that defines ``EXPERIMENTS`` (a tuple of :class:`Experiment`) is found here by
name, by the runner, the command line, the book and the tests alike. An experiment states
its runs for each profile (``quick``: a minute or less, for tests and the book build;
``full``: the committed results), trains one run into a JSON-able outcome, and, where it
tests a claim, turns its saved runs into verdicts (:mod:`bncourse.verdicts`).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from bncourse.experiments.protocol import PROFILES, Protocol, run_config
from bncourse.verdicts import claim_key

__all__ = [
    "Experiment",
    "MissingRuns",
    "experiment",
    "experiment_configs",
    "experiment_names",
    "profile_records",
    "protocols",
    "settings_configs",
    "verdicts",
]


class MissingRuns(LookupError):
    """A verdict cannot be taken yet: runs it needs are not among the records."""


@dataclass(frozen=True)
class Experiment:
    """An experiment of the course.

    Attributes:
        name: registry key and results folder.
        title: one line.
        configs: ``configs(profile) -> list`` of every run's JSON-able configuration.
        train: ``train(config, on_epoch) -> outcome`` for one run.
        claims: the ids of the claims it feeds (see :mod:`bncourse.verdicts`).
        judge: ``judge(runs) -> list[Verdict]``, where ``runs`` maps the name of this
            experiment and of each of ``reads`` to its records of one profile; may raise
            :class:`MissingRuns`.
        reads: other experiments whose records the judge also reads.
        protocol: the tutorial protocol it follows, if any (then ``train`` is
            :func:`bncourse.experiments.protocol.train_run`).
        dataset: the dataset it needs (for a note when it cannot be had).
    """

    name: str
    title: str
    configs: Callable
    train: Callable
    claims: tuple = ()
    judge: Callable | None = None
    reads: tuple = ()
    protocol: Protocol | None = None
    dataset: str = "fashion_mnist"


def protocol_experiment(protocol: Protocol, *, claims=(), judge=None, reads=()) -> Experiment:
    """The experiment that runs a tutorial protocol: every variant for every seed."""
    from bncourse.experiments import protocol as _protocol

    def train(config, on_epoch=None, arrays_cache=None):
        """Train one run; ``arrays_cache`` (a dict) keeps the prepared data between runs of
        the same data, one dataset at a time."""
        cache = {} if arrays_cache is None else arrays_cache
        key = (config["dataset"], config["model"], str(config["subset"]), str(config["validation"]))
        if key not in cache:
            cache.clear()
            cache[key] = _protocol.prepare_data(config)
        return _protocol.train_run(config, on_epoch=on_epoch, arrays=cache[key])

    def configs(profile):
        return [
            run_config(protocol, bn, seed, profile)
            for seed in protocol.seeds
            for bn in protocol.variants
        ]

    return Experiment(
        name=protocol.name,
        title=protocol.title,
        configs=configs,
        train=train,
        claims=tuple(claims),
        judge=judge,
        reads=tuple(reads),
        protocol=protocol,
        dataset=protocol.dataset,
    )


def settings_configs(name, *, variants, settings, seeds, version=1, sweep=None):
    """``configs(profile)`` for an experiment described by its variants, per-profile
    settings and seeds, and an optional sweep ``(key, {profile: values})``: one run per
    seed, sweep value and variant, seed by seed (so a stopped reproduction leaves whole
    seeds behind)."""

    def configs(profile):
        if profile not in settings:
            raise ValueError(f"profile must be one of {', '.join(settings)}, got {profile!r}")
        points = [{}] if sweep is None else [{sweep[0]: v} for v in sweep[1][profile]]
        return [
            {
                "experiment": name,
                "version": version,
                "profile": profile,
                "variant": variant,
                "seed": seed,
                **point,
                **settings[profile],
            }
            for seed in seeds[profile]
            for point in points
            for variant in variants
        ]

    return configs


@functools.cache
def _registry() -> dict:
    package = __name__.rpartition(".")[0]  # bncourse.experiments, without importing it here
    found = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        mod = importlib.import_module(f"{package}.{module.name}")
        for e in getattr(mod, "EXPERIMENTS", ()):
            if e.name in found:
                raise RuntimeError(f"experiment {e.name!r} is defined twice")
            found[e.name] = e
    order = {"t1-mlp": 0, "t4-cnn": 1, "t4-cnn-mnist": 2, "t3-cnn-kmnist": 3, "small": 4}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))


def experiment_names() -> list:
    """Every registered experiment: the tutorials' protocols first, then the others."""
    return list(_registry())


def experiment(name: str) -> Experiment:
    """The experiment called ``name``; a ValueError naming the known ones otherwise."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(registry)}")
    return registry[name]


def protocols() -> dict:
    """{name: Protocol} of the experiments that follow a tutorial's protocol."""
    return {n: e.protocol for n, e in _registry().items() if e.protocol is not None}


def experiment_configs(name: str, profile: str, *, seeds=None, variants=None) -> list:
    """Every run of experiment ``name`` in ``profile``; ``seeds`` and ``variants`` keep only
    those (None: all of them)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    configs = experiment(name).configs(profile)
    return [
        c
        for c in configs
        if (seeds is None or c["seed"] in seeds)
        and (variants is None or c.get("variant", c.get("bn")) in variants)
    ]


def profile_records(records, name):
    """The records of experiment ``name`` of one profile: full if there are any, else
    quick; an empty list if neither."""
    mine = [r for r in records if r["config"]["experiment"] == name]
    for profile in ("full", "quick"):
        chosen = [r for r in mine if r["config"]["profile"] == profile]
        if chosen:
            return chosen
    return []


def verdicts(records, *, pending=None) -> list:
    """Every verdict that ``records`` support, sorted by claim.

    Args:
        records: result records of any experiments.
        pending: a list that receives ``(experiment, reason)`` for each experiment that
            feeds a claim but lacks the runs to judge it (none at all, or
            :class:`MissingRuns`).
    """
    out = []
    for name, e in _registry().items():
        if e.judge is None:
            continue
        runs = {n: profile_records(records, n) for n in (name, *e.reads)}
        if not runs[name]:
            if pending is not None and e.claims:
                pending.append((name, f"claim {', '.join(e.claims)}: no runs"))
            continue
        try:
            out += e.judge(runs)
        except MissingRuns as why:
            if pending is not None:
                pending.append((name, str(why)))
    return sorted(out, key=lambda v: claim_key(v.claim))
