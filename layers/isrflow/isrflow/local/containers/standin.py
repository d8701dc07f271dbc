"""The stand-in AWS Lambda Python 3.12 base image, for machines that cannot pull the real one.

The project's ``functions/Dockerfile`` builds FROM ``public.ecr.aws/lambda/python:3.12`` (its
``BASE_IMAGE`` default), and ``sam local`` runs zip functions on
``public.ecr.aws/lambda/python:3.12-<arch>``. Where that registry is out of reach, this module
builds an image with the same contract (``standin/Dockerfile`` beside it) and tags it under
those two names **in the local engine only**, so the unchanged Dockerfile, template and SAM
CLI build and run against it. It is rebuilt when its inputs change (a content hash label).

Steps (each cached in the engine): ``debootstrap --variant=minbase bookworm`` -> ``docker
import`` as :data:`ROOTFS_IMAGE`; then ``docker build`` of ``standin/`` with the host's
CPython 3.12 (same Debian release, so its shared libraries match) relocated to ``/var/lang``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from isrflow.local.containers.engine import ContainerEngineError, ensure_debootstrap

HERE = Path(__file__).resolve().parent / "standin"
ROOTFS_IMAGE = "isrflow/bookworm-minbase:latest"
STANDIN_IMAGE = "isrflow/lambda-python-standin"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
AWSLAMBDARIC_VERSION = "4.2.2"
BOTO3_VERSION = "1.44.8"
PYTHON_MINOR = "3.12"
#: The names the real base goes by: FROM in functions/Dockerfile, and sam local's zip runtime.
BASE_NAMES = (f"public.ecr.aws/lambda/python:{PYTHON_MINOR}",)


def _docker(*args: str, stdin: bytes | None = None, timeout: float = 1800.0) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[-3000:]
        raise ContainerEngineError(f"docker {' '.join(args[:3])} ... failed: {err}")
    return done


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


@functools.lru_cache(maxsize=1)
def host_python_prefix() -> Path:
    """The prefix of a CPython 3.12 on this machine.

    ``ISRFLOW_PYTHON312`` (an interpreter path) first, then ``python3.12`` on PATH, then pyenv's
    versions (a pyenv shim on PATH fails unless that version is active, so each is tried).
    """
    import glob
    import os

    candidates = [
        os.environ.get("ISRFLOW_PYTHON312"),
        shutil.which(f"python{PYTHON_MINOR}"),
        *sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{PYTHON_MINOR}.*/bin/python{PYTHON_MINOR}")),
            reverse=True,
        ),
        f"/usr/local/bin/python{PYTHON_MINOR}",
        f"/usr/bin/python{PYTHON_MINOR}",
    ]
    for exe in filter(None, candidates):
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    raise ContainerEngineError(
        f"the stand-in Lambda base and `sam build` need a CPython {PYTHON_MINOR}; none "
        f"was found (set ISRFLOW_PYTHON312 to its interpreter)"
    )


def _skip(rel: str) -> bool:
    """Parts of a CPython prefix Lambda's base does not carry (tests, static lib, IDLE, Tk, site hooks)."""
    parts = rel.split("/")
    if rel.startswith(f"lib/python{PYTHON_MINOR}/site-packages/") and not (
        len(parts) > 3 and parts[3].startswith("pip")
    ):
        return True
    banned = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
    return (
        (len(parts) > 2 and parts[0] == "lib" and parts[2] in banned)
        or parts[-1].endswith(".a")
        or (len(parts) > 2 and parts[2].startswith("config-"))
        or parts[0] in {"include", "share"}
    )


def python_tar(prefix: Path) -> bytes:
    """``bin/`` and ``lib/`` of ``prefix`` as an uncompressed tar (no site-packages but pip)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for top in ("bin", "lib"):
            for path in sorted((prefix / top).rglob("*")):
                rel = path.relative_to(prefix).as_posix()
                if _skip(rel) or "__pycache__" in rel:
                    continue
                if (
                    top == "bin"
                    and path.is_file()
                    and not path.is_symlink()
                    and path.name.startswith(("pip", "idle", "2to3", "pydoc"))
                ):
                    continue  # their shebangs name the host's prefix
                tar.add(path, arcname=rel, recursive=False)
    return buf.getvalue()


def _host_ca_bundle() -> bytes:
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(candidate).exists():
            return Path(candidate).read_bytes()
    raise ContainerEngineError("no CA bundle on this machine (/etc/ssl/certs/ca-certificates.crt)")


def ensure_rootfs(log=print) -> None:
    """The Debian minbase image, from debootstrap (about a minute, once per engine)."""
    if image_exists(ROOTFS_IMAGE):
        return
    ensure_debootstrap()
    with tempfile.TemporaryDirectory(prefix="isrflow-rootfs-") as tmp:
        log(f"debootstrap --variant=minbase {DEBIAN_SUITE} (once) ...")
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", DEBIAN_SUITE, tmp, DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise ContainerEngineError(f"debootstrap failed: {done.stderr.strip()[-2000:]}")
        tar = subprocess.run(["tar", "-C", tmp, "-c", "."], capture_output=True, check=True).stdout
        _docker("import", "-", ROOTFS_IMAGE, stdin=tar)


def ensure_standin(architecture: str = "x86_64", log=print) -> str:
    """Build (or reuse) the stand-in and tag it as the Lambda base; returns its content tag."""
    ensure_rootfs(log)
    prefix = host_python_prefix()
    files = {p.name: p.read_bytes() for p in sorted(HERE.iterdir()) if p.is_file()}
    ptar = python_tar(prefix)
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + data)
    digest.update(hashlib.sha256(ptar).digest())
    digest.update(f"{AWSLAMBDARIC_VERSION} {BOTO3_VERSION} {architecture}".encode())
    tag = f"{STANDIN_IMAGE}:{PYTHON_MINOR}-{digest.hexdigest()[:12]}"
    if not image_exists(tag):
        log(f"building the stand-in Lambda base {tag} (Python from {prefix}) ...")
        with tempfile.TemporaryDirectory(prefix="isrflow-standin-") as tmp:
            ctx = Path(tmp)
            for name, data in files.items():
                (ctx / name).write_bytes(data)
            (ctx / "python.tar").write_bytes(ptar)
            (ctx / "host-ca-bundle.crt").write_bytes(_host_ca_bundle())
            _docker(
                "build",
                "--network",
                "host",
                "-t",
                tag,
                "--build-arg",
                f"STANDIN_ROOTFS={ROOTFS_IMAGE}",
                "--build-arg",
                f"AWSLAMBDARIC_VERSION={AWSLAMBDARIC_VERSION}",
                "--build-arg",
                f"BOTO3_VERSION={BOTO3_VERSION}",
                str(ctx),
            )
    for name in BASE_NAMES:
        _docker("tag", tag, name)
        _docker("tag", tag, f"{name}-{architecture}")
    return tag


if __name__ == "__main__":  # pragma: no cover - manual use: python -m isrflow.local.containers.standin
    from isrflow.local.containers.engine import ensure_engine

    ensure_engine()
    print(ensure_standin(sys.argv[1] if len(sys.argv) > 1 else "x86_64"))
