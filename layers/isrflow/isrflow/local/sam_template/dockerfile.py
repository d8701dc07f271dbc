"""What a Dockerfile stage runs (``CMD``) and copies into the Lambda task root, read without building it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from isrflow.local.sam_template.errors import TemplateError


def _dockerfile_lines(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read {dockerfile}: {exc}") from exc
    logical_lines, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical_lines.append(current + stripped)
        current = ""
    if current:
        logical_lines.append(current)
    return logical_lines


def _stage_chain(dockerfile: Path, target: str | None) -> list[str]:
    """The instructions that make ``target`` (the last stage when None), parent stages first."""
    stages: list[tuple[str | None, str, list[str]]] = []
    for line in _dockerfile_lines(dockerfile):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            words = rest.split()
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append((name, words[0].lower() if words else "", []))
        elif stages:
            stages[-1][2].append(line)
    if not stages:
        raise TemplateError(f"{dockerfile}: no FROM")
    by_name = {name: (base, lines) for name, base, lines in stages if name}
    if target is not None and target.lower() not in by_name:
        raise TemplateError(f"{dockerfile}: no stage named {target!r}")
    base, lines = by_name[target.lower()] if target is not None else stages[-1][1:]
    chain = [lines]
    while base in by_name:
        base, parent = by_name[base]
        chain.insert(0, parent)
    return [line for lines in chain for line in lines]


def dockerfile_cmd(dockerfile: Path, target: str | None = None) -> list[str]:
    """The last ``CMD`` (exec form ``["a", "b"]`` or shell form) of a stage, as a list."""
    cmd: list[str] | None = None
    for line in _stage_chain(dockerfile, target):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() != "CMD":
            continue
        rest = rest.strip()
        if rest.startswith("["):
            try:
                cmd = [str(x) for x in json.loads(rest)]
            except json.JSONDecodeError as exc:
                raise TemplateError(f"{dockerfile}: bad CMD {rest!r}: {exc}") from exc
        else:
            cmd = shlex.split(rest)
    if not cmd:
        raise TemplateError(f"{dockerfile}: no CMD")
    return cmd


def dockerfile_task_root_files(dockerfile: Path, context: Path, target: str | None = None) -> dict[str, Path]:
    """Files a stage COPYs into the task root (``${LAMBDA_TASK_ROOT}/`` or ``/var/task/``): name -> source."""
    files: dict[str, Path] = {}
    for line in _stage_chain(dockerfile, target):
        keyword, _, rest = line.partition(" ")
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if keyword.upper() not in ("COPY", "ADD") or len(words) < 2 or "--from" in rest:
            continue
        dest = words[-1]
        if dest.rstrip("/") not in ("${LAMBDA_TASK_ROOT}", "$LAMBDA_TASK_ROOT", "/var/task"):
            continue
        for src in words[:-1]:
            path = (context / src).resolve()
            if path.is_file():
                files[path.name] = path
    return files
