"""Producers of ps3-keras-layer: a Keras 3 BN layer from scratch, run where the student's code runs.

The student writes ``moments(x, axis)``, a class ``MyBatchNorm(keras.layers.Layer)`` and
``build_mlp()``. Each ``produce`` builds the student's layer, sets its weights, calls it and
returns what came out as plain arrays, together with a few facts about the class (its base
classes, the paths of its variables, how often Keras's own BN ran meanwhile) that show
whether the work was handed to ``keras.layers.BatchNormalization``. The judges are in
:mod:`bncourse.grading.keras_layer`.

Inputs are float32, as a Keras layer computes by default. Keras is imported by the
``produce`` functions, not by this module: making the inputs needs NumPy only.
"""

from __future__ import annotations

import functools
import json
from contextlib import contextmanager

import numpy as np

from .calls import off_centre
from .producers import ProducerRegistry
from .values import require_array, require_tuple

PRODUCERS = ProducerRegistry("ps3-keras-layer")

WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
IMAGE = (28, 28)
CLASSES = 10


# ============================================================ running the student's layer


def _keras():
    """Keras as the notebook has it: produce builds and calls the student's layers with it."""
    import keras

    return keras


@contextmanager
def _watch_keras_bn():
    """Count the calls to Keras's BN layer, ``ops.moments`` and ``ops.batch_normalization``.

    The three are wrapped while the student's code runs and put back afterwards."""
    keras = _keras()
    counts = {"layer": 0, "moments": 0, "batch_normalization": 0}
    patched = []

    def counting(key, fn):
        @functools.wraps(fn)  # Keras reads the signature of call
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    bn = keras.layers.BatchNormalization
    patched.append((bn, "call", bn.__dict__["call"]))
    for module in (keras.ops, getattr(keras.ops, "nn", None)):
        for name in ("moments", "batch_normalization"):
            if module is not None and hasattr(module, name):
                patched.append((module, name, getattr(module, name)))
    try:
        for owner, name, original in patched:
            setattr(owner, name, counting("layer" if name == "call" else name, original))
        yield counts
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def qualname(cls) -> str:
    """``module.QualifiedName`` of a class, as the facts about the student's class name it."""
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=np.str_)


def _layer_class(cls):
    """``cls`` if it is a class derived from ``keras.layers.Layer``; AssertionError otherwise."""
    keras = _keras()
    if not isinstance(cls, type):
        raise AssertionError(f"MyBatchNorm: expected a class, got {type(cls).__name__}")
    if not issubclass(cls, keras.layers.Layer):
        raise AssertionError("MyBatchNorm must be a subclass of keras.layers.Layer")
    return cls


def _class_facts(cls) -> dict:
    """The classes ``cls`` derives from, and which class defines its ``get_config``."""
    mro = type.__dict__["__mro__"].__get__(cls)
    owner = next((c for c in mro if "get_config" in c.__dict__), object)
    return {
        "facts/mro": _strings(qualname(c) for c in mro),
        "facts/get_config_owner": np.array(qualname(owner)),
    }


def _with_facts(produce):
    """Wrap a produce function of the layer: class facts, and Keras BN's calls counted."""

    def wrapped(cls, inputs, *uses):
        with _watch_keras_bn() as counts:
            out = produce(cls, inputs, *uses)
        out.update({f"facts/calls/{k}": np.array(v) for k, v in counts.items()})
        return out

    wrapped.__name__ = produce.__name__
    wrapped.__doc__ = produce.__doc__
    return wrapped


def _tensor(name: str, value) -> np.ndarray:
    """A tensor, variable or array the student's code returned, as a NumPy array."""
    keras = _keras()
    if isinstance(value, keras.Variable):
        value = keras.ops.copy(value)  # NumPy 2 warns when it converts a variable directly
    elif not (keras.ops.is_tensor(value) or type(value) is np.ndarray):
        raise AssertionError(f"{name}: expected a tensor, got {type(value).__name__}")
    return np.copy(require_array(name, keras.ops.convert_to_numpy(value)))


def _variable(layer, name: str):
    """The layer's variable attribute ``name``, or None if it has none (or it is None)."""
    keras = _keras()
    value = getattr(layer, name, None)
    if value is None:
        return None
    if not isinstance(value, keras.Variable):
        raise AssertionError(
            f"MyBatchNorm.{name}: expected a variable made with self.add_weight, got "
            f"{type(value).__name__}"
        )
    return value


def _required_variable(layer, name: str):
    value = _variable(layer, name)
    if value is None:
        raise AssertionError(
            f"MyBatchNorm has no {name}: build must create it with "
            f"self.{name} = self.add_weight(...)"
        )
    return value


def _new_layer(cls, case: dict):
    """The student's layer made with the case's arguments, built, with the case's weights."""
    layer = cls(**case.get("kwargs", {}))
    layer.build(tuple(case["x"].shape))
    for name in WEIGHTS:
        if name in case:
            variable = (
                _required_variable(layer, name)
                if name.startswith("moving")
                else _variable(layer, name)
            )
            if variable is not None:
                variable.assign(case[name])
    return layer


def _layer_facts(layer, prefix: str) -> dict:
    return {
        f"{prefix}/paths": _strings(v.path for v in layer.weights),
        f"{prefix}/name": np.array(str(layer.name)),
    }


def _moving(layer, prefix: str) -> dict:
    return {
        f"{prefix}/{name}": _tensor(f"MyBatchNorm.{name}", _required_variable(layer, name))
        for name in ("moving_mean", "moving_variance")
    }


def _call(layer, x, label: str, **kwargs) -> np.ndarray:
    return _tensor(f"the output of {label}", layer(x, **kwargs))


def own_moments(uses: dict, x, axis) -> dict:
    """What the student's own ``moments`` returns for ``x`` (``{"own_mean", "own_var"}``),
    or ``{}`` when it is missing or fails: the judge then grades the layer on the
    reference alone (see error carried forward in :mod:`bncourse.grading.keras_layer`)."""
    fn = uses.get("moments")
    if not callable(fn):
        return {}
    try:
        keras = _keras()
        result = require_tuple("", fn(keras.ops.convert_to_tensor(x), axis=axis), 2)
        return {
            f"own_{label}": _tensor("", value).reshape(-1)
            for label, value in zip(("mean", "var"), result)
        }
    except Exception:  # moments' own test cell reports what is wrong with it
        return {}


# ============================================================ the inputs


def cases(inputs: dict) -> dict:
    """``{key: case}`` of a check's inputs: every value that is a dict is one case."""
    return {k: v for k, v in inputs.items() if isinstance(v, dict)}


def _off_centre(seed: int, shape, loc=5.0, scale=10.0):
    return off_centre(seed, shape, np.float32, loc, scale)


def _params(seed: int, c: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "gamma": rng.uniform(0.5, 2.0, c).astype(np.float32),
        "beta": rng.normal(0.0, 1.0, c).astype(np.float32),
    }


def _moving_values(seed: int, c: int, low=50.0, high=150.0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "moving_mean": rng.normal(5.0, 1.0, c).astype(np.float32),
        "moving_variance": rng.uniform(low, high, c).astype(np.float32),
    }


# ============================================================ 1. moments


def _moments_visible():
    x = np.array(
        [[1.0, 2.0, -1.0], [3.0, 6.0, -1.0], [5.0, 7.0, 2.0], [7.0, 9.0, 4.0]], dtype=np.float32
    )
    return {"a": {"x": x}}


def _moments_cases():
    return {
        "a": {"x": _off_centre(21, (32, 4))},
        "b": {"x": _off_centre(22, (4, 3, 3, 5))},
        "c": {"x": _off_centre(23, (4, 5, 3, 3)), "kwargs": {"axis": 1}},
        # a mean large next to the spread: E[x**2] - E[x]**2 loses the variance in float32
        "d": {"x": _off_centre(24, (64, 3), loc=1000.0, scale=1.0), "one_pass_fails": True},
    }


def _produce_moments(fn, inputs):
    keras = _keras()
    if not callable(fn):
        raise AssertionError(f"moments: expected a function, got {type(fn).__name__}")
    out = {}
    with _watch_keras_bn() as counts:
        for key, case in cases(inputs).items():
            x = keras.ops.convert_to_tensor(case["x"])
            kwargs = case.get("kwargs", {})
            result = require_tuple("the value returned by moments", fn(x, **kwargs), 2)
            for label, value in zip(("mean", "var"), result):
                out[f"{key}/{label}"] = _tensor(f"{label} (returned by moments)", value)
    out.update({f"facts/calls/{k}": np.array(v) for k, v in counts.items()})
    return out


PRODUCERS.add("moments_visible", "moments of a 4 x 3 batch", _moments_visible, _produce_moments)
PRODUCERS.add(
    "moments",
    "moments of off-centre 2-D and 4-D batches, channels last and first, "
    "and of a batch with mean 1000",
    _moments_cases,
    _produce_moments,
)


# ============================================================ 2. build: the weights


def _build_visible():
    return {"a": {"shape": (None, 3)}}


def _build_cases():
    return {
        "a": {"shape": (None, 4, 4, 6)},
        "b": {"shape": (None, 5, 4, 4), "kwargs": {"axis": 1}},
        "c": {"shape": (None, 3), "kwargs": {"center": False}},
        "d": {"shape": (None, 3), "kwargs": {"scale": False}},
    }


@_with_facts
def _produce_build(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        layer.build(case["shape"])
        weights = list(layer.weights)
        out[f"{key}/names"] = _strings(getattr(v, "name", "?") for v in weights)
        out[f"{key}/shapes"] = _strings(tuple(v.shape) for v in weights)
        out[f"{key}/trainable"] = np.array([bool(v.trainable) for v in weights], dtype=bool)
        out[f"{key}/dtypes"] = _strings(v.dtype for v in weights)
        for i, v in enumerate(weights):
            out[f"{key}/value{i}"] = _tensor(f"the value of weight {v.name!r}", v)
        attributes = []
        for name in WEIGHTS:
            value = _variable(layer, name)
            attributes.append(next((str(i) for i, v in enumerate(weights) if v is value), "-"))
        out[f"{key}/attributes"] = _strings(attributes)
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "build_visible",
    "build: the four weights of MyBatchNorm() for inputs (None, 3)",
    _build_visible,
    _produce_build,
)
PRODUCERS.add(
    "build", "build: 4-D inputs, axis=1, center=False and scale=False", _build_cases, _produce_build
)


# ============================================================ 3. training mode


def _training_visible():
    return {"a": {"x": _off_centre(31, (16, 3)), **_params(32, 3)}}


def _training_cases():
    return {
        "a": {"x": _off_centre(33, (4, 3, 3, 5)), **_params(34, 5)},
        "b": {"x": _off_centre(35, (4, 5, 3, 3)), **_params(36, 5), "kwargs": {"axis": 1}},
        # a large epsilon next to a small variance shows where epsilon goes
        "c": {
            "x": _off_centre(37, (10, 2), loc=1.0, scale=0.1),
            **_params(38, 2),
            "kwargs": {"epsilon": 0.5},
        },
        "d": {"x": _off_centre(39, (12, 4)), **_params(40, 4), "kwargs": {"center": False}},
    }


@_with_facts
def _produce_training(cls, inputs, uses):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out"] = _call(layer, case["x"], "layer(x, training=True)", training=True)
        out.update(_layer_facts(layer, f"{key}/layer"))
        axis = case.get("kwargs", {}).get("axis", -1)
        out.update({f"{key}/{k}": v for k, v in own_moments(uses, case["x"], axis).items()})
    return out


PRODUCERS.add(
    "training_visible",
    "training=True on off-centre (16, 3) data, gamma and beta set",
    _training_visible,
    _produce_training,
    depends=("moments",),
)
PRODUCERS.add(
    "training",
    "training=True on 4-D data (axis -1 and 1), a large epsilon, center=False",
    _training_cases,
    _produce_training,
    depends=("moments",),
)


# ============================================================ 4. the moving statistics


def _moving_visible():
    return {"a": {"batches": [_off_centre(41 + i, (16, 3)) for i in range(3)]}}


def _moving_cases():
    return {
        "a": {
            "batches": [_off_centre(44 + i, (4, 3, 3, 5)) for i in range(3)],
            "kwargs": {"momentum": 0.9},
        },
        "b": {
            "batches": [_off_centre(47 + i, (8, 4)) for i in range(2)],
            "kwargs": {"momentum": 0.0},
        },
        "c": {
            "batches": [_off_centre(49 + i, (4, 5, 3, 3)) for i in range(2)],
            "kwargs": {"axis": 1, "momentum": 0.8},
        },
    }


@_with_facts
def _produce_moving(cls, inputs, uses):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        axis = case.get("kwargs", {}).get("axis", -1)
        for step, x in enumerate(case["batches"]):
            _call(layer, x, "layer(x, training=True)", training=True)
            out.update(_moving(layer, f"{key}/step{step}"))
            out.update({f"{key}/step{step}/{k}": v for k, v in own_moments(uses, x, axis).items()})
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "moving_visible",
    "moving statistics after three training calls, default momentum",
    _moving_visible,
    _produce_moving,
    depends=("moments",),
)
PRODUCERS.add(
    "moving",
    "moving statistics with momentum 0.9, 0 and 0.8 (4-D, axis -1 and 1)",
    _moving_cases,
    _produce_moving,
    depends=("moments",),
)


# ============================================================ 5. inference mode


def _inference_visible():
    return {"a": {"x": _off_centre(51, (16, 3)), **_params(52, 3), **_moving_values(53, 3)}}


def _inference_cases():
    return {
        "a": {"x": _off_centre(54, (4, 3, 3, 5)), **_params(55, 5), **_moving_values(56, 5)},
        "b": {"x": _off_centre(57, (1, 3)), **_params(58, 3), **_moving_values(59, 3)},
        # a large epsilon next to small moving variances shows where epsilon goes
        "c": {
            "x": _off_centre(60, (6, 2), loc=1.0, scale=0.1),
            **_params(61, 2),
            **_moving_values(62, 2, low=0.01, high=0.05),
            "kwargs": {"epsilon": 0.5},
        },
        "d": {
            "x": _off_centre(63, (2, 5, 3, 3)),
            **_params(64, 5),
            **_moving_values(65, 5),
            "kwargs": {"axis": 1},
        },
    }


@_with_facts
def _produce_inference(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out_false"] = _call(
            layer, case["x"], "layer(x, training=False)", training=False
        )
        out[f"{key}/out_default"] = _call(layer, case["x"], "layer(x)")
        out.update(_moving(layer, f"{key}/after"))
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "inference_visible",
    "training=False and training left out, moving statistics set",
    _inference_visible,
    _produce_inference,
)
PRODUCERS.add(
    "inference",
    "inference on 4-D data (axis -1 and 1), a batch of one, a large epsilon",
    _inference_cases,
    _produce_inference,
)


# ============================================================ 6. trainable=False


def _trainable_visible():
    return {
        "a": {
            "x": _off_centre(71, (16, 3)),
            **_params(72, 3),
            **_moving_values(73, 3),
            "kwargs": {"momentum": 0.5},
        }
    }


def _trainable_cases():
    return {
        "a": {
            "x": _off_centre(74, (4, 3, 3, 5)),
            **_params(75, 5),
            **_moving_values(76, 5),
            "kwargs": {"momentum": 0.5},
        },
        # frozen inside a model trained with train_on_batch, then unfrozen
        "b": {
            "x": _off_centre(77, (16, 3)),
            **_params(78, 3),
            **_moving_values(79, 3),
            "kwargs": {"momentum": 0.5},
            "model": True,
        },
    }


@_with_facts
def _produce_trainable(cls, inputs):
    keras = _keras()
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        x = case["x"]
        layer = _new_layer(cls, case)
        layer.trainable = False
        if case.get("model"):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(x.shape[1:]), layer, keras.layers.Dense(1)])
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", jit_compile=False
            )
            model.train_on_batch(x, np.ones((x.shape[0], 1), dtype=np.float32))
            for name in ("gamma", "beta"):
                out[f"{key}/fit/{name}"] = _tensor(
                    f"MyBatchNorm.{name}", _required_variable(layer, name)
                )
            out.update(_moving(layer, f"{key}/fit"))
            layer.trainable = True
            out[f"{key}/out"] = _call(
                layer, x, "layer(x, training=True) after layer.trainable = True", training=True
            )
            # the same call on a layer that was never frozen, for comparison
            out[f"{key}/never_frozen"] = _call(
                _new_layer(cls, case), x, "layer(x, training=True)", training=True
            )
        else:
            out[f"{key}/out"] = _call(
                layer, x, "layer(x, training=True) with trainable=False", training=True
            )
            out.update(_moving(layer, f"{key}/after"))
            out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "trainable_visible",
    "trainable=False: training=True uses and keeps the moving statistics",
    _trainable_visible,
    _produce_trainable,
)
PRODUCERS.add(
    "trainable",
    "trainable=False on 4-D data, and frozen then unfrozen in a model",
    _trainable_cases,
    _produce_trainable,
)


# ============================================================ 7. get_config / from_config


def _config_visible():
    return {
        "a": {"x": _off_centre(81, (8, 3)), **_params(82, 3), **_moving_values(83, 3)},
        "b": {
            "x": _off_centre(84, (8, 3)),
            **_params(85, 3),
            **_moving_values(86, 3),
            "kwargs": {"momentum": 0.9, "epsilon": 0.01, "name": "bn"},
        },
    }


def _config_cases():
    return {
        "a": {
            "x": _off_centre(87, (4, 5, 3, 3)),
            **_params(88, 5),
            **_moving_values(89, 5),
            "kwargs": {
                "axis": 1,
                "momentum": 0.5,
                "epsilon": 0.1,
                "center": False,
                "name": "bn_first",
            },
        },
        "b": {
            "x": _off_centre(90, (8, 3)),
            **_params(91, 3),
            **_moving_values(92, 3),
            "kwargs": {"scale": False, "trainable": False, "name": "frozen"},
        },
    }


def _not_json(value):
    return f"<not JSON: {type(value).__name__}>"


def _config_json(label: str, config) -> np.ndarray:
    if type(config) is not dict:
        raise AssertionError(f"{label}: expected a dict, got {type(config).__name__}")
    try:
        return np.array(json.dumps(config, sort_keys=True, default=_not_json))
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{label} cannot be written as JSON: {err}") from None


@_with_facts
def _produce_config(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        out[f"{key}/config"] = _config_json("layer.get_config()", layer.get_config())
        clone = cls.from_config(json.loads(str(out[f"{key}/config"])))
        out[f"{key}/clone_class"] = np.array(type(clone).__name__)
        out[f"{key}/clone_is_instance"] = np.array(isinstance(clone, cls))
        if not isinstance(clone, cls):
            continue
        out[f"{key}/clone_config"] = _config_json("the clone's get_config()", clone.get_config())
        layer.build(tuple(case["x"].shape))
        for name in WEIGHTS:
            variable = _variable(layer, name)
            if variable is not None:
                variable.assign(case[name])
        clone.build(tuple(case["x"].shape))
        clone.set_weights(layer.get_weights())
        for who, obj in (("layer", layer), ("clone", clone)):
            out[f"{key}/{who}/train"] = _call(
                obj, case["x"], f"{who}(x, training=True)", training=True
            )
            out[f"{key}/{who}/infer"] = _call(obj, case["x"], f"{who}(x)")
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "config_visible",
    "get_config: Keras's defaults, and a round trip with momentum and epsilon",
    _config_visible,
    _produce_config,
)
PRODUCERS.add(
    "config",
    "get_config round trip: axis=1 with center=False, scale=False and frozen",
    _config_cases,
    _produce_config,
)


# ============================================================ 8. the tutorial's MLP


def _mlp_visible():
    return {"x": np.random.default_rng(101).random((4, *IMAGE)).astype(np.float32), "train": False}


def _mlp_cases():
    rng = np.random.default_rng(102)
    return {
        "x": rng.random((8, *IMAGE)).astype(np.float32),
        "y": rng.integers(0, CLASSES, 8),
        "train": True,
    }


def _kind(layer, cls, keras) -> str:
    """A layer as the structural check sees it."""
    if isinstance(layer, cls):
        return "MyBatchNorm"
    activation = getattr(getattr(layer, "activation", None), "__name__", "?")
    if isinstance(layer, keras.layers.Dense):
        return f"Dense({layer.units}, use_bias={layer.use_bias}, activation={activation})"
    if isinstance(layer, keras.layers.Activation):
        return f"Activation({activation})"
    if isinstance(layer, keras.layers.ReLU):
        return "Activation(relu)"
    return type(layer).__name__


def _count(variables) -> np.ndarray:
    return np.array(sum(int(np.prod(tuple(v.shape))) for v in variables))


@_with_facts
def _produce_mlp(obj, inputs):
    keras = _keras()
    fn, cls = require_tuple("the pair checked (build_mlp, MyBatchNorm)", obj, 2)
    if not callable(fn):
        raise AssertionError(f"build_mlp: expected a function, got {type(fn).__name__}")
    cls = _layer_class(cls)
    out = _class_facts(cls)
    keras.utils.set_random_seed(0)
    model = fn()
    if not isinstance(model, keras.Model):
        raise AssertionError(
            f"build_mlp() must return a Keras model (keras.Sequential), got {type(model).__name__}"
        )
    x = inputs["x"]
    out["probs"] = _tensor("the output of model(x)", model(x, training=False))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    out["layers"] = _strings(_kind(layer, cls, keras) for layer in layers)
    out["layer_classes"] = _strings(qualname(type(layer)) for layer in layers)
    out["trainable_params"] = _count(model.trainable_weights)
    out["non_trainable_params"] = _count(model.non_trainable_weights)
    if inputs["train"]:
        bn = next((layer for layer in layers if isinstance(layer, cls)), None)
        if bn is None:
            return out  # the judge says what is missing
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01),
            loss="sparse_categorical_crossentropy",
            jit_compile=False,
        )
        loss = model.train_on_batch(x, inputs["y"])
        out["loss"] = np.array(float(np.ravel(keras.ops.convert_to_numpy(loss))[0]))
        out["moving_mean"] = _tensor(
            "MyBatchNorm.moving_mean", _required_variable(bn, "moving_mean")
        )
    return out


PRODUCERS.add(
    "mlp_visible",
    "build_mlp: the layers, the parameter counts, the output",
    _mlp_visible,
    _produce_mlp,
)
PRODUCERS.add(
    "mlp", "build_mlp: one training step on 8 images gives a finite loss", _mlp_cases, _produce_mlp
)
