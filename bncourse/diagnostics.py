"""Looking inside a network while it trains: per-layer statistics that show what BN changes.

:class:`TrainingDiagnostics` is a Keras callback. Every ``every`` training steps it takes a
fixed probe batch and records, for each layer that has a weight matrix (Dense, Conv2D) and
each layer whose output is a nonlinearity or a BN:

* the layer's output: mean, standard deviation, the fraction of values that are exactly 0
  (a ReLU's "off" half), the fraction of *dead* units (0 for every probe example), the
  fraction *saturated* (a sigmoid within 0.03 of 0 or 1, a tanh beyond ±0.97), and a
  histogram;
* the gradient of the loss with respect to the weight matrix: mean and standard deviation;
* the update-to-data ratio of the weight matrix over that step,
  ``std(W_after - W_before) / std(W_before)``: about 1e-3 is the rule of thumb for a healthy
  learning rate (Karpathy), much smaller means the layer barely learns, much larger that it
  is thrown around;
* the norm ``||W||`` of the weight matrix after that step and its *effective step*
  ``||W_after - W_before|| / ||W_before||`` (Frobenius norms), with whether the layer feeds a
  BN layer directly: for such a layer the output does not depend on ``||W||``, and the
  effective step is what sets how fast it learns (the book's chapter on weight decay).

The probe is evaluated in training mode, as the layers compute while they learn (BN with the
probe's own batch statistics, not its moving averages, which lag behind early in training);
BN's moving statistics are put back afterwards, so recording does not change training.
Recording costs two forward passes and one backward pass of the probe every ``every``
steps. A probe whose outputs or gradients are not all finite (a diverging model) is not
recorded; its step is listed in ``history["skipped"]``.

:func:`plot_diagnostics` and :func:`plot_histograms` draw what was recorded.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["TrainingDiagnostics", "plot_diagnostics", "plot_histograms"]

SATURATED = 0.03  # a sigmoid within this of 0 or 1, a tanh within this of ±1, is saturated
HISTOGRAM_BINS = 30


def _activation_name(layer) -> str | None:
    """'relu', 'sigmoid', 'tanh', ... for an Activation layer or a layer with an activation
    argument other than linear; None otherwise."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", str(activation))
    return None if name == "linear" else name


def _is_bn(layer) -> bool:
    """Keras's BN layer, or any layer that keeps BN's moving statistics (the course's
    ``bncourse.keras_bn.BatchNorm``, a student's own): recognised by its attributes, so that
    this module needs no reference implementation (ps4's sandbox has none)."""
    return isinstance(layer, keras.layers.BatchNormalization) or (
        hasattr(layer, "moving_mean") and hasattr(layer, "moving_variance")
    )


def _feeds_bn(model, layer) -> bool:
    """Whether ``layer`` is followed directly by a BN layer in ``model.layers`` (the order of a
    Sequential model, or of a functional model built as a chain)."""
    layers = model.layers
    index = next(i for i, other in enumerate(layers) if other is layer)
    return index + 1 < len(layers) and _is_bn(layers[index + 1])


def _watched(model) -> list:
    """The layers whose outputs are recorded: weights, nonlinearities and BN layers."""
    out = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None) is not None
        bn = _is_bn(layer)
        if kernel or bn or _activation_name(layer) is not None:
            out.append(layer)
    return out


def output_statistics(h, activation=None) -> dict:
    """Mean, std, zero fraction, dead-unit fraction and saturated fraction of a layer's
    output ``h`` of shape (N, ..., units), and its histogram."""
    h = np.asarray(h, dtype=np.float64)
    units = h.reshape(-1, h.shape[-1])
    if activation == "sigmoid":
        saturated = float(np.mean((h < SATURATED) | (h > 1.0 - SATURATED)))
    elif activation == "tanh":
        saturated = float(np.mean(np.abs(h) > 1.0 - SATURATED))
    else:
        saturated = None
    counts, edges = np.histogram(h, bins=HISTOGRAM_BINS)
    return {
        "mean": float(h.mean()),
        "std": float(h.std()),
        "zero": float(np.mean(h == 0.0)),
        "dead": float(np.mean(np.all(units == 0.0, axis=0))),
        "saturated": saturated,
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def kernel_gradients(model, x, y, loss) -> list:
    """The gradient of ``loss(y, model(x, training=True))`` with respect to each layer's
    kernel, in :func:`_watched` order (None for layers without one), as NumPy arrays.

    Keras 3 has no backend-neutral gradient call, so this is the one place where the
    backend is chosen: TensorFlow's GradientTape or ``jax.grad`` over ``stateless_call``.
    BN's moving statistics are left as they were.
    """
    layers = _watched(model)
    kernels = [getattr(layer, "kernel", None) for layer in layers]
    wanted = [k for k in kernels if k is not None]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        saved = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, [k.value for k in wanted])
        for v, s in zip(model.non_trainable_variables, saved):
            v.assign(s)
    elif backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def of(values):
            out, _ = model.stateless_call(values, fixed, x, training=True)
            return loss(y, out)

        all_grads = jax.grad(of)(trainable)
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        grads = [all_grads[index[id(k)]] for k in wanted]
    else:
        raise ValueError(
            f"kernel_gradients supports the tensorflow and jax backends, got {backend!r}"
        )
    grads = iter([keras.ops.convert_to_numpy(g) for g in grads])
    return [next(grads) if k is not None else None for k in kernels]


class TrainingDiagnostics(keras.callbacks.Callback):
    """Records per-layer statistics of a model while it trains (see the module docstring).

    Args:
        x, y: the probe batch (fixed, so that the records are comparable over training).
        every: record after every ``every``-th training step.
        first: also record after each of the first ``first`` steps (where a diverging
            model changes fastest).
        loss: the loss for the gradients, ``loss(y_true, y_pred)``; by default sparse
            categorical cross-entropy on probabilities, as the course's models use.

    After training, ``history`` holds ``steps`` (the steps recorded, 1-based),
    ``layers``: for each watched layer, ``output`` (a list of :func:`output_statistics`),
    ``gradient`` (``{"mean", "std"}`` lists; absent for layers without a kernel),
    ``update_ratio``, ``kernel_norm`` and ``relative_update`` (one value per recorded step;
    absent likewise) and ``feeds_bn`` (layers with a kernel), and ``skipped``: the
    due steps not recorded because the probe was not finite.
    """

    def __init__(self, x, y, *, every: int = 50, first: int = 1, loss=None):
        super().__init__()
        for name, value in (("every", every), ("first", first)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        x, y = np.asarray(x), np.asarray(y)
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(
                f"x and y must be one non-empty probe batch, got {len(x)} inputs "
                f"and {len(y)} labels"
            )
        self.x, self.y, self.every, self.first = x, y, every, first
        self.loss = loss or keras.losses.SparseCategoricalCrossentropy()
        self.history = {"steps": [], "layers": {}, "skipped": []}
        self._step = 0
        self._before = None

    def _due(self, step) -> bool:
        return step <= self.first or step % self.every == 0

    def on_train_batch_begin(self, batch, logs=None):
        if self._due(self._step + 1):
            self._before = [
                None
                if getattr(layer, "kernel", None) is None
                else keras.ops.convert_to_numpy(layer.kernel).copy()
                for layer in _watched(self.model)
            ]

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._due(self._step):
            self.record()

    def record(self):
        """Record the statistics now (also callable by hand, outside ``fit``)."""
        layers = _watched(self.model)
        inputs = self.model.inputs
        probe = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, [layer.output for layer in layers]
        )
        saved = [keras.ops.convert_to_numpy(v) for v in self.model.non_trainable_variables]
        outputs = probe(self.x, training=True)
        for v, value in zip(self.model.non_trainable_variables, saved):
            v.assign(value)  # a training-mode call updates BN's moving statistics
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        outputs = [keras.ops.convert_to_numpy(h).astype(np.float64) for h in outputs]
        grads = kernel_gradients(self.model, self.x, self.y, self.loss)
        grads = [None if g is None else g.astype(np.float64) for g in grads]
        if not all(np.isfinite(a).all() for a in (*outputs, *grads) if a is not None):
            self.history["skipped"].append(self._step)
            self._before = None
            return
        self.history["steps"].append(self._step)
        for i, (layer, h, g) in enumerate(zip(layers, outputs, grads)):
            entry = self.history["layers"].setdefault(
                layer.name,
                {"kind": type(layer).__name__, "activation": _activation_name(layer), "output": []},
            )
            entry["output"].append(output_statistics(h, entry["activation"]))
            if g is None:
                continue
            entry.setdefault("gradient", {"mean": [], "std": []})
            entry["gradient"]["mean"].append(float(g.mean()))
            entry["gradient"]["std"].append(float(g.std()))
            entry.setdefault("feeds_bn", _feeds_bn(self.model, layer))
            after = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
            ratio = relative = None
            if self._before is not None and self._before[i] is not None:
                before = self._before[i].astype(np.float64)
                ratio = float(np.std(after - before) / max(np.std(before), 1e-12))
                relative = float(
                    np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-12)
                )
            entry.setdefault("update_ratio", []).append(ratio)
            entry.setdefault("kernel_norm", []).append(float(np.linalg.norm(after)))
            entry.setdefault("relative_update", []).append(relative)
        self._before = None


# --------------------------------------------------------------------------- plots


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    return ax


_PANELS = {
    "output std": lambda e: [o["std"] for o in e["output"]],
    "dead units": lambda e: [o["dead"] for o in e["output"]],
    "saturated": lambda e: [o["saturated"] for o in e["output"]],
    "gradient std": lambda e: e.get("gradient", {}).get("std"),
    "update ratio": lambda e: e.get("update_ratio"),
}


def plot_diagnostics(history, quantity: str, ax=None, *, label_prefix=""):
    """One recorded quantity per layer against the training step.

    Args:
        history: a :class:`TrainingDiagnostics` ``history``.
        quantity: 'output std', 'dead units', 'saturated', 'gradient std' or 'update ratio'
            (drawn on a log scale with the rule of thumb 1e-3 as a dotted line).
        label_prefix: put before each layer's name in the legend (to compare two models).

    Returns:
        the matplotlib Axes.
    """
    if quantity not in _PANELS:
        raise ValueError(f"quantity must be one of {', '.join(_PANELS)}, got {quantity!r}")
    ax = _axes(ax)
    steps = history["steps"]
    for name, entry in history["layers"].items():
        values = _PANELS[quantity](entry)
        if not values or all(v is None for v in values):
            continue
        points = [(s, v) for s, v in zip(steps, values) if v is not None]
        ax.plot(*zip(*points), marker="o", ms=3, label=f"{label_prefix}{name}")
    if quantity in ("update ratio", "gradient std"):
        ax.set_yscale("log")
    if quantity == "update ratio":
        ax.axhline(1e-3, color="black", ls=":", lw=1, label="1e-3 (rule of thumb)")
    ax.set_xlabel("training step")
    ax.set_ylabel(quantity)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_histograms(history, index: int = -1, ax=None, *, kinds=None):
    """The histograms of the watched layers' outputs at one recorded step (``index`` into
    ``history["steps"]``), as outlines, one per layer; ``kinds`` keeps only some layer
    classes (e.g. ``("Activation",)``)."""
    ax = _axes(ax)
    for name, entry in history["layers"].items():
        if kinds is not None and entry["kind"] not in kinds:
            continue
        hist = entry["output"][index]["histogram"]
        edges, counts = np.array(hist["edges"]), np.array(hist["counts"], dtype=float)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, counts / max(counts.sum(), 1.0), label=name)
    ax.set_xlabel("output value")
    ax.set_ylabel("share of values")
    ax.set_title(f"layer outputs at step {history['steps'][index]}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax
