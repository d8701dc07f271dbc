"""Static checks of the deployable application: template.yaml, the ASL files, handlers, Dockerfiles.

Nothing here deploys or calls AWS. The external tools come from the repository's own installs:
``make tools`` (cfn-lint and sam in ``.tools-venv``) and ``make npm-tools`` (asl-validator in
``node_modules``); ``make test`` runs both first. In CI (``CI=true``) a missing tool fails its
test; elsewhere it is skipped with the command that installs it.

``ISRFLOW_STATIC_ROOT`` points the checks at another copy of the repository's files (a scratch
tree with a work-in-progress template or ASL file); by default they check this repository.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from isrflow.local.sam_template import load_app, load_template

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ISRFLOW_STATIC_ROOT", REPO)).resolve()
TEMPLATE = ROOT / "template.yaml"
TOOLS_BIN = REPO / ".tools-venv" / "bin"
NODE_BIN = REPO / "node_modules" / ".bin"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

SKIP_DIRS = {
    ".git",
    ".venv",
    ".tools-venv",
    ".checkov-venv",
    "node_modules",
    ".aws-sam",
    ".pytest_cache",
    "demo-repo",
}
# The stand-in Lambda base's Dockerfile is built from a generated context (the host's Python,
# CA bundle) by isrflow.local.containers.standin; tests/containers builds and runs it.
GENERATED_CONTEXT_DOCKERFILES = {"layers/isrflow/isrflow/local/containers/standin/Dockerfile"}
#: The base of the function images: the AWS Lambda Python 3.12 base, by tag (a digest is added by
#: `make pin-base-images` on a machine that can reach the registry; see docs/deploy.md).
LAMBDA_BASE = re.compile(r"^public\.ecr\.aws/lambda/python:3\.12(@sha256:[0-9a-f]{64})?$")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
PINNED_IMAGE = re.compile(r"^[^\s@]+:[^\s@/:]+@sha256:[0-9a-f]{64}$")
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def _tool(path: Path, install: str) -> Path:
    if path.exists():
        return path
    message = f"{path.relative_to(REPO)} is missing; install it with `{install}`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _run(
    argv: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _offline_aws_env() -> dict[str, str]:
    """Dummy credentials and a region, so nothing can reach (or needs) a real account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _asl_files() -> list[Path]:
    return sorted((ROOT / "statemachines").glob("*.asl.json"))


# --- linters ------------------------------------------------------------------------------------


def test_cfn_lint_passes():
    cfn_lint = _tool(TOOLS_BIN / "cfn-lint", "make tools")
    result = _run([cfn_lint, TEMPLATE])
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"


def test_sam_validate_lint_passes_offline():
    sam = _tool(TOOLS_BIN / "sam", "make tools")
    result = _run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template-file", TEMPLATE],
        env=_offline_aws_env(),
    )
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}{result.stderr}"


def test_sam_transform_validates_offline():
    """Plain `sam validate` runs the SAM transform itself (policy templates, events, Globals)."""
    sam = _tool(TOOLS_BIN / "sam", "make tools")
    result = _run(
        [sam, "validate", "--region", "us-east-1", "--template-file", TEMPLATE], env=_offline_aws_env()
    )
    assert result.returncode == 0, f"sam validate failed:\n{result.stdout}{result.stderr}"


def test_asl_validator_passes_on_every_state_machine():
    validator = _tool(NODE_BIN / "asl-validator", "make npm-tools")
    files = _asl_files()
    assert files, f"no statemachines/*.asl.json under {ROOT}"
    failures = []
    for path in files:
        result = _run([validator, "--json-path", path])
        if result.returncode != 0:
            failures.append(f"{path.name}:\n{result.stdout}{result.stderr}")
    assert not failures, "asl-validator rejected:\n" + "\n".join(failures)


# --- the template and the ASL files agree ---------------------------------------------------------


def test_every_placeholder_is_substituted_and_every_substitution_used(template):
    state_machines = {
        lid: res for lid, res in template["Resources"].items() if res.get("Type") in STATE_MACHINE_TYPES
    }
    assert state_machines, "template.yaml declares no state machine"
    used_files = set()
    problems = []
    for lid, res in state_machines.items():
        props = res.get("Properties") or {}
        uri = props.get("DefinitionUri")
        assert isinstance(uri, str), f"{lid}: DefinitionUri must be a path in the repository"
        path = (ROOT / uri).resolve()
        assert path.is_file(), f"{lid}: DefinitionUri {uri} does not exist"
        used_files.add(path)
        text = path.read_text(encoding="utf-8")
        json.loads(text)  # the file is plain JSON before substitution
        placeholders = set(PLACEHOLDER.findall(text))
        substitutions = set((props.get("DefinitionSubstitutions") or {}).keys())
        if placeholders - substitutions:
            problems.append(
                f"{lid}: {uri} uses ${{…}} the template does not substitute: "
                f"{sorted(placeholders - substitutions)}"
            )
        if substitutions - placeholders:
            problems.append(
                f"{lid}: DefinitionSubstitutions not used by {uri}: {sorted(substitutions - placeholders)}"
            )
    orphans = [p.name for p in _asl_files() if p.resolve() not in used_files]
    if orphans:
        problems.append(f"ASL files no state machine in template.yaml uses: {orphans}")
    assert not problems, "\n".join(problems)


# --- handlers ------------------------------------------------------------------------------------


def _defines(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (a.asname or a.name) == name for a in node.names
        ):
            return True
    return False


def test_every_function_handler_resolves():
    app = load_app(TEMPLATE)
    assert app.functions, "template.yaml declares no function"
    problems = []
    for function in app.functions.values():
        source = function.handler_file
        label = f"{function.logical_id} ({function.handler})"
        if not source.is_file():
            problems.append(f"{label}: {source.relative_to(ROOT)} does not exist")
            continue
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        if not _defines(tree, function.handler_attribute):
            problems.append(f"{label}: {source.relative_to(ROOT)} defines no {function.handler_attribute}")
        if function.package_type == "Image":
            # The image must put that file where the runtime imports it from.
            copies = [_copy_sources(args) for kw, args in _instructions(function.dockerfile) if kw == "COPY"]
            rel = source.relative_to(function.docker_context).as_posix()
            if not any(
                rel == src or rel.startswith(src + "/") or src == "."
                for sources, dest in copies
                if "LAMBDA_TASK_ROOT" in dest or dest.startswith("/var/task")
                for src in sources
            ):
                problems.append(
                    f"{label}: {function.dockerfile.relative_to(ROOT)} does not COPY {rel} "
                    "into ${LAMBDA_TASK_ROOT}"
                )
    assert not problems, "\n".join(problems)


_BLOCK_SCIENCE = """
import importlib.abc, importlib.util, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"numpy", "scipy", "astropy"}:
            raise ImportError(f"{name} is not in the registry-only layer")
sys.meta_path.insert(0, _Block())
spec = importlib.util.spec_from_file_location("handler_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""


def test_zip_handlers_import_without_the_science_stack():
    """Zip functions run on the registry-only layer: their handlers must import without numpy/astropy."""
    app = load_app(TEMPLATE)
    zipped = [f for f in app.functions.values() if f.package_type == "Zip"]
    assert zipped
    problems = []
    for function in zipped:
        if not function.handler_file.is_file():
            continue  # reported by test_every_function_handler_resolves
        result = subprocess.run(
            [sys.executable, "-c", _BLOCK_SCIENCE, str(function.handler_file)],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            problems.append(f"{function.logical_id}: {result.stderr.strip().splitlines()[-1]}")
    assert not problems, "\n".join(problems)


# --- Dockerfiles ---------------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def _copy_sources(args: str) -> tuple[list[str], str]:
    """COPY/ADD sources and destination (flags such as --chown dropped); ([], dest) for --from."""
    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = [p for p in parts if p.startswith("--")]
    parts = [p for p in parts if not p.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return [], parts[-1] if parts else ""
    return [p.rstrip("/") or "." for p in parts[:-1]], parts[-1] if parts else ""


def _dockerfiles(template: dict) -> dict[Path, Path]:
    """Every Dockerfile in the tree -> its build context (from the template's Metadata, else its folder)."""
    found: dict[Path, Path] = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name == "Dockerfile" or name.startswith("Dockerfile.") or name.endswith(".Dockerfile"):
                path = Path(dirpath, name).resolve()
                found[path] = path.parent
    for res in template["Resources"].values():
        meta = res.get("Metadata") or {}
        if "Dockerfile" in meta:
            context = (ROOT / meta.get("DockerContext", ".")).resolve()
            found[(context / meta["Dockerfile"]).resolve()] = context
    return found


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `relative` (or a folder above it) out of the build context."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _dockerignore_regex(raw.lstrip("!").strip().strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerfiles_pin_base_images_and_copy_existing_files(template):
    dockerfiles = _dockerfiles(template)
    assert dockerfiles, "no Dockerfile found (the ISR function is a container image)"
    problems = []
    for dockerfile, context in sorted(dockerfiles.items()):
        label = dockerfile.relative_to(ROOT)
        if label.as_posix() in GENERATED_CONTEXT_DOCKERFILES:
            continue
        if not dockerfile.is_file():
            problems.append(f"{label}: named by template.yaml but missing")
            continue
        ignore_file = context / ".dockerignore"
        patterns = (
            [
                line.strip()
                for line in ignore_file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")
            ]
            if ignore_file.exists()
            else []
        )
        stages: set[str] = set()
        instructions = _instructions(dockerfile)
        arg_defaults = dict(a.split("=", 1) for kw, a in instructions if kw == "ARG" and "=" in a)
        if not any(kw == "FROM" for kw, _ in instructions):
            problems.append(f"{label}: no FROM")
        for keyword, args in instructions:
            if keyword == "FROM":
                words = [w for w in args.split() if not w.startswith("--")]
                image = words[0]
                if image.startswith("${") and image.endswith("}"):  # FROM ${ARG}: its default counts
                    image = arg_defaults.get(image[2:-1], image)
                if len(words) >= 3 and words[1].upper() == "AS":
                    stages.add(words[2].lower())
                if image.lower() in stages or image == "scratch":
                    continue
                if not (PINNED_IMAGE.match(image) or LAMBDA_BASE.match(image)):
                    problems.append(
                        f"{label}: FROM {image} is neither the Lambda Python 3.12 base by tag nor "
                        "pinned by tag and sha256 digest"
                    )
            elif keyword in ("COPY", "ADD"):
                sources, _dest = _copy_sources(args)
                for source in sources:
                    if source.startswith(("http://", "https://")):
                        problems.append(f"{label}: {keyword} of a URL ({source}) is not reproducible")
                        continue
                    matches = (
                        [source]
                        if not any(c in source for c in "*?[")
                        else [p.relative_to(context).as_posix() for p in context.glob(source)]
                    )
                    if not matches or not all((context / m).exists() for m in matches):
                        problems.append(
                            f"{label}: {keyword} source {source} does not exist in the "
                            f"build context {context.relative_to(ROOT) if context != ROOT else '.'}"
                        )
                    elif any(_ignored(m, patterns) for m in matches):
                        problems.append(f"{label}: {keyword} source {source} is excluded by .dockerignore")
    assert not problems, "\n".join(problems)


# --- IAM -----------------------------------------------------------------------------------------


def _statements(node, where="template"):
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield where, node
        for key, value in node.items():
            yield from _statements(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _statements(value, f"{where}[{i}]")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_allows_every_action_on_every_resource(template):
    problems = []
    for where, statement in _statements(template["Resources"], "Resources"):
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement:
            problems.append(f"{where}: Allow with NotAction")
        actions = [a for a in _as_list(statement.get("Action", [])) if isinstance(a, str)]
        resources = _as_list(statement.get("Resource", []))
        if any(a == "*" or a.endswith(":*") for a in actions) and "*" in resources:
            problems.append(f"{where}: allows {actions} on '*'")
        if any(a == "*" for a in actions):
            problems.append(f"{where}: allows every action")
    for lid, res in template["Resources"].items():
        for policy in _as_list((res.get("Properties") or {}).get("Policies") or []):
            if isinstance(policy, str) and (policy == "AdministratorAccess" or policy.endswith("FullAccess")):
                problems.append(f"Resources.{lid}: managed policy {policy} is not least privilege")
    assert not problems, "\n".join(problems)


def test_template_has_no_literal_account_or_region(template):
    """ARNs are built with !Sub and pseudo parameters, so the stack deploys to any account and region."""
    text = TEMPLATE.read_text(encoding="utf-8")
    assert not re.search(r"arn:aws:[a-z0-9-]+:[a-z]{2}-[a-z]+-\d:\d{12}:", text), (
        "literal ARN in template.yaml"
    )
    assert not re.search(r"\b[a-z]{2}-(?:north|south|east|west|central|northeast|southeast)-\d\b", text), (
        "literal region in template.yaml"
    )
