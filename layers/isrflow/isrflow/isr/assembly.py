"""Orientation helpers: on-disk amplifier pixels <-> assembled detector <-> readout order."""

from __future__ import annotations

import numpy as np

from isrflow.camera.model import Amplifier


def flip(array: np.ndarray, flip_x: bool, flip_y: bool) -> np.ndarray:
    """A view of ``array`` flipped on the requested axes (no copy)."""
    if flip_x:
        array = array[:, ::-1]
    if flip_y:
        array = array[::-1, :]
    return array


def assembled_view(image: np.ndarray, amp: Amplifier) -> np.ndarray:
    """The amplifier's box of an assembled image (a view)."""
    return image[amp.assembled.slices]


def readout_view(image: np.ndarray, amp: Amplifier) -> np.ndarray:
    """The amplifier's assembled pixels in readout order: first pixel read at [0, 0] (a view).

    Assembled -> on-disk undoes the assembly flips; on-disk -> readout applies the readout
    corner's flips; the two compose to one flip per axis.
    """
    rx, ry = amp.readout_flips
    return flip(assembled_view(image, amp), amp.flip_x != rx, amp.flip_y != ry)


def place(dest: np.ndarray, amp: Amplifier, on_disk: np.ndarray) -> None:
    """Write an amplifier's on-disk data-box pixels into its assembled box, applying its flips."""
    dest[amp.assembled.slices] = flip(on_disk, amp.flip_x, amp.flip_y)
