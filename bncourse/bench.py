"""Benchmarks that print ratios: ``python -m bncourse.bench [numpy|fold|grading|book]``.

``numpy`` (the default): for ``x`` of shape (4096, 1024) float32, the median time of our
training-mode forward, our staged and closed-form backward, Keras's BatchNormalization
layer forward in training mode, and a plain copy of ``x``; each also as a ratio to the
copy, which is the floor set by memory bandwidth.

``fold``: the median time to predict the 10,000 Fashion-MNIST test images with a model with
BN, the same model folded by :func:`bncourse.fold.fold_batchnorm`, and the same
architecture without BN, for the MLP and the CNN with BN before and after the activation;
each as a ratio to the model without BN.

``grading``: the autograding budgets (:mod:`bncourse.grading.bench`): each problem set's
reference solution autograded alone, with the time and peak memory of its kernel and its
verification re-run; the sandbox's overhead; a class of 300 ps1-forward submissions graded by
the default workers; the speed-up of two workers over one.

``book``: the book's build as ``make book`` runs it (``-W --keep-going``), into a temporary
folder: a cold build (every page executed) and a rebuild with nothing changed, each as a
ratio to its budget (10 minutes and 1 minute on 2 CPU cores).

Nothing here asserts a time: the numbers are for reading, side by side, from one run on one
machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bncourse import numpy_bn


def median_seconds(fns, *, repeat: int) -> list[float]:
    """Median time of one call of each function, timed in interleaved rounds.

    Each round calls every function once, in an order rotated from round to round, so a
    slow spell of a shared machine falls on all of them alike instead of on whichever
    happened to run then.
    """
    for fn in fns:
        fn()  # warm up: first-call costs (allocation, tracing) are not what we measure
    times = [[] for _ in fns]
    for round_ in range(repeat):
        # Rotate the order, so that no function always runs right after the same other one.
        for k in range(len(fns)):
            i = (round_ + k) % len(fns)
            start = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def run(shape=(4096, 1024), repeat: int = 31, keras_layer: bool = True, seed: int = 0):
    """Time each operation; returns a list of (name, seconds)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 2.0, size=shape).astype(np.float32)
    dout = rng.normal(size=shape).astype(np.float32)
    num_features = shape[-1]
    gamma = rng.normal(1.0, 0.1, num_features).astype(np.float32)
    beta = rng.normal(0.0, 0.1, num_features).astype(np.float32)
    _, cache = numpy_bn.batchnorm_forward(x, gamma, beta)

    ops = {
        "copy of x (bandwidth floor)": lambda: x.copy(),
        "numpy_bn forward (training)": lambda: numpy_bn.batchnorm_forward(x, gamma, beta),
        "numpy_bn backward, staged": lambda: numpy_bn.batchnorm_backward(dout, cache),
        "numpy_bn backward, closed form": lambda: numpy_bn.batchnorm_backward_alt(dout, cache),
    }
    if keras_layer:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        layer = keras.layers.BatchNormalization()
        layer.build(shape)
        xk = keras.ops.convert_to_tensor(x)

        def keras_forward():
            out = layer(xk, training=True)
            # Wait for the result, so asynchronous backends are timed fully.
            keras.ops.convert_to_numpy(out[:1, :1])

        ops[f"keras BatchNormalization forward (training, {keras.backend.backend()})"] = (
            keras_forward
        )
    rows = list(zip(ops, median_seconds(list(ops.values()), repeat=repeat)))
    return rows


def format_table(rows, shape) -> str:
    """The rows as a table, with each time's ratio to the copy."""
    floor = rows[0][1]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"x: {shape} float32, {np.prod(shape) * 4 / 2**20:.0f} MiB; "
        f"median of interleaved rounds; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, numpy {np.__version__}",
        f"{'operation':<{width}}  {'median ms':>10}  {'x copy':>7}",
    ]
    for name, seconds in rows:
        lines.append(f"{name:<{width}}  {seconds * 1e3:>10.2f}  {seconds / floor:>7.2f}")
    by_name = dict(rows)
    staged = by_name["numpy_bn backward, staged"]
    closed = by_name["numpy_bn backward, closed form"]
    lines.append(f"closed-form backward is {staged / closed:.2f}x as fast as the staged one")
    keras_rows = [s for n, s in rows if n.startswith("keras")]
    if keras_rows:
        ours = by_name["numpy_bn forward (training)"]
        lines.append(f"our forward takes {ours / keras_rows[0]:.2f}x the time of Keras's layer")
    return "\n".join(lines)


def predictor(model, inputs, batch_size: int = 1000):
    """A function predicting all inputs batch by batch, without ``predict``'s data pipeline."""

    def predict_all():
        for start in range(0, len(inputs), batch_size):
            model.predict_on_batch(inputs[start : start + batch_size])

    return predict_all


def run_fold(repeat: int = 15, architectures=("mlp", "cnn"), n_images=None, seed: int = 0):
    """Time inference of BN, folded and no-BN models; returns rows (arch, bn, times)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from bncourse import data, fold, models

    (_, _), (x_test, _) = data.load_dataset("fashion_mnist")
    if n_images is not None:
        x_test = x_test[:n_images]
    x = data.scale_images(x_test)
    rng = np.random.default_rng(seed)
    builders = {"mlp": models.build_mlp, "cnn": models.build_cnn}
    rows = []
    for arch in architectures:
        inputs = x if arch == "mlp" else data.add_channel_axis(x)
        for bn in ("before", "after"):
            keras.utils.set_random_seed(seed)
            with_bn = builders[arch](bn)
            for layer in with_bn.layers:  # statistics away from their initial values
                if isinstance(layer, keras.layers.BatchNormalization):
                    c = layer.moving_mean.shape[0]
                    layer.moving_mean.assign(rng.normal(0, 0.5, c).astype("float32"))
                    layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
            folded = fold.fold_batchnorm(with_bn)
            without = builders[arch](None)
            fns = [predictor(m, inputs) for m in (with_bn, folded, without)]
            rows.append((arch, bn, median_seconds(fns, repeat=repeat)))
    return rows, len(x)


BOOK_BUDGETS = {"cold build": 600.0, "rebuild, nothing changed": 60.0}


def build_book(root, path_output=None, timeout=None):
    """``jupyter-book build root -W --keep-going``, as ``make book`` runs it (into
    ``path_output`` instead of ``root/_build`` if given); returns the finished process, its
    output captured as text."""
    import subprocess

    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(root), "-W", "--keep-going"]
    if path_output is not None:
        command += ["--path-output", str(path_output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def run_book(root=None) -> list:
    """Build the book twice into a temporary folder; returns rows (what, seconds, budget)."""
    import tempfile

    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    if not (root / "_toc.yml").is_file():
        raise FileNotFoundError(f"no book at {root}: _toc.yml is missing")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bncourse-book-bench-") as out:
        for what in BOOK_BUDGETS:
            started = time.perf_counter()
            result = build_book(root, out)
            seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(
                    f"the book did not build ({what}):\n" + (result.stdout + result.stderr)[-3000:]
                )
            rows.append((what, seconds, BOOK_BUDGETS[what]))
    return rows


def format_book_table(rows) -> str:
    lines = [f"{'book build':<26}{'seconds':>9}{'budget':>8}{'of budget':>11}"]
    for what, seconds, budget in rows:
        lines.append(f"{what:<26}{seconds:>9.1f}{budget:>8.0f}{seconds / budget:>10.2f}x")
    if hasattr(os, "getloadavg"):
        lines.append(f"on {os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}")
    return "\n".join(lines)


def format_fold_table(rows, n_images) -> str:
    """The fold benchmark as a table, with each time's ratio to the model without BN."""
    lines = [
        f"predict {n_images} Fashion-MNIST test images, batch 1000; median of interleaved "
        f"rounds; {os.cpu_count()} CPUs",
        f"{'model':<12} {'with BN ms':>11} {'folded ms':>10} {'no BN ms':>9} "
        f"{'BN/noBN':>8} {'folded/noBN':>12}",
    ]
    for arch, bn, (t_bn, t_folded, t_none) in rows:
        lines.append(
            f"{arch + ' ' + bn:<12} {t_bn * 1e3:>11.1f} {t_folded * 1e3:>10.1f} "
            f"{t_none * 1e3:>9.1f} {t_bn / t_none:>8.3f} {t_folded / t_none:>12.3f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "which",
        nargs="?",
        choices=("numpy", "fold", "grading", "book"),
        default="numpy",
        help="which benchmark (numpy)",
    )
    parser.add_argument("--rows", type=int, default=4096, help="numpy: N, the batch size (4096)")
    parser.add_argument("--features", type=int, default=1024, help="numpy: D, the features (1024)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed rounds (numpy: 31, fold: 15)"
    )
    parser.add_argument("--no-keras", action="store_true", help="numpy: skip the Keras layer")
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="fold: predict only the first N test images (all 10,000)",
    )
    parser.add_argument(
        "--class-size",
        type=int,
        default=300,
        help="grading: the size of the ps1-forward class (300; 0 skips it)",
    )
    parser.add_argument(
        "--save",
        default=None,
        metavar="PATH",
        help="grading: also write the measurements and their provenance as "
        "JSON to PATH (the book reads results/benchmarks/grading.json)",
    )
    args = parser.parse_args(argv)
    if args.rows < 2 or args.features < 1 or (args.repeat is not None and args.repeat < 1):
        parser.error("--rows must be >= 2, --features and --repeat >= 1")
    if args.images is not None and args.images < 1:
        parser.error("--images must be >= 1")
    if args.class_size < 0:
        parser.error("--class-size must be >= 0")
    if args.which == "grading":
        from bncourse.grading import bench as grading_bench

        started_load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        if args.save is not None and not Path(args.save).parent.is_dir():
            parser.error(f"--save: the folder of {args.save!r} does not exist")
        result = grading_bench.run(class_size=args.class_size)
        print(grading_bench.format_report(result))
        if args.save is not None:
            grading_bench.save(result, args.save, started_load=started_load)
            print(f"wrote {args.save}")
        return 0
    if args.which == "book":
        print(format_book_table(run_book()))
        return 0
    if args.which == "fold":
        rows, n = run_fold(repeat=args.repeat or 15, n_images=args.images)
        print(format_fold_table(rows, n))
        return 0
    shape = (args.rows, args.features)
    rows = run(shape, repeat=args.repeat or 31, keras_layer=not args.no_keras)
    print(format_table(rows, shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
