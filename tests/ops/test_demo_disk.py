"""`isrflow demo` keeps its disk footprint small: raws are linked to the simulated files, the ISR'd
calibration inputs are deleted once their masters are built, and it says what the repository holds."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from isrflow.cli import cli
from isrflow.cli.demo_cmd import disk_usage


def test_demo_links_raws_deletes_intermediates_and_reports_its_footprint(tmp_path):
    repo = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--camera", "generic", "--small", "--repo", str(repo), "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    raws = list((repo / "Generic" / "raw").rglob("*.fits"))
    assert raws and all(p.is_symlink() and p.resolve().is_relative_to(repo / "sim") for p in raws)
    frames = [p for p in repo.rglob("*.fits") if p.parent.parent.parent.name.startswith("cp")]
    assert frames == []
    for calib_type in ("bias", "dark", "flat"):
        assert f"{calib_type} masters in" in result.output
    assert result.output.count("intermediate frames deleted") == 3
    assert f"{repo} holds" in result.output and "GB on disk" in result.output


def test_disk_usage_counts_blocks_and_not_link_targets(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    (tmp_path / "link").symlink_to(tmp_path / "big")
    (tmp_path / "hard").hardlink_to(tmp_path / "big")
    assert 100_000 <= disk_usage(tmp_path) < 100_000 + 16_384
    assert disk_usage(Path(tmp_path / "missing")) == 0
