"""`make pin-base-images` writes the base digest into template.yaml; local builds take it back to the tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from isrflow.local.containers.pin import BASE_TAG, pin_template, unpinned_template
from isrflow.local.sam_template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DIGEST = "sha256:" + "ab" * 32


def _build_args(text: str, tmp_path: Path) -> dict[str, dict]:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    resources = load_template(path)["Resources"]
    return {
        lid: (r.get("Metadata") or {}).get("DockerBuildArgs")
        for lid, r in resources.items()
        if (r.get("Metadata") or {}).get("DockerBuildTarget")
    }


def test_pin_sets_every_image_resources_base_and_unpin_restores_the_text(tmp_path):
    original = TEMPLATE.read_text()
    assert "@sha256:" not in original, "template.yaml is pinned: make sure the stand-in path still builds"
    pinned = pin_template(original, f"{BASE_TAG}@{DIGEST}")
    args = _build_args(pinned, tmp_path)
    assert set(args) == {"IsrFunction", "MosaicFunction", "CombineFunction", "CombineTaskDefinition"}
    assert all(a == {"BASE_IMAGE": f"{BASE_TAG}@{DIGEST}"} for a in args.values())
    repinned = pin_template(pinned, f"{BASE_TAG}@sha256:{'cd' * 32}")  # a second pin replaces the first
    assert repinned.count("BASE_IMAGE:") == 4 and DIGEST not in repinned
    unpinned = unpinned_template(pinned)
    assert all(a == {"BASE_IMAGE": BASE_TAG} for a in _build_args(unpinned, tmp_path).values())


def test_pin_refuses_a_reference_without_a_digest():
    with pytest.raises(ValueError, match="sha256"):
        pin_template(TEMPLATE.read_text(), BASE_TAG)
