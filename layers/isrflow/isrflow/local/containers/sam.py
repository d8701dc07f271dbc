"""The SAM CLI against the project's template: ``sam build``, ``sam local invoke``, ``start-lambda``.

Everything runs on this machine: images are built by the local engine (FROM the Lambda base or
its stand-in, see :mod:`.standin`), containers use the host's network so that moto on
127.0.0.1 and the PostgreSQL registry are reachable, and no image is pulled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isrflow.local.containers.engine import ContainerEngineError
from isrflow.local.containers.standin import host_python_prefix

REPORT_PREFIX = "ISRFLOW-STANDIN-REPORT "


class SamError(ContainerEngineError):
    """A SAM CLI command failed (its output is in the message)."""


def sam_executable(repo: Path, install: bool = True) -> str:
    """``sam`` from the tools venv, else from PATH; with ``install``, ``make tools`` first when neither
    has it (a checkout after ``make demo`` has no tools venv yet)."""
    for candidate in (repo / ".tools-venv" / "bin" / "sam", shutil.which("sam")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    if install and (repo / "Makefile").exists():
        done = subprocess.run(
            ["make", "-C", str(repo), "tools"], capture_output=True, text=True, timeout=1800
        )
        if done.returncode != 0:
            raise SamError(f"`make tools` failed: {(done.stdout + done.stderr)[-2000:]}")
        return sam_executable(repo, install=False)
    raise SamError("the SAM CLI is not installed: run `make tools` (it goes to .tools-venv/bin/sam)")


@dataclass
class Invocation:
    """One ``sam local invoke``: the function's answer and what the stand-in runtime measured."""

    function: str
    payload: Any
    reports: list[dict] = field(default_factory=list)
    logs: str = ""
    wall_s: float = 0.0

    @property
    def error_type(self) -> str | None:
        return self.payload.get("errorType") if isinstance(self.payload, dict) else None


def parse_reports(text: str) -> list[dict]:
    """The stand-in runtime's REPORT lines in a container's output, each invocation once (``sam local
    start-lambda`` can copy a warm container's output into its log once per attached request)."""
    reports, seen = [], set()
    for line in text.splitlines():
        if REPORT_PREFIX in line:
            report = json.loads(line.split(REPORT_PREFIX, 1)[1])
            key = (report.get("function"), report.get("sandbox"), report.get("invocation"))
            if report.get("sandbox") is None or key not in seen:
                seen.add(key)
                reports.append(report)
    return reports


class SamProject:
    """The template at ``repo`` built for ``architecture`` into ``.aws-sam/local-<arch>``."""

    def __init__(self, repo: Path, architecture: str = "x86_64", region: str = "us-east-1"):
        self.repo, self.architecture, self.region = Path(repo), architecture, region
        self.build_dir = self.repo / ".aws-sam" / f"local-{architecture}"
        self.sam = sam_executable(self.repo)

    @property
    def built_template(self) -> Path:
        return self.build_dir / "template.yaml"

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "SAM_CLI_TELEMETRY": "0",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            # the registry layer's wheels (layers/isrflow/Makefile: SAM does not pass the architecture on)
            "ISRFLOW_ARCHITECTURE": self.architecture,
        }
        # sam build checks the runtime's interpreter (python3.12) on PATH.
        env["PATH"] = f"{host_python_prefix() / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def _overrides(self) -> list[str]:
        return ["--parameter-overrides", f"Architecture={self.architecture}", "--region", self.region]

    def source_template(self) -> Path:
        """template.yaml, or beside it a copy whose pinned base digest is taken back to its tag
        (the stand-in answers to the tag only; see :mod:`.pin`)."""
        from isrflow.local.containers.pin import unpinned_template

        template = self.repo / "template.yaml"
        text = template.read_text()
        unpinned = unpinned_template(text)
        if unpinned == text:
            return template
        local = self.repo / ".template.unpinned.yaml"  # beside template.yaml: relative CodeUris stay valid
        local.write_text(unpinned)
        return local

    def build(self) -> Path:
        """``sam build`` of every function, layer and image (cached by SAM and the engine)."""
        argv = [
            self.sam,
            "build",
            "--template-file",
            str(self.source_template()),
            "--build-dir",
            str(self.build_dir),
            *self._overrides(),
        ]
        done = subprocess.run(
            argv, cwd=self.repo, env=self._env(), capture_output=True, text=True, timeout=3600
        )
        if done.returncode != 0:
            raise SamError(f"sam build failed:\n{(done.stdout + done.stderr)[-4000:]}")
        return self.built_template

    def env_vars_file(
        self, directory: Path, common: dict[str, str], per_function: dict[str, dict[str, str]] | None = None
    ) -> Path:
        """An ``--env-vars`` file: ``common`` for every function, then per-function values."""
        path = Path(directory) / "env-vars.json"
        path.write_text(json.dumps({"Parameters": common, **(per_function or {})}, indent=1))
        return path

    def invoke(self, function: str, event: Any, env_vars: Path, *, timeout_s: float = 900.0) -> Invocation:
        """``sam local invoke function -e <event>`` (a dict, or a path to an event file)."""
        with tempfile.TemporaryDirectory(prefix="isrflow-event-") as tmp:
            if isinstance(event, (str, Path)):
                event_path = Path(event)
            else:
                event_path = Path(tmp) / "event.json"
                event_path.write_text(json.dumps(event))
            argv = [
                self.sam,
                "local",
                "invoke",
                function,
                "--template",
                str(self.built_template),
                "--event",
                str(event_path),
                "--env-vars",
                str(env_vars),
                "--skip-pull-image",
                "--docker-network",
                "host",
                *self._overrides(),
            ]
            t0 = time.perf_counter()
            done = subprocess.run(
                argv, cwd=self.repo, env=self._env(), capture_output=True, text=True, timeout=timeout_s
            )
            wall = time.perf_counter() - t0
        payload = _last_json_line(done.stdout)
        if payload is None:
            raise SamError(
                f"sam local invoke {function} gave no answer (exit {done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-4000:]}"
            )
        return Invocation(function, payload, parse_reports(done.stderr + done.stdout), done.stderr, wall)

    def start_lambda(self, env_vars: Path, port: int, log_path: Path) -> LambdaEndpoint:
        """``sam local start-lambda`` on 127.0.0.1:``port`` (the Lambda Invoke API), warm containers."""
        argv = [
            self.sam,
            "local",
            "start-lambda",
            "--template",
            str(self.built_template),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--env-vars",
            str(env_vars),
            "--skip-pull-image",
            "--docker-network",
            "host",
            "--warm-containers",
            "LAZY",
            *self._overrides(),
        ]
        with open(log_path, "ab") as log:  # the child has its own descriptor once started
            proc = subprocess.Popen(
                argv,
                cwd=self.repo,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        endpoint = LambdaEndpoint(f"http://127.0.0.1:{port}", proc, log_path)
        endpoint.wait_ready()
        return endpoint


@dataclass
class LambdaEndpoint:
    """A running ``sam local start-lambda``."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SamError(
                    f"sam local start-lambda exited ({self.process.returncode}):\n"
                    f"{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                urllib.request.urlopen(self.url + "/2015-03-31/functions/none/invocations", b"{}", timeout=2)
            except urllib.error.HTTPError:
                return  # answering (404 for an unknown function)
            except OSError:
                time.sleep(0.5)
                continue
            return
        raise SamError(f"sam local start-lambda did not answer on {self.url} within {timeout_s:.0f} s")

    def reports(self) -> list[dict]:
        return parse_reports(self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        if self.process.poll() is None:
            import signal

            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        _remove_sam_containers()


def _remove_sam_containers() -> None:
    """Warm containers left by start-lambda (labelled by SAM CLI)."""
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=sam.cli.container.type=lambda"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _last_json_line(stdout: str) -> Any:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith(("{", "[", '"')) or re.fullmatch(r"-?\d+(\.\d+)?|null|true|false", line):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


if __name__ == "__main__":  # pragma: no cover
    print(SamProject(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()).build())
