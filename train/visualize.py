"""Reconstruction grids: one row per image, columns clean | corrupted | reconstruction | mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def reconstruction_grid(clean, corrupted, reconstruction, mask, mean, std, rows: int = 8) -> np.ndarray:
    """Tensors (B, C, H, W) in normalised space and mask (B, H, W) -> uint8 grey grid (rows * H, 4 * W)."""

    def unit(x):
        x = x[:rows].float() * torch.tensor(std)[None, :, None, None] + torch.tensor(mean)[None, :, None, None]
        return x.mean(1).clamp(0, 1)

    panels = [unit(clean), unit(corrupted), unit(reconstruction), mask[:rows].float()]
    grid = torch.cat([torch.cat(list(panel), 0) for panel in panels], 1)
    return (grid.numpy() * 255).round().astype(np.uint8)


def save_grid(grid: np.ndarray, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid, mode="L").save(path)
    return path
