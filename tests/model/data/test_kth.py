"""KTH loader on fabricated frame folders in the authors' layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.kth import KTH, KTHLayoutError, find_videos, window_starts


def _video(root: Path, category: str, person: int, numbers: list[int]) -> None:
    """Frames 16 x 12 whose grey level is the frame number (so windows can be identified)."""
    folder = root / category / f"person{person:02d}_{category}_d1"
    folder.mkdir(parents=True)
    for number in numbers:
        Image.fromarray(np.full((12, 16), number, dtype=np.uint8)).save(folder / f"image_{number:04d}.png")


@pytest.fixture()
def kth_root(tmp_path: Path) -> Path:
    _video(tmp_path, "boxing", 1, list(range(1, 26)))  # 25 frames
    _video(tmp_path, "jogging", 1, list(range(1, 16)))  # 15 frames
    _video(tmp_path, "walking", 2, [n for n in range(1, 23) if n != 15])  # frame 15 missing
    _video(tmp_path, "handwaving", 16, list(range(1, 11)))
    _video(tmp_path, "running", 17, list(range(1, 14)))
    (tmp_path / "boxing" / "person01_boxing_d1" / "notes.txt").write_text("not a frame")
    return tmp_path


def test_windows_follow_the_authors_rules(kth_root: Path) -> None:
    videos = {v.folder.name: v for v in find_videos(kth_root, range(1, 26))}
    # Non-overlapping from the end: frames 16-25 and 6-15; 1-5 are left over.
    assert window_starts(videos["person01_boxing_d1"], 10) == [5, 15]
    # Every third frame from the end: windows ending at frames 15 and 12.
    assert window_starts(videos["person01_jogging_d1"], 10) == [2, 5]
    # Frame 15 missing: no window may span it; 16-22 is too short, 5-14 fits, walking back one by one.
    walking = videos["person02_walking_d1"]
    assert [walking.numbers[s] for s in window_starts(walking, 10)] == [5]
    assert window_starts(videos["person17_running_d1"], 10) == [0, 3]
    assert window_starts(videos["person17_running_d1"], 30) == []


def test_source_splits_by_person_and_reads_frames(kth_root: Path) -> None:
    source = KTH(root=kth_root, input_length=5, output_length=5, image_size=8)
    assert (source.split_size("train"), source.split_size("valid"), source.split_size("test")) == (5, 1, 2)
    test = list(source.eval_batches("test", 1))
    assert [b.shape for b in test] == [(1, 10, 1, 8, 8)] * 2
    # Grey level = frame number / 255: the second test window is frames 4..13 of person 17.
    np.testing.assert_allclose(test[1][0, :, 0, 0, 0], np.arange(4, 14) / 255.0, rtol=1e-6)
    assert test[1].dtype == np.float32
    batch = source.train_batch(0, 5)
    firsts = sorted(round(float(b[0, 0, 0, 0]) * 255) for b in batch)
    assert firsts == [3, 5, 6, 6, 16]  # one epoch = every training window once
    again = KTH(root=kth_root, input_length=5, output_length=5, image_size=8)
    np.testing.assert_array_equal(batch, again.train_batch(0, 5))


def test_ten_to_twenty_and_paper_split(kth_root: Path) -> None:
    source = KTH(root=kth_root, output_length=20, image_size=8,
                 train_persons=range(1, 17), valid_persons=())
    assert source.total_length == 30
    assert source.split_size("train") == 0 and source.split_size("test") == 0
    with pytest.raises(KTHLayoutError, match="no training windows of 30 frames"):
        source.train_batch(0, 1)
    with pytest.raises(ValueError, match="test persons"):
        KTH(root=kth_root, train_persons=range(1, 18))
    with pytest.raises(KTHLayoutError, match="not found"):
        KTH(root=kth_root / "absent")
