"""Running the functions in their Lambda containers on one machine.

- :mod:`.engine`: a Docker engine (installed and started when absent);
- :mod:`.standin`: a stand-in for the AWS Lambda Python base where it cannot be pulled;
- :mod:`.sam`: ``sam build``, ``sam local invoke`` and ``sam local start-lambda``;
- :mod:`.services`: moto in server mode with the stack's bucket, queues and secret.

:func:`prepare_images` is the one call that gets a machine from nothing to built images.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from isrflow.local.containers.engine import ensure_engine
from isrflow.local.containers.sam import SamProject
from isrflow.local.containers.standin import ensure_standin


def prepare_images(
    repo: Path, architecture: str = "x86_64", log: Callable[[str], None] = print
) -> SamProject:
    """Engine up, Lambda base (or its stand-in) present, every function and image built."""
    version = ensure_engine()
    log(f"docker engine {version}")
    ensure_standin(architecture, log=log)
    project = SamProject(Path(repo), architecture)
    project.build()
    # rebuilt images leave their predecessors untagged: drop them so repeated runs do not fill the disk
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)
    return project
