"""Speed of the NumPy reference: ``python -m bncourse.bench``.

Prints, for ``x`` of shape (4096, 1024) float32 by default, the median time of our
training-mode forward, our staged and closed-form backward, Keras's BatchNormalization
layer forward in training mode, and a plain copy of ``x``; each also as a ratio to the
copy, which is the floor set by memory bandwidth. Nothing here asserts a time: the numbers
are for reading, side by side, from one run on one machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from bncourse import numpy_bn


def median_seconds(fns, *, repeat: int) -> list[float]:
    """Median time of one call of each function, timed in interleaved rounds.

    Each round calls every function once, so a slow spell of a shared machine falls on all
    of them alike instead of on whichever happened to run then.
    """
    for fn in fns:
        fn()  # warm up: first-call costs (allocation, tracing) are not what we measure
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, record in zip(fns, times):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bncourse.bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=4096, help="N, the batch size (4096)")
    parser.add_argument("--features", type=int, default=1024, help="D, the features (1024)")
    parser.add_argument("--repeat", type=int, default=31, help="timed rounds (31)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras layer")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.features < 1 or args.repeat < 1:
        parser.error("--rows must be >= 2, --features and --repeat >= 1")
    shape = (args.rows, args.features)
    rows = run(shape, repeat=args.repeat, keras_layer=not args.no_keras)
    print(format_table(rows, shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
