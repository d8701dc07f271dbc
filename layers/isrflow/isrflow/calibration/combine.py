"""Streaming combination of one detector's ISR'd inputs into a master calibration.

:func:`combine_files` reads every input in bands of rows (strips), combines each strip with
:func:`isrflow.calibration.kernel.combine_stack` and writes it straight into the output file,
so memory is bounded by the strip budget (:mod:`isrflow.calibration.routing` has the memory
model) whatever the detector size or the number of inputs, like cp_pipe's sub-region
combination. Where the budget holds a second strip, reading the next strip and writing the
previous one overlap the combination of the current one (two strip buffers, the same strip
height, so the same master); otherwise the strips are read, combined and written in turn.
With several workers the strips are combined by forked worker processes
(:mod:`isrflow.calibration.forked`), which also read them, each a band of rows of every strip,
where the inputs are local files (:mod:`isrflow.calibration.strips`; S3 inputs are read by this
process's threads, many GETs in flight), while this process writes the previous strip; threads
read and combine where processes cannot be had (see ``CombineSettings.processes``).

Per input: values are divided by the input's scale (dark time for darks -> e-/s; the
Normalize exposure scale for flats; 1 for biases) and variances by its square; pixels whose
mask has any of the ``mask_planes`` bits, and non-finite pixels, are not used.

Variance: the kernel's (input variance planes, see :mod:`isrflow.calibration.kernel`) plus,
for each calibration the inputs' ISR subtracted (``common``), the part of its noise that the
inputs share: ISR added ``f^2 V`` to every input's variance, which the mean divides by
``n``, but an error common to all inputs does not average down, so
``f^2 V (fraction^2 - M fraction / n_used)`` is added (``M = pi/2`` for the median of more
than two values, else 1). Without it a master dark's residuals against the truth have a
standard deviation ~20% above its variance plane.

Output (the calibration MEF of :mod:`isrflow.io.formats`), only the planes ISR reads: IMAGE
(float32), MASK (int32: BAD where no input was usable, which ISR ORs into every frame; those
pixels' image and variance are set to the median of the rest of their strip, cp_pipe's rule)
and VARIANCE (float32: ISR adds it, scaled, to every frame's variance, and the next combine
reads it as the inputs' common noise), with provenance in the primary header: the inputs,
their scales, the statistic and the clipping parameters. NINPUTS (int16, the number of inputs
used per pixel) is written only with ``CombineSettings.ninputs_plane`` (a diagnostic: ISR
does not read it). Planes are compressed as :mod:`isrflow.io.compression` says.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from isrflow import __version__
from isrflow.calibration import routing
from isrflow.calibration import strips as strips_io
from isrflow.calibration.forked import SharedArena, can_fork
from isrflow.calibration.kernel import (
    STATISTICS,
    CombineOutput,
    Statistic,
    Workspace,
    combine_stack,
    default_threads,
)
from isrflow.calibration.mef_writer import MefWriter, PlaneSpec
from isrflow.calibration.strips import Strip, load_rows
from isrflow.io import formats
from isrflow.io.mef import MefReader
from isrflow.model.errors import (
    CalibrationError,
    CalibrationMismatchError,
    ConfigError,
    WorkerProcessError,
)

EXT_NINPUTS = "NINPUTS"


class CombineBudgetError(ConfigError):
    """The memory budget is too small for even one row of the inputs."""


@dataclass(frozen=True)
class CombineInput:
    """One input frame: where it is, what to divide it by, how to name it in the provenance."""

    uri: str
    scale: float = 1.0
    label: str = ""


@dataclass(frozen=True)
class CommonCalibration:
    """A calibration subtracted from (a fraction of) the inputs during their ISR, whose noise is
    therefore common to them and does not average down in the combination.

    ``uri`` is the calibration's MEF (its VARIANCE plane is read); ``fraction`` the fraction of
    the inputs it was subtracted from; ``factor2`` the mean over those inputs of the square of
    the factor it entered them with, after scaling (bias in a dark: ``1 / darktime^2``; dark in
    a flat: ``(darktime / scale)^2``).
    """

    uri: str
    fraction: float = 1.0
    factor2: float = 1.0


@dataclass
class CombineSettings:
    statistic: Statistic = "meanclip"
    clip: float = 3.0
    iterations: int = 3
    mask_planes: tuple[str, ...] = ("BAD", "SAT", "INTRP", "CR", "DETECTED", "NO_DATA")
    budget_bytes: int = 1 << 30
    threads: int = field(default_factory=default_threads)
    read_threads: int = 8
    #: Combine in ``threads`` forked worker processes (no GIL between them) when ``threads > 1``,
    #: the platform forks (Linux), the budget holds their private memory and they can be started;
    #: else in threads.
    processes: bool = True
    #: Also write the NINPUTS plane (inputs used per pixel; a diagnostic ISR does not read).
    ninputs_plane: bool = False


@dataclass
class CombineReport:
    """What a combine did: output, its size and checksum, strips, time."""

    output_uri: str
    size: int
    sha256: str
    shape: tuple[int, int]
    n_inputs: int
    rows_per_strip: int
    strips: int
    no_data_pixels: int
    seconds: float
    header: dict[str, Any]
    #: What combined the strips: "processes" (forked workers) or "threads" (one included).
    workers: str = "threads"


def mask_bits(planes: tuple[str, ...] | list[str]) -> int:
    bits = 0
    for plane in planes:
        if plane not in formats.MASK_BITS:
            raise ConfigError(
                f"mask_planes: unknown mask plane {plane!r} (known: {', '.join(formats.MASK_BITS)})"
            )
        bits |= 1 << formats.MASK_BITS[plane]
    return bits


def _check_inputs(readers: list[MefReader]) -> tuple[int, int]:
    first = readers[0]
    shape = first.shape
    inst, det = first.primary.get(formats.KW_INSTRUMENT), first.primary.get(formats.KW_DETECTOR)
    for r in readers[1:]:
        if r.shape != shape:
            raise CalibrationMismatchError(f"{r.uri}: IMAGE shape {r.shape} differs from {first.uri} {shape}")
        if r.primary.get(formats.KW_INSTRUMENT) != inst or r.primary.get(formats.KW_DETECTOR) != det:
            raise CalibrationMismatchError(
                f"{r.uri}: is {r.primary.get(formats.KW_INSTRUMENT)} detector {r.primary.get(formats.KW_DETECTOR)}, "
                f"not {inst} detector {det} like {first.uri}"
            )
    for r in readers:
        for name in (formats.EXT_MASK, formats.EXT_VARIANCE):
            if r.has(name) and r.image(name).shape != shape:
                raise CalibrationError(
                    f"{r.uri}: {name} shape {r.image(name).shape} differs from IMAGE {shape}"
                )
    return shape


def _header(
    readers: list[MefReader],
    inputs: list[CombineInput],
    calib_type: str,
    settings: CombineSettings,
    extra: dict[str, Any],
) -> dict[str, Any]:
    first = readers[0].primary
    header: dict[str, Any] = {}
    for key in (formats.KW_INSTRUMENT, formats.KW_DETECTOR, formats.KW_DETNAME):
        if key in first:
            header[key] = first[key]
    header[formats.KW_CALIB_TYPE] = calib_type
    if calib_type == "flat" and formats.KW_FILTER in first:
        header[formats.KW_FILTER] = first[formats.KW_FILTER]
    header[formats.KW_UNITS] = formats.CALIB_UNITS.get(calib_type, "")
    header[formats.KW_SOFTWARE] = (__version__, "isrflow version")
    begins = [str(r.primary["DATE-BEG"]) for r in readers if "DATE-BEG" in r.primary]
    ends = [str(r.primary["DATE-END"]) for r in readers if "DATE-END" in r.primary]
    if begins:
        header["DATE-BEG"] = (min(begins), "earliest input start")
    if ends:
        header["DATE-END"] = (max(ends), "latest input end")
    if calib_type == "dark":
        header["EXPTIME"] = (1.0, "per second of dark time")
        header[formats.KW_DARKTIME] = (1.0, "per second of dark time")
    header["CALIBDAT"] = (datetime.now(UTC).isoformat(timespec="seconds"), "creation time, UTC")
    header["CALIBSTA"] = (settings.statistic, "combine statistic")
    header["CALIBCLP"] = (float(settings.clip), "clip limit, sigma (meanclip)")
    header["CALIBNIT"] = (int(settings.iterations), "clipping passes (meanclip)")
    header["CALIBMSK"] = (",".join(settings.mask_planes), "input mask planes not used")
    header["NINPUTS"] = (len(inputs), "input frames")
    for i, (item, reader) in enumerate(zip(inputs, readers, strict=True)):
        exposure = reader.primary.get(formats.KW_EXPOSURE)
        header[f"HIERARCH CALIB INPUT {i}"] = item.label or (
            str(exposure) if exposure is not None else item.uri[-60:]
        )
        header[f"HIERARCH CALIB SCALE {i}"] = float(item.scale)
    header.update(extra)
    return header


def combine_files(
    inputs: list[CombineInput],
    output_uri: str,
    calib_type: str,
    settings: CombineSettings | None = None,
    extra_header: dict[str, Any] | None = None,
    common: list[CommonCalibration] | None = None,
) -> CombineReport:
    """Combine ``inputs`` (isrflow MEFs of one detector) into ``output_uri``; see the module docstring.

    Raises CalibrationError / CalibrationMismatchError for unusable inputs, ConfigError for bad
    settings and CombineBudgetError when ``settings.budget_bytes`` cannot hold one row. Nothing
    is written at ``output_uri`` unless the whole combine succeeds.
    """
    settings = settings or CombineSettings()
    if settings.statistic not in STATISTICS:
        raise ConfigError(f"unknown statistic {settings.statistic!r}; use one of {', '.join(STATISTICS)}")
    if not inputs:
        raise CalibrationError(f"{output_uri}: no inputs to combine")
    for item in inputs:
        if not (item.scale > 0 and np.isfinite(item.scale)):
            raise ConfigError(f"{item.uri}: scale must be a positive number, got {item.scale}")
    start = time.perf_counter()
    bits = mask_bits(settings.mask_planes)
    common = list(common or [])
    readers: list[MefReader] = []
    shared: list[MefReader] = []
    try:
        for item in inputs:
            readers.append(MefReader.open(item.uri))
        rows, cols = _check_inputs(readers)
        with_variance = all(r.has(formats.EXT_VARIANCE) for r in readers)
        kept_common = []
        for calib in common if with_variance else []:
            reader = MefReader.open(calib.uri)
            if not reader.has(formats.EXT_VARIANCE):  # a noiseless calibration added no variance in ISR
                reader.close()
                continue
            shared.append(reader)
            kept_common.append(calib)
            if reader.image(formats.EXT_VARIANCE).shape != (rows, cols):
                raise CalibrationMismatchError(
                    f"{calib.uri}: VARIANCE shape differs from the inputs' {(rows, cols)}"
                )
        common = kept_common
        n = len(inputs) + len(shared)  # for the memory model: a shared variance plane costs like an input
        read_threads = max(1, min(settings.read_threads, n))
        threads = max(1, settings.threads)
        # worker processes are forked before any thread of this combine starts (and not at all
        # where the budget cannot hold their private memory)
        processes = settings.processes and threads > 1 and can_fork()
        height = routing.strip_height(
            settings.budget_bytes, n, rows, cols, with_variance, threads, read_threads, processes
        )
        if height < 1 and processes:
            processes = False
            height = routing.strip_height(
                settings.budget_bytes, n, rows, cols, with_variance, threads, read_threads, False
            )
        if height < 1:
            need = routing.strip_bytes(1, n, cols, with_variance, threads, read_threads)
            raise CombineBudgetError(
                f"{output_uri}: a memory budget of {settings.budget_bytes / 2**20:.1f} MiB cannot hold one row of "
                f"{n} inputs of {cols} columns (needs {need / 2**20:.1f} MiB)"
            )
        header = _header(readers, inputs, calib_type, settings, extra_header or {})
        planes = [
            PlaneSpec(formats.EXT_IMAGE, ">f4"),
            PlaneSpec(formats.EXT_MASK, ">i4", formats.mask_plane_cards()),
            PlaneSpec(formats.EXT_VARIANCE, ">f4"),
        ]
        if settings.ninputs_plane:
            planes.append(PlaneSpec(EXT_NINPUTS, ">i2", [("BUNIT", "", "number of inputs used per pixel")]))
        # two strips in flight when the budget holds them (the next strip is read and the previous one
        # written while this one is combined), else one; the strip height is the same either way, so
        # the master is too
        # (counted as twice a whole combine's memory: the write's temporaries then overlap the kernel's)
        double = (
            rows > height
            and 2 * routing.strip_bytes(height, n, cols, with_variance, threads, read_threads, processes)
            <= settings.budget_bytes
        )
        copies = 2 if double else 1
        arena = (
            SharedArena(copies * routing.shared_strip_bytes(n, height, cols, with_variance))
            if processes
            else None
        )
        allocate = np.empty if arena is None else arena.empty
        buffers = [
            (Strip(n, height, cols, with_variance, allocate), CombineOutput.empty(height * cols, allocate))
            for _ in range(copies)
        ]
        strips = 0
        # every combining worker gets at least one chunk of each strip (worker processes take the
        # cache-sized chunk of one thread: they hand no GIL over)
        chunk_size = routing.chunk_pixels(len(inputs), 1 if processes else threads)
        chunk = max(1, min(chunk_size, -(-height * cols // threads)))
        m = len(inputs)
        starts = list(range(0, rows, height))
        # worker processes read their bands of each strip themselves where the inputs are local files
        # or bytes (registered before the fork); S3 inputs are read by this process's threads
        local = all(r.reads_locally for r in readers)
        number = strips_io.register(strips_io.Sources(readers, [i.scale for i in inputs], bits, buffers))
        try:
            workspace = Workspace(len(inputs), chunk, threads, arena)
        except WorkerProcessError:  # no process to be had (EAGAIN, ENOMEM): threads, on the same buffers
            workspace = Workspace(len(inputs), chunk, threads)
        finally:
            strips_io.unregister(number)  # the children have their copy; the parent needs none
        reading_workers = workspace.forked if local else None  # the workers that read their own bands
        with (
            workspace,
            MefWriter(output_uri, header, (rows, cols), planes) as writer,
            ThreadPoolExecutor(read_threads, thread_name_prefix="combine-read") as pool,
            (
                ThreadPoolExecutor(1, thread_name_prefix="combine-write") if double else nullcontext()
            ) as write_pool,
        ):

            def load(index: int) -> list:
                if reading_workers is not None:  # the workers read as they combine
                    return []
                y0, y1 = starts[index], min(rows, starts[index] + height)
                strip = buffers[index % len(buffers)][0]
                return [
                    pool.submit(load_rows, readers[i], i, inputs[i].scale, y0, y1, strip, bits)
                    for i in range(m)
                ]

            def write(y0: int, k: int, out: CombineOutput) -> int:
                return _write_strip(writer, y0, k, cols, out, settings.ninputs_plane)

            loading = load(0)
            writing: list = []  # the writes not yet waited for, oldest first
            no_data = 0
            for index, y0 in enumerate(starts):
                y1 = min(rows, y0 + height)
                k = y1 - y0
                for future in loading:
                    future.result()
                strip, result = buffers[index % len(buffers)]
                if double and index + 1 < len(starts):
                    loading = load(index + 1)  # into the other strip, free since its combine finished
                if len(writing) >= len(
                    buffers
                ):  # this strip's output buffer is free once its last write is done
                    no_data += writing.pop(0).result()
                out = CombineOutput(
                    result.image[: k * cols], result.variance[: k * cols], result.n_used[: k * cols]
                )
                if reading_workers is not None:  # each worker reads and combines a band
                    b = index % len(buffers)
                    stat, clip, passes = settings.statistic, settings.clip, settings.iterations
                    tasks = [
                        (number, b, y0, r0, r1, stat, clip, passes, chunk)
                        for r0, r1 in strips_io.bands(k, workspace.threads)
                    ]
                    reading_workers.run(strips_io.load_and_combine_band, tasks)
                else:
                    values = strip.values[:m, :k].reshape(m, k * cols)
                    variances = (
                        None if strip.variances is None else strip.variances[:m, :k].reshape(m, k * cols)
                    )
                    combine_stack(
                        values,
                        variances,
                        settings.statistic,
                        settings.clip,
                        settings.iterations,
                        out=out,
                        workspace=workspace,
                    )
                for j, (calib, reader) in enumerate(zip(common, shared, strict=True)):
                    _add_common(out, calib, reader, y0, y1, strip.values[m + j, :k], settings.statistic)
                if double:
                    assert write_pool is not None, "two strips in flight have a writer thread"
                    writing.append(write_pool.submit(write, y0, k, out))
                else:  # one strip at a time: nothing overlaps, as the budget requires
                    no_data += write(y0, k, out)
                    if index + 1 < len(starts):
                        loading = load(index + 1)
                strips += 1
            no_data += sum(future.result() for future in writing)
            size, sha = writer.commit()
    finally:
        for r in readers + shared:
            r.close()
    return CombineReport(
        output_uri=output_uri,
        size=size,
        sha256=sha,
        shape=(rows, cols),
        n_inputs=len(inputs),
        rows_per_strip=height,
        strips=strips,
        no_data_pixels=no_data,
        seconds=time.perf_counter() - start,
        header=header,
        workers="processes" if workspace.uses_processes else "threads",
    )


def _add_common(
    out: CombineOutput,
    calib: CommonCalibration,
    reader: MefReader,
    y0: int,
    y1: int,
    buffer: np.ndarray,
    statistic: str,
) -> None:
    """Add the shared part of a subtracted calibration's noise to the strip's variance."""
    variance = reader.read_rows(formats.EXT_VARIANCE, y0, y1, buffer).ravel()
    n = np.maximum(out.n_used, 1).astype(np.float32)
    m = (
        np.float32(1.0)
        if statistic != "median"
        else np.where(out.n_used > 2, np.float32(np.pi / 2), np.float32(1.0))
    )
    weight = np.float32(calib.factor2) * (
        np.float32(calib.fraction) ** 2 - m * np.float32(calib.fraction) / n
    )
    np.maximum(weight, np.float32(0.0), out=weight)
    out.variance += weight * variance


def _write_strip(writer: MefWriter, y0: int, rows: int, cols: int, out: CombineOutput, ninputs: bool) -> int:
    """Write one combined strip; pixels with no usable input get the strip's median and BAD."""
    shape = (rows, cols)
    none = out.n_used == 0
    count = int(none.sum())
    mask = np.zeros(rows * cols, dtype=np.int32)
    if count:
        mask[none] = formats.BAD
        if count < none.size:
            out.image[none] = np.median(out.image[~none])
            out.variance[none] = np.median(out.variance[~none])
        else:
            out.image[none] = 0.0
            out.variance[none] = 0.0
    writer.write_rows(formats.EXT_IMAGE, y0, out.image.reshape(shape))
    writer.write_rows(formats.EXT_MASK, y0, mask.reshape(shape))
    del mask
    writer.write_rows(formats.EXT_VARIANCE, y0, out.variance.reshape(shape))
    if ninputs:
        writer.write_rows(EXT_NINPUTS, y0, out.n_used.reshape(shape))
    return count
