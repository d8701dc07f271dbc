"""The calibration cache of warm workers (isrflow.io.calib_cache): tiers, budgets, staleness,
corrupted copies and several processes sharing one directory."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import FakeS3, altered, calib_bytes, populate_in_child, ref_for, variants

from isrflow.io import calib_cache
from isrflow.io.calib_cache import CacheConfig, CalibrationCache, calibration_cache
from isrflow.io.datastore import path_to_uri
from isrflow.io.exposure_io import read_exposure
from isrflow.local.sam_template import load_template
from isrflow.model.errors import ChecksumMismatchError, ConfigError

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
MiB = 2**20


class Ticks:
    """An injected wall clock: one second later on every call."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def s3(monkeypatch):
    store = FakeS3()
    real = calib_cache.storage_for
    monkeypatch.setattr(
        calib_cache, "storage_for", lambda uri: store if uri.startswith("s3://") else real(uri)
    )
    return store


def make_cache(directory: Path, *, memory: int = 64 * MiB, disk: int = 64 * MiB) -> CalibrationCache:
    return CalibrationCache(
        CacheConfig(directory=directory, disk_bytes=disk, memory_bytes=memory), clock=Ticks()
    )


def decoded_bytes(fetched) -> int:
    e = fetched.item.exposure
    return sum(a.nbytes for a in (e.image, e.mask, e.variance) if a is not None)


# --------------------------------------------------------------------------- hits and misses


def test_a_miss_then_memory_hits_then_a_disk_hit_in_another_process(s3, small_night, tmp_path):
    data = calib_bytes(small_night, "bias")
    ref = ref_for(s3, "bias.fits", data)
    cache = make_cache(tmp_path / "c")
    first = cache.get("bias", ref)
    assert (first.source, first.datastore_bytes) == ("datastore", len(data))
    again = cache.get("bias", ref)
    assert (again.source, again.datastore_bytes) == ("memory", 0) and again.item is first.item
    other = make_cache(tmp_path / "c")  # another warm process on the same disk: its memory is empty
    third = other.get("bias", ref)
    assert third.source == "disk"
    np.testing.assert_array_equal(third.item.exposure.image, first.item.exposure.image)
    assert s3.gets == 1 and s3.bytes_read == len(data)
    c = cache.counters
    assert (c.misses, c.memory_hits, c.disk_hits, c.datastore_bytes) == (1, 1, 0, len(data))
    assert (other.counters.disk_hits, other.counters.misses) == (1, 0)


def test_shared_arrays_are_read_only(s3, small_night, tmp_path):
    fetched = make_cache(tmp_path / "c").get(
        "dark", ref_for(s3, "dark.fits", calib_bytes(small_night, "dark"))
    )
    with pytest.raises(ValueError, match="read-only"):
        fetched.item.exposure.image[0, 0] = 1.0


def test_without_configuration_every_cluster_reads_the_datastore(s3, small_night, tmp_path):
    ref = ref_for(s3, "bias.fits", calib_bytes(small_night, "bias"))
    cache = CalibrationCache(CacheConfig())
    assert [cache.get("bias", ref).source for _ in range(2)] == ["datastore", "datastore"]
    assert s3.gets == 2 and cache.disk is None


def test_a_calibration_without_registered_checksum_is_used_but_never_cached(s3, small_night, tmp_path):
    ref = ref_for(s3, "bias.fits", calib_bytes(small_night, "bias"), sha256=None)
    cache = make_cache(tmp_path / "c")
    assert [cache.get("bias", ref).source for _ in range(2)] == ["datastore", "datastore"]
    assert not list((tmp_path / "c").glob("*.calib"))


# --------------------------------------------------------------------------- budgets


def test_memory_tier_evicts_least_recently_used_within_its_budget(s3, small_night, tmp_path):
    same_size = dict(
        zip(("bias", "dark", "flat"), variants(calib_bytes(small_night, "bias"), 3), strict=False)
    )
    refs = {k: ref_for(s3, f"{k}.fits", v) for k, v in same_size.items()}
    size = decoded_bytes(make_cache(tmp_path / "probe").get("bias", refs["bias"]))
    cache = make_cache(tmp_path / "c", memory=2 * size, disk=0)  # room for two decoded calibrations
    cache.get("bias", refs["bias"])
    cache.get("dark", refs["dark"])
    assert cache.get("bias", refs["bias"]).source == "memory"  # bias is now the most recently used
    cache.get("flat", refs["flat"])  # evicts dark, not bias
    assert cache.memory.used <= 2 * size
    held = {k for k, _ in cache.memory.keys()}  # noqa: SIM118 (a cache tier, not a dict)
    assert held == {str(refs["bias"].id), str(refs["flat"].id)}
    assert cache.get("bias", refs["bias"]).source == "memory"
    assert cache.get("dark", refs["dark"]).source == "datastore"
    assert cache.memory.evictions == 2


def test_disk_tier_evicts_least_recently_used_within_its_budget(s3, small_night, tmp_path):
    data = dict(zip(("bias", "dark", "flat"), variants(calib_bytes(small_night, "bias"), 3), strict=False))
    refs = {k: ref_for(s3, f"{k}.fits", v) for k, v in data.items()}
    budget = len(data["bias"]) + len(data["dark"])
    directory = tmp_path / "c"
    cache = make_cache(directory, memory=0, disk=budget)
    cache.get("bias", refs["bias"])
    cache.get("dark", refs["dark"])
    assert cache.get("bias", refs["bias"]).source == "disk"  # touched: dark is now the oldest
    cache.get("flat", refs["flat"])
    assert cache.disk.used <= budget
    names = {p.name for p in directory.glob("*.calib")}
    assert names == {cache.disk.path((str(refs[k].id), refs[k].sha256)).name for k in ("bias", "flat")}
    assert cache.get("dark", refs["dark"]).source == "datastore"


def test_a_file_larger_than_the_disk_budget_is_used_but_not_stored(s3, small_night, tmp_path):
    data = calib_bytes(small_night, "bias")
    cache = make_cache(tmp_path / "c", memory=0, disk=len(data) - 1)
    assert cache.get("bias", ref_for(s3, "bias.fits", data)).source == "datastore"
    assert not list((tmp_path / "c").glob("*.calib"))


# --------------------------------------------------------------------------- never stale, never corrupt


def test_a_recertified_calibration_is_never_served_from_an_older_copy(s3, small_night, tmp_path):
    v1, v2 = variants(calib_bytes(small_night, "bias"), 2)
    old = ref_for(s3, "bias-v1.fits", v1)
    cache = make_cache(tmp_path / "c")
    np.testing.assert_array_equal(cache.get("bias", old).item.exposure.image, read_exposure(v1).image)
    # a new dataset for the same data id (a recertification), with other content
    new = ref_for(s3, "bias-v2.fits", v2)
    assert new.data_id == old.data_id and new.sha256 != old.sha256
    fetched = cache.get("bias", new)
    assert fetched.source == "datastore"
    np.testing.assert_array_equal(fetched.item.exposure.image, read_exposure(v2).image)
    # the same dataset id whose registered checksum changed: a new key too, in memory and on disk
    same_id = ref_for(s3, "bias-v1.fits", v2, dataset_id=old.id)
    assert cache.get("bias", same_id).source == "datastore"
    warm = make_cache(tmp_path / "c")
    got = warm.get("bias", same_id)
    assert got.source == "disk" and got.item.sha256 == same_id.sha256
    np.testing.assert_array_equal(got.item.exposure.image, read_exposure(v2).image)


def test_a_corrupted_disk_copy_is_detected_deleted_and_read_again(s3, small_night, tmp_path):
    data = calib_bytes(small_night, "flat")
    ref = ref_for(s3, "flat.fits", data, kind="flat")
    make_cache(tmp_path / "c").get("flat", ref)
    copy = next((tmp_path / "c").glob("*.calib"))
    raw = bytearray(copy.read_bytes())
    raw[len(raw) - 100] ^= 0xFF  # one flipped bit pattern in the pixel data: still a valid FITS
    copy.write_bytes(bytes(raw))
    cache = make_cache(tmp_path / "c")
    fetched = cache.get("flat", ref)
    assert fetched.source == "datastore" and cache.counters.corrupt_copies == 1
    assert fetched.item.sha256 == ref.sha256
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == ref.sha256  # replaced by a good copy
    assert s3.gets == 2


def test_a_changed_datastore_file_raises_and_is_not_cached(s3, small_night, tmp_path):
    data = calib_bytes(small_night, "bias")
    ref = ref_for(s3, "bias.fits", data)
    s3.objects[ref.uri] = altered(data, 1.0)  # changed after registration
    cache = make_cache(tmp_path / "c")
    with pytest.raises(ChecksumMismatchError, match=r"s3://calibs/bias\.fits"):
        cache.get("bias", ref)
    assert not list((tmp_path / "c").glob("*.calib")) and cache.memory.used == 0


def test_a_local_datastore_file_is_linked_and_an_in_place_change_is_never_used(small_night, tmp_path):
    source = tmp_path / "datastore" / "bias.fits"
    source.parent.mkdir()
    data = calib_bytes(small_night, "bias")
    source.write_bytes(data)
    ref = ref_for(FakeS3(), "unused", data).model_copy(update={"uri": path_to_uri(source)})
    cache = make_cache(tmp_path / "c")
    cache.get("bias", ref)
    copy = cache.disk.path((str(ref.id), ref.sha256))
    assert copy.stat().st_ino == source.stat().st_ino  # no second copy of a local calibration
    with open(source, "r+b") as handle:  # altered in place: the link sees it too
        handle.seek(len(data) - 100)
        handle.write(b"\x7f" * 8)
    with pytest.raises(ChecksumMismatchError):
        make_cache(tmp_path / "c").get("bias", ref)
    assert not copy.exists()


# --------------------------------------------------------------------------- several processes


def test_processes_populating_the_same_keys_leave_one_good_copy_each(small_night, tmp_path):
    data = {k: calib_bytes(small_night, k) for k in ("bias", "dark")}
    ctx = multiprocessing.get_context("spawn")
    barrier, replies = ctx.Barrier(4), ctx.Queue()
    children = [
        ctx.Process(target=populate_in_child, args=(str(tmp_path / "c"), data, barrier, i % 2 == 0, replies))
        for i in range(4)
    ]
    for child in children:
        child.start()
    answers = [replies.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0] * 4
    files = sorted((tmp_path / "c").glob("*.calib"))
    assert len(files) == 2
    assert {hashlib.sha256(f.read_bytes()).hexdigest() for f in files} == {
        hashlib.sha256(v).hexdigest() for v in data.values()
    }
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp-")]
    digests = {kind: {a[kind] for a in answers} for kind in data}
    assert all(len(d) == 1 for d in digests.values())  # every process decoded the same pixels
    assert sum(a["datastore_reads"] for a in answers) >= 2


# --------------------------------------------------------------------------- configuration


def test_configuration_from_the_environment():
    env = {
        calib_cache.ENV_CACHE_DIR: "/tmp/x",
        calib_cache.ENV_CACHE_BYTES: "1000",
        calib_cache.ENV_MEMORY_BYTES: str(2**30),
    }
    assert CacheConfig.from_env(env) == CacheConfig(Path("/tmp/x"), 1000, 2**30)
    lambda_env = env | {
        calib_cache.ENV_LAMBDA_MEMORY_MB: "1024"
    }  # at most a quarter of the function's memory
    assert CacheConfig.from_env(lambda_env).memory_bytes == 256 * MiB
    assert CacheConfig.from_env({}) == CacheConfig()
    with pytest.raises(ConfigError, match=calib_cache.ENV_CACHE_BYTES):
        CacheConfig.from_env({calib_cache.ENV_CACHE_BYTES: "1.5GB"})


def test_the_process_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(calib_cache.ENV_CACHE_DIR, str(tmp_path / "a"))
    monkeypatch.setenv(calib_cache.ENV_CACHE_BYTES, "1000")
    first = calibration_cache()
    assert calibration_cache() is first
    monkeypatch.setenv(calib_cache.ENV_CACHE_DIR, str(tmp_path / "b"))
    assert calibration_cache() is not first and calibration_cache().disk.directory == tmp_path / "b"


def test_template_sizes_the_disk_tier_within_the_isr_functions_ephemeral_storage():
    isr = load_template(TEMPLATE)["Resources"]["IsrFunction"]["Properties"]
    env = isr["Environment"]["Variables"]
    config = CacheConfig.from_env({k: str(v) for k, v in env.items()})
    assert config.directory is not None and str(config.directory).startswith("/tmp/")
    headroom = 512 * MiB  # /tmp also holds the runtime's own files
    assert 0 < config.disk_bytes <= isr["EphemeralStorage"]["Size"] * MiB - headroom
    assert config.memory_bytes > 0
