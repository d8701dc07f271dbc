"""Every pinned version is in one place, and it is the version the tests run with.

``constraints.txt`` pins every package of ``.venv`` (pip's constraints format, ``name==version``);
``make venv``, the container images (``functions/Dockerfile``) and the registry layer
(``layers/isrflow/Makefile``) install with it. The files that name packages
(``functions/image-requirements.txt``, ``layers/isrflow/requirements.txt``, ``pyproject.toml``)
give names or compatible ranges only. Checked here:

- every package those files name, and everything it pulls in as installed, is pinned;
- the environment the tests run in (``.venv`` under ``make test``) has exactly the pinned versions;
- the tools' venvs (``.tools-venv``, ``.checkov-venv``), where installed, match their own files;
- the Makefile, the Dockerfile and the layer's Makefile install with the constraints and pin
  nothing themselves.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO / "constraints.txt"
IMAGE_REQUIREMENTS = REPO / "functions" / "image-requirements.txt"
LAYER_REQUIREMENTS = REPO / "layers" / "isrflow" / "requirements.txt"
PYPROJECT = REPO / "pyproject.toml"
#: The tools' venvs and the constraints files that pin them.
TOOL_VENVS = {".tools-venv": "constraints-tools.txt", ".checkov-venv": "constraints-checkov.txt"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file; every line that is not a comment
    must be one exact pin."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number}: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{path.name}:{number}: {name} is pinned twice"
        pins[name] = match.group(2)
    return pins


def requirement_lines(path: Path) -> list[Requirement]:
    """The requirements of a requirements file (comments and blank lines skipped)."""
    lines = (raw.split("#", 1)[0].strip() for raw in path.read_text(encoding="utf-8").splitlines())
    return [Requirement(line) for line in lines if line]


def pyproject_requirements(path: Path = PYPROJECT) -> list[Requirement]:
    """``[project] dependencies`` and every optional-dependencies group."""
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    return [Requirement(text) for group in groups for text in group]


def installed_versions(paths: list[str] | None = None) -> dict[str, str]:
    """``{canonical name: version}`` of the distributions installed (on ``paths``, default this
    interpreter's ``sys.path``)."""
    dists = md.distributions(path=paths) if paths is not None else md.distributions()
    return {canonicalize_name(d.metadata["Name"]): d.version for d in dists}


def closure(requirements: Iterable[Requirement]) -> dict[str, str]:
    """``{canonical name: who asked}``: the requirements and, through the installed metadata
    (extras and markers evaluated for this interpreter), everything they pull in."""
    found: dict[str, str] = {}
    todo = [(req, "named") for req in requirements]
    while todo:
        req, why = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        key = name + "".join(f"[{e}]" for e in sorted(extras))
        if key in found:
            continue
        found.setdefault(name, why)
        found[key] = why
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # reported by the installed-version check
        for text in requires:
            dep = Requirement(text)
            env_ok = [not dep.marker or dep.marker.evaluate({"extra": extra}) for extra in ("", *extras)]
            if any(env_ok):
                todo.append((dep, f"{why} -> {req.name}" if why != "named" else req.name))
    return {name: why for name, why in found.items() if "[" not in name}


def unpinned(names: Iterable[str], pins: dict[str, str]) -> list[str]:
    return sorted(canonicalize_name(n) for n in names if canonicalize_name(n) not in pins)


def version_mismatches(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Pins whose package is not installed, or installed at another version."""
    out = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if have != version:
            out.append(f"{name}: pinned {version}, installed {have or 'nothing'}")
    return out


def test_requirement_files_name_packages_without_versions():
    for path in (IMAGE_REQUIREMENTS, LAYER_REQUIREMENTS):
        reqs = requirement_lines(path)
        assert reqs, f"{path}: no packages"
        versioned = [str(r) for r in reqs if r.specifier]
        assert not versioned, f"{path.name}: versions belong in constraints.txt, not here: {versioned}"


def test_pyproject_gives_ranges_not_pins():
    exact = [
        str(r) for r in pyproject_requirements() if any(s.operator in ("==", "===") for s in r.specifier)
    ]
    assert not exact, f"pyproject.toml keeps compatible ranges; pin in constraints.txt instead: {exact}"


def test_every_named_package_and_what_it_pulls_in_is_pinned():
    pins = read_pins(CONSTRAINTS)
    named = [
        *requirement_lines(IMAGE_REQUIREMENTS),
        *requirement_lines(LAYER_REQUIREMENTS),
        *pyproject_requirements(),
    ]
    assert {"ruff", "mypy"} <= {canonicalize_name(r.name) for r in named}
    needed = closure(named)
    missing = unpinned(needed, pins)
    assert not missing, "not pinned in constraints.txt (run `make freeze-constraints`): " + ", ".join(
        f"{name} ({needed[name]})" for name in missing
    )


def test_the_test_environment_runs_the_pinned_versions():
    wrong = version_mismatches(read_pins(CONSTRAINTS), installed_versions())
    assert not wrong, "constraints.txt and the installed packages differ:\n" + "\n".join(wrong)


def test_the_tools_venvs_run_their_pinned_versions():
    checked = 0
    for venv, constraints in TOOL_VENVS.items():
        site = sorted((REPO / venv).glob("lib/python3*/site-packages"))
        if not site:
            continue  # not installed here (`make tools` installs it)
        checked += 1
        wrong = version_mismatches(read_pins(REPO / constraints), installed_versions([str(site[0])]))
        assert not wrong, f"{constraints} and {venv} differ:\n" + "\n".join(wrong)
    assert checked or not (REPO / ".tools-venv").exists()


def test_installers_use_the_constraints_and_pin_nothing():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "-c $(CONSTRAINTS) -e '.[test]'" in makefile
    for variable in ("TOOLS_CONSTRAINTS", "CHECKOV_CONSTRAINTS", "BENCH_CONSTRAINTS"):
        assert f"-c $({variable})" in makefile, variable
    layer_makefile = (REPO / "layers" / "isrflow" / "Makefile").read_text(encoding="utf-8")
    assert "../../constraints.txt" in layer_makefile and '-c "$(CONSTRAINTS)"' in layer_makefile
    dockerfile = (REPO / "functions" / "Dockerfile").read_text(encoding="utf-8")
    assert "-c /tmp/constraints.txt -r /tmp/image-requirements.txt" in dockerfile
    for name, text in (("Makefile", makefile), ("layers/isrflow/Makefile", layer_makefile)):
        pinned = re.findall(r"[A-Za-z0-9_.\[\]-]+==[0-9][^\s'\"]*", text)
        assert not pinned, f"{name} pins {pinned}: pins belong in a constraints file"


def test_the_checks_fail_on_a_missing_or_different_pin(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# header\nFoo_Bar==1.0\nbaz==2.0\n")
    pins = read_pins(constraints)
    assert pins == {"foo-bar": "1.0", "baz": "2.0"}
    assert unpinned(["foo.bar", "qux"], pins) == ["qux"]
    assert version_mismatches(pins, {"foo-bar": "1.0", "baz": "2.1"}) == ["baz: pinned 2.0, installed 2.1"]
    assert version_mismatches(pins, {"foo-bar": "1.0"}) == ["baz: pinned 2.0, installed nothing"]
    constraints.write_text("foo>=1.0\n")
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_pins(constraints)
