"""Files the tests write themselves: small datasets (tests/test_data*.py), npm tarballs
(tests/test_npm.py, tests/test_book_tools.py), and a loopback HTTP server to serve them."""

import gzip
import tarfile
import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np

from bncourse import data


# ----------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 00 00 08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_dataset(seed: int, n_train: int = 12, n_test: int = 6):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    return (x_train, y_train), (x_test, y_test)


def write_idx_set(directory: Path, dataset, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = dataset
    for stem, array in zip(data.IDX_FILES, (x_train, y_train, x_test, y_test)):
        raw = idx_bytes(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)
    return directory


def write_mnist_npz(path: Path, dataset) -> Path:
    (x_train, y_train), (x_test, y_test) = dataset
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_kmnist_npz(directory: Path, dataset) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = dataset
    for fname, array in zip(data.KMNIST_NPZ_FILES, (x_train, y_train, x_test, y_test)):
        np.savez_compressed(directory / fname, array)
    return directory


def assert_same(loaded, expected):
    for (xa, ya), (xb, yb) in zip(loaded, expected):
        assert xa.dtype == np.uint8 and ya.dtype == np.uint8
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


class Server:
    """A loopback HTTP server for files in a directory, in a background thread."""

    def __init__(self, directory: Path):
        handler = lambda *a, **kw: QuietHandler(*a, directory=str(directory), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def npm_tarball(path: Path, members: dict) -> str:
    """Write a .tgz with ``members`` ({name: bytes}), as npm packs one; return its SHA-256."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return hashlib.sha256(path.read_bytes()).hexdigest()
