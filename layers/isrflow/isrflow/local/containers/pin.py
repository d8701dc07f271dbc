"""``make pin-base-images``: pin the function images' base to a digest, where the registry is reachable.

functions/Dockerfile builds FROM ``ARG BASE_IMAGE`` (default: the Lambda Python 3.12 base by tag).
This resolves that tag to the digest of its multi-architecture index (``docker pull`` then the
pulled image's RepoDigests) and writes it into template.yaml as the image functions'
``Metadata.DockerBuildArgs.BASE_IMAGE`` (``<tag>@sha256:...``), so that ``sam build`` of a
release builds from exactly that base. Machines that cannot reach the registry (these ones)
build against the stand-in, which answers to the tag only: :func:`unpinned_template` gives
them the template with the pin taken back to the tag.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from isrflow.local.containers.engine import ContainerEngineError

BASE_TAG = "public.ecr.aws/lambda/python:3.12"
#: The image resources' Metadata (``DockerBuildTarget: isr|combine``), where the pin is written.
_TARGET_LINE = re.compile(r"^(?P<indent>\s+)DockerBuildTarget: (?P<target>\S+)\n", re.M)
_PIN_BLOCK = re.compile(r"^\s+DockerBuildArgs:\n\s+BASE_IMAGE: \S+\n", re.M)
_PINNED = re.compile(r"^(\s+BASE_IMAGE: )(?P<tag>[^@\s]+)@sha256:[0-9a-f]{64}$", re.M)


def resolve_digest(tag: str = BASE_TAG) -> str:
    """``tag@sha256:...`` of the registry's current image for ``tag`` (needs registry access)."""
    pulled = subprocess.run(["docker", "pull", "--quiet", tag], capture_output=True, text=True)
    if pulled.returncode != 0:
        raise ContainerEngineError(
            f"docker pull {tag} failed (is the registry reachable?): {pulled.stderr.strip()}"
        )
    digests = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.findall(r"[^\"\s]+@sha256:[0-9a-f]{64}", digests)
    if not found:
        raise ContainerEngineError(f"{tag} has no repository digest after the pull")
    return f"{tag}@{found[0].split('@', 1)[1]}"


def pin_template(text: str, pinned: str) -> str:
    """template.yaml's text with every image resource's BASE_IMAGE build argument set to ``pinned``."""
    if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", pinned):
        raise ValueError(f"{pinned!r} is not <image>@sha256:<64 hex>")
    text = _PIN_BLOCK.sub("", text)
    if not _TARGET_LINE.search(text):
        raise ValueError("template.yaml has no image resource with a DockerBuildTarget")

    def add(match: re.Match[str]) -> str:
        indent = match["indent"]
        return f"{match.group(0)}{indent}DockerBuildArgs:\n{indent}  BASE_IMAGE: {pinned}\n"

    return _TARGET_LINE.sub(add, text)


def unpinned_template(text: str) -> str:
    """The same text with a pinned BASE_IMAGE taken back to its tag (for the stand-in base)."""
    return _PINNED.sub(lambda m: m.group(1) + m["tag"], text)


def main(argv: list[str]) -> int:
    template = Path(argv[1]) if len(argv) > 1 else Path("template.yaml")
    pinned = resolve_digest(BASE_TAG)
    template.write_text(pin_template(template.read_text(), pinned))
    print(f"{template}: BASE_IMAGE pinned to {pinned}")
    return 0


if __name__ == "__main__":  # pragma: no cover - needs registry access
    sys.exit(main(sys.argv))
