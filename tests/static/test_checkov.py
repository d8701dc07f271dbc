"""checkov on template.yaml: every finding is fixed or accepted in checkov-baseline.yaml with its reason
(tests/static/checkov_gate.py, also run by ``make lint``). checkov comes from ``make tools``
(.checkov-venv); without it the run is skipped, except in CI (CI=true) where it fails."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkov_gate as gate

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def test_the_template_has_no_unexplained_checkov_finding():
    if not gate.CHECKOV.exists():
        message = f"{gate.CHECKOV.relative_to(gate.REPO)} is missing; install it with `make tools`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    accepted, problems = gate.load_baseline()
    report = gate.run_checkov()
    problems += gate.compare(report, accepted)
    assert report.passed > 0 and not problems, "\n".join(problems)


def test_the_baseline_gives_a_reason_for_every_accepted_finding():
    accepted, problems = gate.load_baseline()
    assert accepted and not problems, "\n".join(problems)


def test_the_gate_fails_on_new_and_on_stale_findings(tmp_path):
    accepted = {("CKV_AWS_18", "AWS::S3::Bucket.DataBucket"): "access logs: CloudTrail data events instead"}
    report = gate.Report(
        frozenset(
            {("CKV_AWS_18", "AWS::S3::Bucket.DataBucket"), ("CKV_AWS_21", "AWS::S3::Bucket.DataBucket")}
        ),
        10,
        0,
        "x",
    )
    assert gate.compare(report, accepted) == [
        "unexplained finding CKV_AWS_21 on AWS::S3::Bucket.DataBucket: fix it, or accept it in "
        "checkov-baseline.yaml with its reason"
    ]
    fixed = gate.Report(frozenset(), 10, 0, "x")
    assert "no longer reports" in gate.compare(fixed, accepted)[0]
    assert "could not parse" in gate.compare(gate.Report(frozenset(), 0, 1, "x"), {})[0]
    bad = tmp_path / "baseline.yaml"
    bad.write_text(
        "accepted:\n  - check: CKV_AWS_18\n    resources: [AWS::S3::Bucket.DataBucket]\n"
        "    reason: accepted\n"
    )
    assert "give the reason" in gate.load_baseline(bad)[1][0]
