"""A Docker engine on this machine: found, or installed (Debian ``docker.io``) and started.

The container tests and ``--containers`` runs need one. On a machine without an engine this
installs Debian's ``docker.io`` with apt-get and starts ``dockerd`` in the background (no
systemd here), then waits for it to answer. Any failure raises :class:`ContainerEngineError`
with what was tried: the callers fail loudly, they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from isrflow.model.errors import IsrflowError

DOCKERD_LOG = Path("/tmp/isrflow-dockerd.log")
START_TIMEOUT_S = 90.0


class ContainerEngineError(IsrflowError):
    """No Docker engine could be found, installed or started."""


def _run(argv: list[str], timeout: float = 600.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def engine_answers() -> bool:
    """True when ``docker info`` reaches a running engine."""
    if shutil.which("docker") is None:
        return False
    try:
        return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _install_docker_io() -> None:
    if os.geteuid() != 0:
        raise ContainerEngineError("no Docker engine, and installing docker.io needs root (apt-get)")
    if shutil.which("apt-get") is None:
        raise ContainerEngineError("no Docker engine and no apt-get to install docker.io with")
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io", "debootstrap"],
    ):
        done = _run(argv, timeout=900)
        if done.returncode != 0:
            raise ContainerEngineError(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")


def ensure_engine(*, wait_s: float = START_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep) -> str:
    """Make sure a Docker engine answers; returns its server version.

    Installs ``docker.io`` (and ``debootstrap``, which the stand-in base needs) when ``dockerd``
    is missing, and starts ``dockerd`` when it is not running.
    """
    if engine_answers():
        return _server_version()
    if shutil.which("dockerd") is None:
        _install_docker_io()
    if shutil.which("dockerd") is None:
        raise ContainerEngineError("docker.io was installed but dockerd is not on PATH")
    _remove_stale_pid_files()
    log = DOCKERD_LOG.open("ab")
    subprocess.Popen(
        ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if engine_answers():
            return _server_version()
        sleep(1.0)
    tail = DOCKERD_LOG.read_text(errors="replace")[-2000:] if DOCKERD_LOG.exists() else ""
    raise ContainerEngineError(f"dockerd did not answer within {wait_s:.0f} s; its log ends:\n{tail}")


STALE_PID_FILES = (Path("/var/run/docker.pid"), Path("/var/run/docker/containerd/containerd.pid"))


def _remove_stale_pid_files() -> None:
    """dockerd refuses to start over the pid file of an engine that was killed (a new session)."""
    for pid_file in STALE_PID_FILES:
        try:
            pid = int(pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid <= 0 or not Path(f"/proc/{pid}").exists():
            pid_file.unlink(missing_ok=True)


def ensure_debootstrap() -> None:
    """``debootstrap`` on PATH (installed with apt-get when missing)."""
    if shutil.which("debootstrap") is None:
        _install_docker_io()
    if shutil.which("debootstrap") is None:
        raise ContainerEngineError(
            "debootstrap is needed to build the stand-in base and could not be installed"
        )


def _server_version() -> str:
    return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30).stdout.strip()
