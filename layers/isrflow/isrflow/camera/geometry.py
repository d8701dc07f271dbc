"""IRAF/NOAO section strings <-> 0-based boxes.

A FITS section ``[x1:x2,y1:y2]`` is 1-based and inclusive; ``x1 > x2`` (or ``y1 > y2``) means
that axis runs backwards, i.e. the amplifier is flipped on that axis when placed by DETSEC.
"""

from __future__ import annotations

import re

from isrflow.camera.model import Box
from isrflow.model.errors import MissingHeaderKeywordError

_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


def parse_section(text: str, *, keyword: str = "section", source: str = "") -> tuple[Box, bool, bool]:
    """Parse ``[x1:x2,y1:y2]`` into (0-based box, flip_x, flip_y)."""
    match = _SECTION.match(str(text))
    if not match:
        where = f"{source}: " if source else ""
        raise MissingHeaderKeywordError(f"{where}{keyword} = {text!r} is not a [x1:x2,y1:y2] section")
    x1, x2, y1, y2 = (int(g) for g in match.groups())
    if min(x1, x2, y1, y2) < 1:
        raise MissingHeaderKeywordError(
            f"{source}: {keyword} = {text!r} has a 0 index (sections are 1-based)"
        )
    box = Box.of(min(x1, x2) - 1, min(y1, y2) - 1, abs(x2 - x1) + 1, abs(y2 - y1) + 1)
    return box, x1 > x2, y1 > y2


def format_section(box: Box, flip_x: bool = False, flip_y: bool = False) -> str:
    """The 1-based inclusive section string of a box, reversed on flipped axes."""
    xa, xb = box.x0 + 1, box.x1
    ya, yb = box.y0 + 1, box.y1
    if flip_x:
        xa, xb = xb, xa
    if flip_y:
        ya, yb = yb, ya
    return f"[{xa}:{xb},{ya}:{yb}]"
