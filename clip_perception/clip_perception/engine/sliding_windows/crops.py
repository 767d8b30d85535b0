"""
Cut and resize all windows of a frame on the device, batched.

Windows of one size form a group. For each group the frame is resized once so
that the window becomes exactly crop×crop pixels (bicubic, antialiased), and
all its windows are then gathered from that resized frame in one indexing
operation. Resizing the frame instead of each crop is equivalent up to the
filter's border taps, and shares the work of overlapping windows.
Non-square windows are squashed to a square, like the full-frame window.
"""
from clip_perception.engine.preprocess import Normalizer, resize_bicubic
import numpy as np
import torch


def crop_batch(frame: torch.Tensor, windows: np.ndarray, crop: int,
               normalize: Normalizer) -> torch.Tensor:
    """[3, H, W] uint8 frame and [N, 4] xyxy windows -> [N, 3, crop, crop] normalized."""
    return normalize(crop_pixels(frame, windows, crop))


def crop_pixels(frame: torch.Tensor, windows: np.ndarray, crop: int) -> torch.Tensor:
    """[3, H, W] uint8 frame and [N, 4] xyxy windows -> [N, 3, crop, crop] float 0..255."""
    _, height, width = frame.shape
    sizes = windows[:, 2:] - windows[:, :2]  # [N, 2] = (w, h)
    out = torch.empty((len(windows), 3, crop, crop), device=frame.device)
    offsets = torch.arange(crop, device=frame.device)
    for win_w, win_h in np.unique(sizes, axis=0):
        members = np.flatnonzero((sizes[:, 0] == win_w) & (sizes[:, 1] == win_h))
        scale_x, scale_y = crop / win_w, crop / win_h
        new_w = max(crop, round(width * scale_x))
        new_h = max(crop, round(height * scale_y))
        resized = resize_bicubic(frame, new_h, new_w)
        x0 = np.clip(np.round(windows[members, 0] * scale_x), 0, new_w - crop)
        y0 = np.clip(np.round(windows[members, 1] * scale_y), 0, new_h - crop)
        rows = torch.as_tensor(y0, device=frame.device).long()[:, None] + offsets  # [n, crop]
        cols = torch.as_tensor(x0, device=frame.device).long()[:, None] + offsets
        crops = resized[:, rows[:, :, None], cols[:, None, :]]  # [3, n, crop, crop]
        out[torch.as_tensor(members, device=frame.device)] = crops.permute(1, 0, 2, 3)
    return out
