"""Fuzzed bad input for every CLI command: one readable line, never a traceback, nothing left behind.

Every command of ``isrflow`` (found by walking the click group, so a new command is fuzzed
without being listed) starts from a cheap valid invocation on a small repository; each case
replaces one parameter with a value that is wrong for its type (a missing or NUL-bearing path,
a negative or overflowing number, an unknown choice, a malformed id list, an empty, huge,
unbalanced or control-character string). Whatever the command makes of it:

- no exception escapes (click's own usage errors and ``error: <TypedError>: ...`` lines only);
- a non-zero exit ends with one line that says so (``Error: ...`` or ``error: ...``);
- a usage error (exit 2) creates no file, and no case leaves a temporary file.

Values are drawn with a fixed seed; each case has a wall-clock guard (SIGALRM) so a command that
wrongly accepts a value and starts blocking work fails the test instead of hanging it.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from visit_helpers import CALIB_COLLECTION, CALIB_RUN

from isrflow.cli import cli

CASE_TIMEOUT_S = 90
PER_PARAM = 3
#: Commands that block or run for minutes when every value is valid: only values their types reject.
TYPE_ONLY = {"demo", "local serve", "tune", "ingest"}


def _commands(group: click.Group, path=()) -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append((" ".join((*path, name)), cmd))
    return out


def _bad_values(param: click.Parameter, scratch: Path) -> list[str]:
    t = param.type
    strings = ["", "\x00", "x" * 2000, "((((", "'; DROP TABLE dataset; --", "\u202e\x07é", "-", "a b\tc\n"]
    if isinstance(t, click.Path):
        values = [str(scratch / "does" / "not" / "exist"), "bad\x00path"]
        values.append(str(scratch / "a-file") if not t.file_okay else str(scratch))
        return values
    if isinstance(t, (click.IntRange, click.types.IntParamType)):
        return ["-1", "abc", "99999999999999999999999", "1e400", "0x10"]
    if isinstance(t, (click.FloatRange, click.types.FloatParamType)):
        return ["nan", "inf", "-1", "abc", "1e999"]
    if isinstance(t, click.Choice):
        return ["bogus", "", "\x00"]
    if type(t).__name__ == "IdList":
        return ["3-1", "a", "1,,2", "99999999999999999999", "--5"]
    if isinstance(t, click.types.BoolParamType):
        return []
    return strings


def _type_checked(param: click.Parameter) -> bool:
    t = param.type
    return (
        isinstance(
            t,
            (
                click.Path,
                click.IntRange,
                click.FloatRange,
                click.Choice,
                click.types.IntParamType,
                click.types.FloatParamType,
            ),
        )
        or type(t).__name__ == "IdList"
    )


def make_world(tmp: Path) -> tuple[Path, Path, dict[str, list[str]]]:
    """A small repository under ``tmp``, a scratch folder and each command's valid baseline."""
    from visit_helpers import make_repo

    repo = make_repo(tmp, detectors=(0,), science=1)
    scratch = tmp / "scratch"
    _reset_scratch(scratch)
    raw = next(Path(r.path) for r in repo.manifest.raws)
    bias = Path(repo.manifest.calibrations[0].bias)
    r = str(repo.root)
    where = "instrument = 'Generic'"
    baselines = {
        "simulate": [
            "--out",
            str(tmp / "sim"),
            "--small",
            "--camera",
            "generic",
            "--detectors",
            "0",
            "--science",
            "1",
            "--bias",
            "0",
            "--dark",
            "0",
            "--flat",
            "0",
        ],
        "isr": [str(raw), "--out", str(tmp / "isr-out.fits"), "--bias", str(bias)],
        "repo create": [str(tmp / "new-repo")],
        "ingest": ["--repo", r, str(raw)],
        "datasets": ["--repo", r],
        "collections": ["--repo", r],
        "calib certify": ["--repo", r, "--type", "bias", "--run", CALIB_RUN],
        "calib import": ["--repo", r, "--run", "fuzz/import", str(bias)],
        "calib build": ["bias", "--repo", r, "--where", where, "--output-run", "fuzz/bias"],
        "run process-visit": [
            "--repo",
            r,
            "--where",
            where,
            "--output-run",
            "fuzz/out",
            "--input-collections",
            "Generic/raw/all",
            "--calib-collection",
            CALIB_COLLECTION,
        ],
        "demo": [
            "--repo",
            str(tmp / "demo"),
            "--small",
            "--true-calibrations",
            "--science",
            "1",
            "--detectors",
            "0",
        ],
        "status": ["--repo", r],
        "rerun": ["nothing-by-this-name", "--failed", "--repo", r, "--dry-run"],
        "preview": ["--repo", r, "--collection", "fuzz/none"],
        "local serve": ["--repo", r],
        "events render": ["--out", str(tmp / "events")],
        "registry redrive": ["--repo", r],
        "registry verify": ["--repo", r],
        "tune": ["isr"],
        "plan-night": ["--visits", "2"],
    }
    return tmp, scratch, baselines


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("fuzz"))


def _cases(baselines: dict, scratch: Path) -> list[tuple[str, list[str], str]]:
    rng = random.Random(20261207)
    cases = []
    for name, cmd in _commands(cli):
        base = baselines.get(name)
        if base is None:
            pytest.fail(f"no fuzz baseline for the new command `isrflow {name}`: add one to this test")
        for param in cmd.params:
            if name in TYPE_ONLY and not _type_checked(param):
                continue
            values = _bad_values(param, scratch)
            if not values:
                continue
            for value in rng.sample(values, min(PER_PARAM, len(values))):
                args = list(base)
                if isinstance(param, click.Argument):
                    positions = [
                        i
                        for i, a in enumerate(args)
                        if not a.startswith("-") and (i == 0 or not args[i - 1].startswith("-"))
                    ]
                    if not positions:
                        continue
                    args[positions[0]] = value
                else:
                    flag = max(param.opts, key=len)
                    if flag in args:
                        args[args.index(flag) + 1] = value
                    else:
                        args += [flag, value]
                cases.append((name, [*name.split(), *args], f"{param.name}={value[:20]!r}"))
    return cases


def _reset_scratch(scratch: Path) -> None:
    """The scratch folder as every case expects it: one file, ``a-file`` (a case that accepted the
    folder as a new repository or output leaves things there: the next case must not see them)."""
    import shutil

    if scratch.exists() and sorted(p.name for p in scratch.iterdir()) == ["a-file"]:
        return
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    (scratch / "a-file").write_text("not a directory\n")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _alarm(signum, frame):
    raise TimeoutError(f"a fuzz case ran for over {CASE_TIMEOUT_S} s")


def run_fuzz(tmp: Path, scratch: Path, baselines: dict[str, list[str]]) -> tuple[int, list[str]]:
    """Run every case; returns how many were tried and one line per defect found."""
    cases = _cases(baselines, scratch)
    assert len({c[0] for c in cases}) == len(_commands(cli))  # every command has at least one case
    failures = []
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for name, argv, label in cases:
            before = _files(tmp)
            signal.alarm(CASE_TIMEOUT_S)
            try:
                result = CliRunner().invoke(cli, argv)
            finally:
                signal.alarm(0)
            after = _files(tmp)
            _reset_scratch(scratch)
            lines = [line for line in result.output.splitlines() if line.strip()]
            problem = None
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                problem = f"raised {type(result.exception).__name__}: {str(result.exception)[:200]}"
            elif result.exit_code != 0 and not (lines and lines[-1].lstrip().lower().startswith("error")):
                problem = f"exit {result.exit_code} without an error line: {lines[-3:]}"
            elif result.exit_code == 2 and after - before:
                problem = f"usage error left files: {sorted(after - before)[:3]}"
            elif any(Path(f).name.startswith(".") and f.endswith(".tmp") for f in after):
                problem = f"temporary files left: {[f for f in after if f.endswith('.tmp')][:3]}"
            if problem:
                failures.append(f"isrflow {name} [{label}]: {problem}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    return len(cases), failures


def test_every_command_survives_bad_values(world):
    tried, failures = run_fuzz(*world)
    assert tried > 100
    assert not failures, f"{len(failures)} of {tried} cases:\n" + "\n".join(failures)
