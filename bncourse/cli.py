"""The ``bncourse`` command: compare BN variants, reproduce the course's experiments, report.

    bncourse compare --model cnn --bn none,after --seeds 0,1,2 --profile quick
    bncourse reproduce --profile full            # every registered experiment, resumable
    bncourse report results/                     # tables and figures from saved results

Every finished run is saved at once under a name derived from its configuration's hash; a
run whose result exists is skipped unless ``--rerun`` is given, so a long reproduction can
be stopped and resumed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bncourse import data
from bncourse.experiments import (
    DEFAULT_PROTOCOL,
    PROFILES,
    VARIANTS,
    experiment,
    experiment_configs,
    experiment_names,
    protocols,
    run_config,
)
from bncourse.runner import SchedulerError, reproduce_configs, run_configs

__all__ = ["main"]


class CommandError(Exception):
    """A problem with the user's request, reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, no usage dump, no traceback.
        raise CommandError(f"{self.prog}: {message}")


# --------------------------------------------------------------------------- option types


def _int_list(text: str):
    items = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of integers such as 0,1,2, got {text!r}"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be >= 0, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"seeds must not repeat, got {text!r}")
    return values


def _variant_list(text: str):
    values = [t.strip() for t in text.split(",")]
    bad = [v for v in values if v not in VARIANTS]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(VARIANTS)}, got {text!r}"
        )
    return list(dict.fromkeys(values))


def _positive_int(text: str):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _scheduler_address(text: str) -> str:
    scheme, _, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if not (scheme and host and port.isdigit()):
        raise argparse.ArgumentTypeError(
            f"expected a dask scheduler address such as tcp://HOST:8786, got {text!r}"
        )
    return text


def _writable_dir(path) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".bncourse-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CommandError(
            f"cannot write to the output directory {str(path)!r}: {e.strerror or e}"
        ) from None
    return path


def _dataset_available(name) -> str | None:
    """None if the dataset can be loaded here, else why not (one line)."""
    try:
        data.load_dataset(name)
    except data.DatasetNotFoundError as e:
        return str(e).split(". To get it")[0]
    return None


# --------------------------------------------------------------------------- commands


def cmd_compare(args, out=None):
    out = out or sys.stdout
    from bncourse.results import format_table, summarize

    protocol = protocols()[DEFAULT_PROTOCOL[args.model]]
    variants = args.bn or list(protocol.variants)
    dataset = args.dataset or protocol.dataset
    out_dir = _writable_dir(args.out)
    # Seed by seed, so that a stopped run leaves complete comparisons behind.
    configs = [
        run_config(protocol, bn, seed, args.profile, epochs=args.epochs, dataset=dataset)
        for seed in args.seeds
        for bn in variants
    ]
    data.load_dataset(dataset)  # fail here, in one line, if the data cannot be had
    out.write(f"{protocol.title}\n")
    if dataset != protocol.dataset:
        out.write(f"dataset: {dataset}, in place of the protocol's {protocol.dataset}\n")
    out.write(
        f"profile {args.profile}: {len(configs)} run(s), "
        f"{configs[0]['epochs']} epochs each, results in {out_dir}\n"
    )
    if protocol.validation.get("keep_in_train"):
        out.write(
            "note: as in the tutorial, the validation images are also training images, "
            "so validation accuracy is not measured on unseen data\n"
        )
    out.flush()
    records = run_configs(configs, out_dir, rerun=args.rerun, command=["bncourse", *args.argv])
    out.write(format_table(summarize(records)) + "\n")
    return 0


def cmd_reproduce(args, out=None):
    out = out or sys.stdout
    from bncourse.results import format_table, summarize

    from bncourse.experiments import verdicts
    from bncourse.verdicts import format_verdicts

    names = args.only or experiment_names()
    out_dir = _writable_dir(args.out or ("results" if args.profile == "full" else "runs/quick"))
    configs = []
    for name in names:
        e = experiment(name)
        missing = _dataset_available(e.dataset)
        if missing:
            out.write(f"skipped {name}: {missing}\n")
            continue
        runs = experiment_configs(name, args.profile)
        out.write(f"{name}: {e.title}, {len(runs)} run(s)\n")
        configs += runs
    out.flush()
    try:
        all_records, failures = reproduce_configs(
            configs,
            out_dir,
            rerun=args.rerun,
            command=["bncourse", *args.argv],
            scheduler=args.scheduler,
        )
    except SchedulerError as e:
        raise CommandError(str(e)) from None
    if any(r["config"]["experiment"] in protocols() for r in all_records):
        out.write(format_table(summarize(all_records)) + "\n")
    items = verdicts(all_records)
    if items:
        out.write(format_verdicts(items) + "\n")
    if failures:
        out.write(
            f"{len(failures)} run(s) failed: {', '.join(n for n, _ in failures)}; "
            "the others are saved, run the same command again to retry them\n"
        )
        return 1
    return 0


def cmd_report(args, out=None):
    out = out or sys.stdout
    from bncourse.plotting import save_report_figures
    from bncourse.results import format_table, load_results, summarize

    directory = Path(args.directory)
    if not directory.is_dir():
        raise CommandError(f"{str(directory)!r} is not a directory of results")
    records, bad = load_results(directory)
    if args.claims:
        from bncourse.experiments import verdicts
        from bncourse.plotting import save_claim_figures
        from bncourse.verdicts import VERDICTS_FILE, format_verdicts

        pending = []
        items = verdicts(records, pending=pending)
        out.write(format_verdicts(items) + "\n")
        for name, why in pending:
            out.write(f"not judged yet: {name}: {why}\n")
        verdicts_file = directory / VERDICTS_FILE
        if items:
            verdicts_file.write_text(format_verdicts(items) + "\n")
            out.write(f"wrote {verdicts_file}\n")
        elif verdicts_file.exists():
            verdicts_file.unlink()  # no results behind it any more
            out.write(f"removed {verdicts_file}: no claim can be judged from these results\n")
    else:
        out.write(format_table(summarize(records)) + "\n")
    for check in bad:
        out.write(f"problem: {check.path}: {'; '.join(check.problems)}\n")
    if records:
        from bncourse.progress import duration
        from bncourse.results import training_seconds

        seconds = training_seconds(records)
        if seconds:
            out.write(
                f"{len(records)} runs; their training took {duration(seconds['all'])} in "
                "all, one run after another (from each record's start and end)\n"
            )
    if records and not args.no_figures:
        figures = _writable_dir(args.figures or directory / "figures")
        save = save_claim_figures if args.claims else save_report_figures
        paths = save(records, figures)
        if paths:
            out.write(f"wrote {len(paths)} figure files to {figures}\n")
    return 1 if bad else 0


def _add_output_options(parser, default, default_text):
    parser.add_argument(
        "--out", default=default, help=f"directory for the results (default {default_text})"
    )
    parser.add_argument(
        "--rerun", action="store_true", help="run again even where a result is saved"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bncourse",
        description="Train and compare networks with and without Batch Normalization, "
        "reproduce the course's experiments, and report saved results.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    compare = sub.add_parser(
        "compare",
        help="train BN variants of one model over several seeds and compare them",
        description="Train each BN variant of a model for each seed (the model's tutorial "
        "protocol: mlp follows T1, cnn T3/T4, small T2), save every run, and print a table: "
        "test accuracy mean ± std over seeds, best validation accuracy, epochs to reach 90%% "
        "of the final validation accuracy, median seconds per epoch and its ratio to no BN.",
    )
    compare.add_argument(
        "--model",
        choices=sorted(DEFAULT_PROTOCOL),
        default="mlp",
        help="the architecture (default mlp)",
    )
    compare.add_argument(
        "--dataset",
        choices=data.DATASETS,
        default=None,
        help="the dataset (default: the protocol's, fashion_mnist)",
    )
    compare.add_argument(
        "--bn",
        type=_variant_list,
        default=None,
        help="comma-separated BN placements among none,before,after (default: all three)",
    )
    compare.add_argument(
        "--seeds",
        type=_int_list,
        default=[0, 1, 2],
        help="comma-separated seeds, one run per seed and variant (default 0,1,2)",
    )
    compare.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="number of epochs (default: the profile's)",
    )
    compare.add_argument(
        "--profile",
        choices=PROFILES,
        default="quick",
        help="quick: a stated subset and few epochs, about a minute; full: the "
        "tutorial's protocol as written (default quick)",
    )
    _add_output_options(compare, "runs", "runs/")
    compare.set_defaults(func=cmd_compare)

    reproduce = sub.add_parser(
        "reproduce",
        help="run every registered experiment of the course",
        description="Run every registered experiment (or those named by --only) and save the "
        "results; experiments whose dataset is not available here are skipped with a note. "
        "Finished runs are skipped, so it can be stopped and resumed. One progress bar "
        "covers every run, with an ETA from the runs finished so far.",
    )
    reproduce.add_argument(
        "--profile", choices=PROFILES, default="full", help="full (default) or quick"
    )
    reproduce.add_argument(
        "--only",
        type=lambda t: [n.strip() for n in t.split(",")],
        default=None,
        help="comma-separated experiment names: the "
        "experiments of bncourse.experiments (default: all of them)",
    )
    reproduce.add_argument(
        "--scheduler",
        type=_scheduler_address,
        default=None,
        help="spread the runs over the dask.distributed cluster whose "
        "scheduler is at tcp://HOST:PORT, one task per run; results are "
        "written here as they come back (default: train here)",
    )
    _add_output_options(reproduce, None, "results/ for full, runs/quick/ for quick")
    reproduce.set_defaults(func=cmd_reproduce)

    report = sub.add_parser(
        "report",
        help="print tables and write figures from saved results, without training",
        description="Read every result under DIRECTORY, print the comparison tables, write the "
        "figures (PNG and SVG), and list files that are stale, edited by hand or unreadable "
        "(exit status 1 if there are any).",
    )
    report.add_argument(
        "directory", nargs="?", default="results", help="directory of results (default results/)"
    )
    report.add_argument(
        "--figures", default=None, help="where to write the figures (default DIRECTORY/figures)"
    )
    report.add_argument("--no-figures", action="store_true", help="only print the tables")
    report.add_argument(
        "--claims",
        action="store_true",
        help="print the claims table (claim, experiment, key numbers, verdict) "
        "instead of the comparison tables, and write it to "
        "DIRECTORY/claims-verdicts.txt",
    )
    report.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        args.argv = argv
        if getattr(args, "only", None):
            known = experiment_names()
            unknown = [n for n in args.only if n not in known]
            if unknown:
                raise CommandError(
                    f"bncourse reproduce: unknown experiment(s) {', '.join(unknown)}; "
                    f"known: {', '.join(known)}"
                )
        return args.func(args)
    except CommandError as e:
        message = str(e)
        if not message.startswith("bncourse"):
            message = f"bncourse {args.command}: {message}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except (data.DatasetNotFoundError, data.DatasetCorruptError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are saved; run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
