"""What the book's chapters share: quick runs trained while a page executes, and the full
runs recorded in ``results/``.

A chapter shows both, and says which is which:

* :func:`quick_records` trains an experiment's ``quick`` profile now (a minute or less on
  two CPU cores), so the page demonstrates the experiment live;
* :func:`full_records` loads the committed ``full`` runs (several seeds, hours of
  training, each with its provenance), from which the chapter's verdicts and figures come.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

__all__ = [
    "full_records",
    "judge_claim",
    "profile_sentence",
    "quick_records",
    "verdict_markdown",
    "verdicts_for",
]


def quick_records(name: str, *, seeds=(0,), variants=None, out_dir=None) -> list:
    """Train the ``quick`` profile of experiment ``name`` now and return its records.

    Args:
        name: an experiment of :mod:`bncourse.experiments` (``"t1-mlp"``, ``"ics"``, ...).
        seeds: the seeds to run (default: seed 0 only, to keep a page's execution short);
            None for the profile's own seeds.
        variants: the variants to run; None for all of them.
        out_dir: where the runs are saved; by default a temporary folder that is removed
            afterwards, so nothing from an earlier build is reused.
    """
    from bncourse.experiments import experiment_configs
    from bncourse.runner import run_configs

    configs = experiment_configs(name, "quick", seeds=seeds, variants=variants)
    if not configs:
        raise ValueError(f"no quick runs of {name!r} match seeds={seeds!r}, variants={variants!r}")
    log = io.StringIO()  # progress lines with ETAs would clutter the page
    if out_dir is not None:
        return run_configs(configs, Path(out_dir), stream=log)
    with tempfile.TemporaryDirectory(prefix=f"bncourse-{name}-") as tmp:
        return run_configs(configs, Path(tmp), stream=log)


def full_records(name: str, results_dir=None) -> list:
    """The committed ``full`` runs of experiment ``name``, from ``results/<name>/``.

    Raises:
        FileNotFoundError: no results folder, or no full run of ``name`` in it.
        ValueError: an unknown experiment, or a result file that fails its checks.
    """
    from bncourse.experiments import experiment_names
    from bncourse.results import load_results, repository_results_dir

    if name not in experiment_names():
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(experiment_names())}")
    root = Path(results_dir) if results_dir is not None else repository_results_dir()
    if root is None:
        raise FileNotFoundError(
            "the course's results/ folder was not found next to the bncourse package; set "
            "BNCOURSE_RESULTS_DIR to a folder of full results"
        )
    directory = root / name
    if not directory.is_dir():
        raise FileNotFoundError(
            f"no results for {name!r}: {directory} does not exist; run "
            f"`bncourse reproduce --profile full --only {name}`"
        )
    records, bad = load_results(directory)
    if bad:
        problems = "; ".join(f"{c.path.name}: {', '.join(c.problems)}" for c in bad)
        raise ValueError(f"results of {name!r} fail their checks: {problems}")
    records = [r for r in records if r["config"]["profile"] == "full"]
    if not records:
        raise FileNotFoundError(f"{directory} holds no full-profile run of {name!r}")
    return records


def verdicts_for(claim, records) -> list:
    """The verdicts on claim ``claim`` that ``records`` support: ``"7"`` for one claim, or a
    number whose parts all match (``1`` gives 1a and 1b)."""
    from bncourse.experiments import verdicts

    claim = str(claim)
    found = [
        v
        for v in verdicts(records)
        if v.claim == claim or (claim.isdigit() and v.claim.rstrip("abcdefgh") == claim)
    ]
    if not found:
        raise ValueError(f"these records judge no verdict on claim {claim}")
    return found


def verdict_markdown(verdict):
    """A verdict as a page shows it: the claim, its numbers, each effect with its interval,
    and the verdict in a Markdown table, then the rule that decided it and what would have
    changed it (an ``IPython.display.Markdown`` object)."""
    from IPython.display import Markdown

    def cell(value) -> str:
        return str(value).replace("|", "\\|")  # a literal bar, not a column break

    rows = [
        f"**Claim {verdict.claim}:** {verdict.text} (experiment `{verdict.experiment}`)",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    rows += [f"| {cell(key)} | {cell(value)} |" for key, value in verdict.numbers.items()]
    for e in verdict.effects:
        i = e.interval
        sign = ">" if e.side == "above" else "<"
        rows.append(
            f"| {cell(e.label)} | {i.estimate:.3g}, interval [{i.low:.3g}, "
            f"{i.high:.3g}] ({cell(i.method)}); predicted {sign} {e.threshold:g}: "
            f"{e.outcome} |"
        )
    rows.append(f"| **verdict on claim {verdict.claim}** | **{verdict.verdict}** |")
    return Markdown(
        "\n".join(rows) + f"\n\nRule: {verdict.rule}.\n\n"
        f"What would have changed it: {verdict.change()}"
    )


def judge_claim(claim, names, *, seeds=(0,), quick=None):
    """The verdicts on ``claim`` from the full runs of experiments ``names``, or, while those
    runs do not yet hold what the claim's judge needs, from quick runs trained now.

    Args:
        claim: a claim id (``"7"``, ``"12a"``) or a number for all its parts (see
            :func:`verdicts_for`).
        names: the experiment (or experiments) whose records the judge reads.
        seeds: the seeds of the quick runs, if they are needed.
        quick: quick records the page has already trained, used instead of training them
            again (None: train them if they are needed).

    Returns:
        ``(verdicts, profile)``: ``profile`` is ``"full"`` or ``"quick"``, for the page to
        say which runs its verdict comes from.
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    try:
        records = [r for name in names for r in full_records(name)]
    except FileNotFoundError:
        records = None
    if records is not None:
        try:
            return verdicts_for(claim, records), "full"
        except ValueError:  # a run the judge needs has not landed yet
            pass
    if quick is None:
        quick = [r for name in names for r in quick_records(name, seeds=seeds)]
    return verdicts_for(claim, quick), "quick"


def profile_sentence(profile: str) -> str:
    """One sentence that says which runs a verdict was taken on, for a page to show."""
    if profile == "full":
        return (
            "This verdict is taken on the full runs recorded in `results/` (every seed of "
            "the full profile)."
        )
    if profile == "quick":
        return (
            "The full runs this verdict needs are not all in `results/` yet, so this "
            "verdict is taken on the quick profile trained while the page was built: "
            "one seed, so its interval is unbounded and the verdict can only be "
            "inconclusive; it demonstrates the rule, not the result."
        )
    raise ValueError(f"profile must be 'full' or 'quick', got {profile!r}")
