"""checkov on template.yaml against the committed baseline of accepted findings (checkov-baseline.yaml).

Run by ``make lint`` (``python tests/static/checkov_gate.py``, exit 1 on a problem) and by
tests/static/test_checkov.py. A problem is: a failed check not in the baseline (fix it, or accept it
there with its reason), a baseline entry checkov no longer reports (remove it), an entry without a
reason, or a template checkov could not parse. checkov runs offline (``--skip-download``) from its
own venv (``make tools``: it pins a boto3 that aws-sam-cli's pin excludes, so it cannot share
``.tools-venv``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".checkov-venv" / "bin" / "checkov"
BASELINE = REPO / "checkov-baseline.yaml"
TEMPLATE = REPO / "template.yaml"
#: The shortest reason accepted (characters): a reason says why, not just "accepted".
MIN_REASON = 40

Finding = tuple[str, str]  # (check id, resource), e.g. ("CKV_AWS_18", "AWS::S3::Bucket.DataBucket")


@dataclass(frozen=True)
class Report:
    failed: frozenset[Finding]
    passed: int
    parsing_errors: int
    version: str


def load_baseline(path: Path = BASELINE) -> tuple[dict[Finding, str], list[str]]:
    """Accepted finding -> reason, and the problems of the file itself."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    accepted: dict[Finding, str] = {}
    problems = []
    for i, entry in enumerate(doc.get("accepted") or []):
        check, reason = entry.get("check"), " ".join(str(entry.get("reason") or "").split())
        resources = entry.get("resources") or []
        if not check or not resources:
            problems.append(f"{path.name} entry {i}: needs a check and its resources")
        if len(reason) < MIN_REASON:
            problems.append(f"{path.name} entry {i} ({check}): give the reason it is accepted")
        for resource in resources:
            if (check, resource) in accepted:
                problems.append(f"{path.name}: {check} {resource} is listed twice")
            accepted[(check, resource)] = reason
    return accepted, problems


def run_checkov(template: Path = TEMPLATE, checkov: Path = CHECKOV) -> Report:
    """checkov's CloudFormation checks of ``template`` (JSON report)."""
    result = subprocess.run(
        [
            str(checkov),
            "--file",
            str(template),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        cwd=template.parent,
    )
    try:
        doc = json.loads(result.stdout)
    except ValueError as exc:
        raise RuntimeError(
            f"checkov gave no JSON report (exit {result.returncode}):\n{result.stderr[-2000:]}"
        ) from exc
    if isinstance(doc, list):  # one report per framework
        (doc,) = [d for d in doc if d.get("check_type") == "cloudformation"]
    results, summary = doc.get("results", {}), doc.get("summary", {})
    failed = frozenset((c["check_id"], c["resource"]) for c in results.get("failed_checks", []))
    return Report(
        failed,
        int(summary.get("passed", 0)),
        int(summary.get("parsing_errors", 0)),
        str(summary.get("checkov_version", "?")),
    )


def compare(report: Report, accepted: dict[Finding, str]) -> list[str]:
    """The problems of a report against the baseline (empty: the gate passes)."""
    problems = []
    if report.parsing_errors:
        problems.append(f"checkov could not parse the template ({report.parsing_errors} parsing errors)")
    for check, resource in sorted(report.failed - set(accepted)):
        problems.append(
            f"unexplained finding {check} on {resource}: fix it, or accept it in "
            f"{BASELINE.name} with its reason"
        )
    for check, resource in sorted(set(accepted) - report.failed):
        problems.append(
            f"{BASELINE.name} accepts {check} on {resource}, which checkov no longer reports: remove it"
        )
    return problems


def main() -> int:
    if not CHECKOV.exists():
        print(f"{CHECKOV.relative_to(REPO)} is missing; install it with `make tools`", file=sys.stderr)
        return 2
    accepted, problems = load_baseline()
    report = run_checkov()
    problems += compare(report, accepted)
    print(
        f"checkov {report.version}: {report.passed} passed, {len(report.failed)} failed "
        f"({len(report.failed & set(accepted))} accepted in {BASELINE.name})"
    )
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
