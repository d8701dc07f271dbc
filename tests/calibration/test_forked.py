"""Forked worker processes over shared memory (isrflow.calibration.forked) and the combine run
in them: the same results as one thread, failures raised in the parent with their type, no
worker left behind, forks beside idle threads, and threads where the budget is small."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest
from test_streaming import SHAPE, N, _reference, write_inputs

from isrflow.calibration import forked, routing
from isrflow.calibration.combine import CombineInput, CombineSettings, combine_files
from isrflow.calibration.forked import ForkedPool, SharedArena, can_fork
from isrflow.calibration.kernel import CombineOutput, Workspace, combine_stack
from isrflow.calibration.strips import load_rows as _LOAD_ROWS
from isrflow.infra.settings import ENV_COMPRESSION
from isrflow.io.exposure_io import read_exposure
from isrflow.model.errors import TruncatedCalibrationError, WorkerProcessError
from tests.fake_aws import use_fake_aws

pytestmark = pytest.mark.skipif(not can_fork(), reason="worker processes need os.fork")


@pytest.fixture(autouse=True)
def exact_files(monkeypatch):
    monkeypatch.setenv(ENV_COMPRESSION, "lossless")


@pytest.fixture
def inputs(tmp_path):
    return write_inputs(tmp_path)


# --- tasks run in the workers (module level: they travel by name) ----------------------------


def fill(array: np.ndarray, value: float) -> int:
    array[:] = value
    return os.getpid()


def fail(message: str) -> None:
    raise KeyError(message)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def identity(value: object) -> object:
    return value


class Unrebuildable(Exception):
    """Pickles, but cannot be rebuilt from its pickle (a keyword-only argument)."""

    def __init__(self, *, what: str):
        super().__init__(what)


def raise_unrebuildable() -> None:
    raise Unrebuildable(what="a bad plane")


def _reaped(pid: int) -> bool:
    """Whether ``pid`` was reaped by the pool (a zombie would still be this process's child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_workers_write_into_the_arena_and_the_parent_reads_it():
    arena = SharedArena(1 << 16)
    a, b = arena.empty((4, 100), np.float32), arena.empty(7, np.int16)
    assert a.ctypes.data % forked.ALIGN == 0 and b.ctypes.data % forked.ALIGN == 0
    with ForkedPool(2, arena) as pool:
        pids = pool.run(fill, [(a[:2], 1.5), (a[2:, ::-1], 2.5)])  # strided and reversed views too
        assert len(set(pids)) == 2 and os.getpid() not in pids
    assert (a[:2] == 1.5).all() and (a[2:] == 2.5).all()
    assert all(_reaped(p) for p in pids)


def test_arrays_outside_the_arena_and_an_exhausted_arena_are_refused():
    arena = SharedArena(1024)
    with pytest.raises(ValueError, match="not in the shared arena"):
        arena.describe(np.zeros(10))
    arena.empty(900, np.uint8)
    with pytest.raises(MemoryError, match="cannot hold 200 more"):
        arena.empty(200, np.uint8)


def test_a_task_error_is_raised_in_the_parent_with_its_type_and_the_pool_goes_on():
    arena = SharedArena(4096)
    out = arena.empty(8, np.float64)
    with ForkedPool(2, arena) as pool:
        with pytest.raises(KeyError, match="no such plane"):
            pool.run(fail, [("no such plane",), ("no such plane",)])
        pool.run(fill, [(out[:4], 1.0), (out[4:], 2.0)])
    assert out.tolist() == [1.0] * 4 + [2.0] * 4


def test_a_refused_task_sends_nothing_and_the_pool_goes_on():
    arena = SharedArena(4096)
    with ForkedPool(2, arena) as pool:
        with pytest.raises(ValueError, match="not in the shared arena"):
            pool.run(identity, [("first",), (np.zeros(3),)])  # the second is refused: none is sent
        with pytest.raises(TypeError, match="inside tuples only"):
            pool.run(identity, [([arena.empty(2, np.uint8)],)])  # a list would carry a copy
        assert pool.run(identity, [("second",), ("third",)]) == ["second", "third"]


def test_an_exception_the_parent_cannot_rebuild_arrives_as_its_text():
    with ForkedPool(1, SharedArena(64)) as pool:
        with pytest.raises(RuntimeError, match="Unrebuildable: a bad plane"):
            pool.run(raise_unrebuildable, [()])
        assert pool.run(identity, [(7,)]) == [7]


def _no_fork():
    raise BlockingIOError(11, "Resource temporarily unavailable")


def test_a_fork_that_fails_is_a_worker_process_error_and_the_combine_uses_threads(
    inputs,
    tmp_path,
    monkeypatch,
):
    monkeypatch.setattr(os, "fork", _no_fork)
    with pytest.raises(WorkerProcessError, match=r"cannot fork a worker process.*temporarily unavailable"):
        ForkedPool(2, SharedArena(64))
    report, master = _combine(inputs, tmp_path / "t.fits", threads=2, read_threads=2, budget_bytes=40 << 20)
    assert report.workers == "threads"
    want, _, want_n = _reference(inputs, "meanclip")
    assert np.allclose(master.image.ravel()[want_n > 0], want[want_n > 0], rtol=2e-6, atol=1e-4)


def test_a_worker_that_dies_is_named_and_the_rest_are_reaped():
    arena = SharedArena(4096)
    pool = ForkedPool(2, arena)
    pids = [pid for pid, _ in pool._workers]
    with pytest.raises(WorkerProcessError, match=rf"worker process {pids[0]} was killed by signal 9"):
        pool.run(die, [()])
    assert pool.processes == 0 and all(_reaped(p) for p in pids)  # a run cut short closes the pool
    with pytest.raises(WorkerProcessError, match="stopped"):
        pool.run(identity, [(1,)])


def test_workers_fork_beside_an_idle_thread_and_stop_with_the_pool():
    """As in a local runtime worker, whose parent watcher thread waits forever."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        arena = SharedArena(4096)
        out = arena.empty(2, np.float64)
        with ForkedPool(2, arena) as pool:
            pids = pool.run(fill, [(out[:1], 3.0), (out[1:], 4.0)])
    finally:
        stop.set()
        thread.join()
    assert out.tolist() == [3.0, 4.0] and all(_reaped(p) for p in pids)


@pytest.mark.parametrize("statistic", ["median", "mean", "meanclip"])
@pytest.mark.parametrize("with_variance", [True, False])
def test_combine_stack_in_processes_equals_one_thread(statistic, with_variance):
    rng = np.random.default_rng(5)
    m, p = 9, 5000
    arena = SharedArena(2 * m * p * 4 + p * 10 + 8 * forked.ALIGN)
    values = arena.empty((m, p), np.float32)
    values[:] = rng.normal(100.0, 5.0, (m, p))
    values[rng.random((m, p)) < 0.1] = np.nan  # partial pixels
    values[:, 7] = np.nan  # a pixel with nothing usable
    variances = arena.empty((m, p), np.float32) if with_variance else None
    if variances is not None:
        variances[:] = rng.uniform(20, 30, (m, p))
    want = combine_stack(values, variances, statistic)
    out = CombineOutput.empty(p, arena.empty)
    with Workspace(m, 700, 3, arena) as workspace:  # chunks of 700: several per worker
        assert workspace.uses_processes
        got = combine_stack(values, variances, statistic, out=out, workspace=workspace)
        with pytest.raises(ValueError, match="not in the shared arena"):
            combine_stack(values.copy(), variances, statistic, out=out, workspace=workspace)
    assert np.array_equal(got.image, want.image, equal_nan=True)
    assert np.array_equal(got.variance, want.variance, equal_nan=True)
    assert np.array_equal(got.n_used, want.n_used)


def _combine(inputs, path, **settings):
    files = [CombineInput(str(p), scale) for p, *_, scale in inputs]
    report = combine_files(files, str(path), "dark", CombineSettings(mask_planes=("BAD", "SAT"), **settings))
    return report, read_exposure(path)


@pytest.mark.parametrize("statistic", ["median", "meanclip"])
def test_combine_files_in_processes_equals_threads_and_the_reference(
    inputs, tmp_path, statistic, monkeypatch
):
    budget = 40 << 20  # room for the workers' private memory
    reports, masters = {}, {}
    for processes in (True, False):  # strips of 20 rows either way: several strips, two in flight
        whole = routing.strip_bytes(20, N, SHAPE[1], True, 2, 2, processes)
        assert 2 * whole <= budget
        monkeypatch.setattr(
            routing, "STRIP_TARGET_BYTES", whole - routing.fixed_bytes(N, 2, processes=processes)
        )
        kwargs = {"statistic": statistic, "threads": 2, "read_threads": 2, "budget_bytes": budget}
        reports[processes], masters[processes] = _combine(
            inputs, tmp_path / f"{processes}.fits", processes=processes, **kwargs
        )
    forked_report, forked_master = reports[True], masters[True]
    threads_report, threads_master = reports[False], masters[False]
    assert (forked_report.workers, threads_report.workers) == ("processes", "threads")
    assert forked_report.rows_per_strip == threads_report.rows_per_strip == 20
    assert forked_report.strips == threads_report.strips == 4
    for plane in ("image", "mask", "variance"):
        assert np.array_equal(getattr(forked_master, plane), getattr(threads_master, plane), equal_nan=True)
    want, _, want_n = _reference(inputs, statistic)
    good = want_n > 0
    assert np.allclose(forked_master.image.ravel()[good], want[good], rtol=2e-6, atol=1e-4)


def test_combine_files_uses_threads_when_the_budget_cannot_hold_worker_processes(inputs, tmp_path):
    small = routing.strip_bytes(SHAPE[0], N, SHAPE[1], True, 2, 2)  # whole frame in threads, not processes
    assert routing.strip_rows(small, N, SHAPE[1], True, 2, 2, processes=True) == 0
    report, master = _combine(inputs, tmp_path / "small.fits", threads=2, read_threads=2, budget_bytes=small)
    assert report.workers == "threads" and report.strips == 1
    forked_report, forked_master = _combine(
        inputs, tmp_path / "p.fits", threads=2, read_threads=2, budget_bytes=40 << 20
    )
    assert forked_report.workers == "processes"  # the default, where the budget holds them
    assert np.array_equal(master.image, forked_master.image, equal_nan=True)


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's /proc")
def test_a_worker_process_private_memory_is_within_the_memory_model():
    """Each worker's private pages (its chunk buffers, the heap pages it writes) stay within
    routing's per-process allowance: ``scratch_bytes`` of one thread's chunk + PROCESS_BYTES."""
    m, p = 16, 200_000
    arena = SharedArena(2 * m * p * 4 + p * 10 + 8 * forked.ALIGN)
    values, variances = arena.empty((m, p), np.float32), arena.empty((m, p), np.float32)
    rng = np.random.default_rng(2)
    values[:] = rng.normal(0.0, 1.0, (m, p))
    values[rng.random((m, p)) < 0.01] = np.nan
    variances[:] = 1.0
    out = CombineOutput.empty(p, arena.empty)
    chunk = routing.chunk_pixels(m, 1)
    with Workspace(m, chunk, 2, arena) as workspace:
        for statistic in ("median", "meanclip", "mean"):
            combine_stack(values, variances, statistic, out=out, workspace=workspace)
        # the parent maps every output page too, so that only the workers' own pages count as private
        assert np.isfinite(out.image).all() and out.variance.sum() > 0 and out.n_used.min() > 10
        private = []
        for pid, _ in workspace.forked._workers:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                fields = dict(line.split()[:2] for line in rollup if line.split()[0].endswith(":"))
            private.append(int(fields["Private_Dirty:"]) * 1024)
    allowance = routing.scratch_bytes(m, None, 1) + routing.PROCESS_BYTES
    assert max(private) <= allowance, (private, allowance)
    assert min(private) >= routing.scratch_bytes(m, None, 1) // 2  # the buffers were measured, not missed


def test_s3_inputs_are_read_by_the_parent_and_combined_by_the_workers(inputs, tmp_path, monkeypatch):
    """A worker reads local files itself, but not S3 (a client's connections must not cross a
    fork): S3 inputs are read by the parent's threads and combined by the workers, to the same master."""
    from moto import mock_aws

    from isrflow.calibration import strips
    from isrflow.io.mef import MefReader

    use_fake_aws(monkeypatch)
    parent_reads = []
    load_rows = strips.load_rows
    monkeypatch.setattr(
        "isrflow.calibration.combine.load_rows",
        lambda *a, **k: parent_reads.append(a[1]) or load_rows(*a, **k),
    )
    kwargs = {"threads": 2, "read_threads": 2, "budget_bytes": 40 << 20}
    file_report, file_master = _combine(inputs, tmp_path / "files.fits", **kwargs)
    assert file_report.workers == "processes" and not parent_reads  # the workers read the files
    with mock_aws():
        from isrflow.io.storage import S3Storage

        client = S3Storage().client
        client.create_bucket(Bucket="isr")
        on_s3 = []
        for path, *rest in inputs:
            client.put_object(Bucket="isr", Key=path.name, Body=path.read_bytes())
            on_s3.append((f"s3://isr/{path.name}", *rest))
        with MefReader.open(on_s3[0][0]) as s3_reader, MefReader.open(str(inputs[0][0])) as file_reader:
            assert not s3_reader.reads_locally and file_reader.reads_locally
            assert MefReader.from_bytes(inputs[0][0].read_bytes(), "bytes").reads_locally
        files = [CombineInput(uri, scale) for uri, *_, scale in on_s3]
        report = combine_files(
            files, str(tmp_path / "s3.fits"), "dark", CombineSettings(mask_planes=("BAD", "SAT"), **kwargs)
        )
    assert report.workers == "processes" and sorted(set(parent_reads)) == list(range(N))
    s3_master = read_exposure(tmp_path / "s3.fits")
    for plane in ("image", "mask", "variance"):
        assert np.array_equal(getattr(s3_master, plane), getattr(file_master, plane), equal_nan=True)


def _truncated_band(*args, **kwargs):
    if args[-1] > 0:  # row0: the second band of a strip
        raise TruncatedCalibrationError(f"{args[0].uri}: IMAGE is truncated (a test)")
    return _LOAD_ROWS(*args, **kwargs)


def test_a_worker_failing_mid_strip_raises_its_error_and_leaves_no_output(inputs, tmp_path, monkeypatch):
    from isrflow.calibration import strips

    monkeypatch.setattr(strips, "load_rows", _truncated_band)  # the workers inherit it at the fork
    out = tmp_path / "master.fits"
    with pytest.raises(TruncatedCalibrationError, match="truncated"):
        _combine(inputs, out, threads=2, read_threads=2, budget_bytes=40 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p, *_ in inputs)  # no partial file
