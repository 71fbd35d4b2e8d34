"""Space-to-depth ("patches") as in the authors' ``reshape_patch``, and padding to a patch multiple.

Interface
---------
to_patches(frames, p)      (B, T, C, H, W)        -> (B, T, p*p*C, H/p, W/p)
from_patches(patches, p)   (B, T, p*p*C, H/p, W/p) -> (B, T, C, H, W)

The channel index of pixel ``(py, px)`` inside a patch, for image channel ``c``, is
``(py * p + px) * C + c``: exactly the order of the reference's (B, T, H, W, C) layout, so
weights trained by the authors see the same channels here. H and W must be divisible by p;
``pad_to_multiple`` makes them so (zeros at the bottom and right, cropped off afterwards).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_patches(frames: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Fold each p x p block of pixels into channels. frames: (B, T, C, H, W)."""
    b, t, c, h, w = frames.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"grid {h}x{w} is not divisible by the patch size {p}")
    x = frames.reshape(b, t, c, h // p, p, w // p, p)  # (B, T, C, Hp, py, Wp, px)
    x = x.permute(0, 1, 4, 6, 2, 3, 5)  # (B, T, py, px, C, Hp, Wp)
    return x.reshape(b, t, p * p * c, h // p, w // p)


def from_patches(patches: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Exact inverse of :func:`to_patches`. patches: (B, T, p*p*C, H/p, W/p)."""
    b, t, pc, hp, wp = patches.shape
    p = patch_size
    if pc % (p * p):
        raise ValueError(f"{pc} channels is not a multiple of patch_size**2 = {p * p}")
    c = pc // (p * p)
    x = patches.reshape(b, t, p, p, c, hp, wp)  # (B, T, py, px, C, Hp, Wp)
    x = x.permute(0, 1, 4, 5, 2, 6, 3)  # (B, T, C, Hp, py, Wp, px)
    return x.reshape(b, t, c, hp * p, wp * p)


def pad_to_multiple(frames: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad H and W of (..., H, W) up to a multiple; returns the padded tensor and (H, W) to crop back to.

    Zero is "no echo" in model space, so the padding adds no rain at the domain edge.
    """
    h, w = frames.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        frames = F.pad(frames, (0, pad_w, 0, pad_h))
    return frames, (h, w)
