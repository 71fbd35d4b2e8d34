import numpy as np
import pytest
import torch

from model.network.patch import from_patches, pad_to_multiple, to_patches


def reference_reshape_patch(frames_bthwc: np.ndarray, p: int) -> np.ndarray:
    """The authors' layout, written from the spec: (B,T,H,W,C) -> (B,T,H/p,W/p,p*p*C)."""
    b, t, h, w, c = frames_bthwc.shape
    x = frames_bthwc.reshape(b, t, h // p, p, w // p, p, c)
    x = x.transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h // p, w // p, p * p * c)


def test_channel_order_on_hand_built_example():
    # 1 x 1 x C=2 x 4 x 4 grid, p = 2; pixel value encodes (c, y, x).
    frames = torch.zeros(1, 1, 2, 4, 4)
    for c in range(2):
        for y in range(4):
            for x in range(4):
                frames[0, 0, c, y, x] = 100 * c + 10 * y + x
    patches = to_patches(frames, 2)
    assert patches.shape == (1, 1, 8, 2, 2)
    # Patch (hy=1, wx=0) covers rows 2-3, columns 0-1. Channel (py*p + px)*C + c.
    for py in range(2):
        for px in range(2):
            for c in range(2):
                expected = 100 * c + 10 * (2 + py) + (0 + px)
                assert patches[0, 0, (py * 2 + px) * 2 + c, 1, 0].item() == expected


@pytest.mark.parametrize("p,c,h,w", [(4, 1, 16, 16), (2, 3, 6, 10), (1, 2, 5, 7), (4, 1, 8, 24)])
def test_matches_reference_layout_and_round_trips(p, c, h, w):
    rng = np.random.default_rng(0)
    frames = rng.random((2, 3, c, h, w)).astype(np.float32)
    ours = to_patches(torch.from_numpy(frames), p).numpy()  # (B,T,pC,h,w)
    theirs = reference_reshape_patch(frames.transpose(0, 1, 3, 4, 2), p)  # (B,T,h,w,pC)
    np.testing.assert_array_equal(ours, theirs.transpose(0, 1, 4, 2, 3))
    back = from_patches(torch.from_numpy(ours), p).numpy()
    np.testing.assert_array_equal(back, frames)


def test_indivisible_grid_is_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        to_patches(torch.zeros(1, 1, 1, 10, 8), 4)


def test_pad_to_multiple_pads_bottom_right_with_zeros():
    x = torch.ones(1, 2, 1, 5, 7)
    padded, size = pad_to_multiple(x, 4)
    assert size == (5, 7)
    assert padded.shape == (1, 2, 1, 8, 8)
    assert padded[..., :5, :7].eq(1).all() and padded[..., 5:, :].eq(0).all() and padded[..., :, 7:].eq(0).all()
    same, _ = pad_to_multiple(torch.ones(1, 1, 1, 8, 8), 4)
    assert same.shape == (1, 1, 1, 8, 8)
