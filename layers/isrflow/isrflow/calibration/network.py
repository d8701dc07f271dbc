"""Comparator networks that order a stack of pixel planes: sorting, and selection of some ranks.

A stack chunk is an ``(N, c)`` float32 array (``N`` input frames of the same ``c`` pixels). A
comparator ``(i, j)``, ``i < j``, replaces planes ``i`` and ``j`` by their elementwise
minimum and maximum; applied in the order of :func:`sorting_network` the comparators sort every
pixel's ``N`` values, so rank ``k`` of each pixel is plane ``k``. One numpy call handles a
whole plane, so no per-pixel Python runs.

Most statistics need only a few ranks (the median: ``(N - 1) // 2`` and ``N // 2``; the
quartiles: two more pairs). :func:`selection_network` keeps only the comparators that can
change those ranks, and of each kept comparator only the half (minimum or maximum) that is
used afterwards: for the median of 16 values 92 of the 126 plane operations of the full sort.
The ranks it delivers are exactly the sorted values (the kept operations are those of the
sort, on the same values, in the same order).

:func:`compile_network` turns such a network into few numpy calls: the comparators of one
layer of Batcher's network touch disjoint positions, so those of a layer with the same
distance ``j - i`` (and the same banks, below) are one ``minimum`` or ``maximum`` over a
strided block of rows (``(count, length, c)`` views). The work buffer has two banks of ``N``
rows; a layer writes its minima into the other bank (the maxima still read both inputs) and
its maxima in place, so no value is copied. For the median of 16 values: 41 calls instead of
126 (:func:`block_views` makes the views once per buffer). Units are those of the values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Plane operations: elementwise minimum, elementwise maximum.
MIN, MAX = 0, 1


@cache
def batcher_layers(n: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Batcher's odd-even merge sort for ``n`` inputs as layers of comparators ``(i, j)``,
    ``i < j``; the comparators of one layer touch disjoint positions."""
    layers: list[tuple[tuple[int, int], ...]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            layer = [
                (i + j, i + j + k)
                for j in range(k % p, n - k, 2 * k)
                for i in range(min(k, n - j - k))
                if (i + j) // (2 * p) == (i + j + k) // (2 * p)
            ]
            if layer:
                layers.append(tuple(layer))
            k //= 2
        p *= 2
    return tuple(layers)


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators ``(i, j)``, ``i < j``, for ``n`` inputs.

    Replacing ``a[i], a[j]`` by their minimum and maximum for every pair, in order, sorts any
    ``n`` values.
    """
    return tuple(pair for layer in batcher_layers(n) for pair in layer)


Comparator = tuple[int, int, bool, bool]


@cache
def selection_layers(n: int, ranks: frozenset[int]) -> tuple[tuple[Comparator, ...], ...]:
    """The comparators of :func:`batcher_layers` that can change ``ranks`` of ``n`` values.

    Each is ``(i, j, low, high)``: ``low`` (``high``) when the minimum (maximum) it puts at
    position ``i`` (``j``) is used later. Applying the minimum where ``low`` and the maximum
    where ``high``, in order, leaves at every position of ``ranks`` its sorted value.
    """
    if not all(0 <= r < n for r in ranks):
        raise ValueError(f"ranks {sorted(ranks)} outside 0..{n - 1}")
    live = set(ranks)
    kept: list[tuple[Comparator, ...]] = []
    for layer in reversed(batcher_layers(n)):
        now = [(i, j, i in live, j in live) for i, j in layer if i in live or j in live]
        for i, j, _, _ in now:
            live.update((i, j))
        if now:
            kept.append(tuple(now))
    return tuple(reversed(kept))


def selection_network(n: int, ranks: frozenset[int]) -> tuple[Comparator, ...]:
    """:func:`selection_layers` as one sequence of comparators."""
    return tuple(c for layer in selection_layers(n, ranks) for c in layer)


#: One plane operation over a block of rows: ``(op, step, count, length, a, b, out)``; each of
#: ``a``, ``b``, ``out`` is a first row ``r0`` and the block is rows ``r0 + step t + u`` for
#: ``t < count``, ``u < length``, of the work buffer's ``2 n`` rows.
Block = tuple[int, int, int, int, int, int, int]


@dataclass(frozen=True)
class Program:
    """A selection network as block operations on a work buffer of ``2 n`` rows (two banks of
    ``n``: position ``i`` lives in row ``i`` or ``n + i``); the input goes in rows ``0..n-1``,
    and rank ``k`` is in row ``rank_rows[k]`` at the end (-1: not delivered)."""

    n: int
    blocks: tuple[Block, ...]
    rank_rows: tuple[int, ...]


def _runs(starts: list[int]) -> list[tuple[int, int, int, int]]:
    """Cover sorted row numbers by blocks ``(r0, step, count, length)`` (runs of consecutive
    rows, runs of one length at a constant step grouped), few as possible greedily."""
    runs: list[list[int]] = []
    for r in starts:
        if runs and r == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([r, 1])
    blocks: list[tuple[int, int, int, int]] = []
    for r0, length in runs:
        if blocks:
            b0, step, count, blen = blocks[-1]
            if blen == length and (count == 1 or r0 - b0 == step * count):
                blocks[-1] = (b0, r0 - b0 if count == 1 else step, count + 1, blen)
                continue
        blocks.append((r0, length, 1, length))
    return blocks


@cache
def compile_network(n: int, ranks: frozenset[int]) -> Program:
    """The selection network of ``ranks`` of ``n`` values as block operations.

    Each layer's minima are written to the other bank (both inputs are still read by the
    maxima), its maxima and one-sided minima in place; the operations of a layer that share
    a kind, banks and comparator distance become one numpy call on a strided block of rows.
    """
    bank = [0] * n  # position -> bank (0 or 1); the input starts in bank 0
    blocks: list[Block] = []
    for layer in selection_layers(n, ranks):
        groups: dict[tuple[int, int, int, int, int, bool], list[int]] = {}
        for i, j, low, high in layer:
            bi, bj = bank[i], bank[j]
            if low:
                out_bank = 1 - bi if high else bi
                groups.setdefault((MIN, j - i, bi, bj, out_bank, True), []).append(i)
            if high:
                groups.setdefault((MAX, j - i, bi, bj, bj, False), []).append(i)
            if low and high:
                bank[i] = 1 - bi
        for op in (MIN, MAX):  # every minimum of the layer before its maxima overwrite their inputs
            for (kind, k, bi, bj, bo, at_i), starts in groups.items():
                if kind != op:
                    continue
                for r0, step, count, length in _runs(sorted(starts)):
                    out = r0 + bo * n + (0 if at_i else k)
                    blocks.append((op, step, count, length, r0 + bi * n, r0 + k + bj * n, out))
    rank_rows = [-1] * n
    for k in ranks:
        rank_rows[k] = k + bank[k] * n
    return Program(n, tuple(blocks), tuple(rank_rows))


#: A block operation ready to run: (ufunc, a, b, out) views of the work buffer.
View = tuple[np.ufunc, np.ndarray, np.ndarray, np.ndarray]


def block_views(program: Program, buffer: np.ndarray) -> Iterator[View]:
    """``program``'s blocks as (ufunc, a, b, out) views of ``buffer`` (``(2 n, c)``, C-contiguous),
    one at a time; kept in a list, they make :func:`run_views` one numpy call per block."""
    rows, c = buffer.shape
    rs, cs = buffer.strides
    for op, step, count, length, a, b, out in program.blocks:

        def view(r0: int, step: int = step, count: int = count, length: int = length) -> np.ndarray:
            if count == 1:
                return buffer[r0 : r0 + length]
            if r0 + step * (count - 1) + length > rows:
                raise ValueError(f"block of rows {r0} + {step} t + u outside the buffer's {rows}")
            # a strided view made directly on the buffer (as_strided's views take 6x the memory)
            return np.ndarray(
                (count, length, c), buffer.dtype, buffer=buffer, offset=r0 * rs, strides=(step * rs, rs, cs)
            )

        ufunc: np.ufunc = np.minimum if op == MIN else np.maximum
        yield ufunc, view(a), view(b), view(out)


def run_views(views: Iterable[View]) -> None:
    """Apply the block operations of :func:`block_views`, in order."""
    for ufunc, a, b, out in views:
        ufunc(a, b, out=out)


def median_ranks(n: int) -> frozenset[int]:
    """Ranks the median of ``n`` values needs: ``(n - 1) // 2`` and ``n // 2``."""
    return frozenset({(n - 1) // 2, n // 2})


def quantile_ranks(n: int, quantiles: Iterable[float]) -> frozenset[int]:
    """Ranks that linear interpolation at index ``q (n - 1)`` needs, for every ``q``."""
    ranks: set[int] = set()
    for q in quantiles:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        ranks.add(lo)
        if pos > lo:
            ranks.add(min(lo + 1, n - 1))
    return frozenset(ranks)
