"""One Lambda function per step (issue 13): every Task state of the state machines invokes a
function of its own, each function has a handler of its own, and no handler, ASL payload or sample
event dispatches on an ``action`` string any more. Per-function IAM, log groups, alarms and
dashboard widgets are checked by test_iam_policies.py and test_observability.py.
"""

from __future__ import annotations

import ast
import copy
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from isrflow.local.sam_template import load_app, load_template

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("ISRFLOW_STATIC_ROOT", REPO)).resolve()
TEMPLATE = ROOT / "template.yaml"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
FUNCTION = "AWS::Serverless::Function"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(TEMPLATE)


def _tasks(states: dict) -> list[tuple[str, dict]]:
    """Every Lambda invoke Task of a states dict, nested Map processors included."""
    out = []
    for name, state in states.items():
        if state.get("Type") == "Task" and state.get("Resource") == LAMBDA_INVOKE:
            out.append((name, state))
        for inner in ("ItemProcessor", "Iterator"):
            if inner in state:
                out += _tasks(state[inner]["States"])
        for branch in state.get("Branches", []):
            out += _tasks(branch["States"])
    return out


def _has_action(node: Any) -> bool:
    if isinstance(node, dict):
        return any(k in ("action", "action.$") or _has_action(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_action(v) for v in node)
    return False


def task_problems(template: dict) -> list[str]:
    """Each Lambda Task names one function of the template through a substitution, without an
    ``action`` in its payload; no function serves two different kinds of state."""
    problems = []
    resources = template["Resources"]
    served: dict[str, set[str]] = {}
    for lid, res in resources.items():
        if res.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        substitutions = props.get("DefinitionSubstitutions") or {}
        definition = json.loads((ROOT / props["DefinitionUri"]).read_text())
        for name, state in _tasks(definition["States"]):
            params = state.get("Parameters") or {}
            target = str(params.get("FunctionName", ""))
            key = target.removeprefix("${").removesuffix("}")
            value = substitutions.get(key)
            function = (value or {}).get("Fn::GetAtt", [None])[0] if isinstance(value, dict) else None
            if resources.get(function or "", {}).get("Type") != FUNCTION:
                problems.append(f"{lid}.{name}: FunctionName {target} is not a function of the template")
                continue
            if _has_action(params.get("Payload")):
                problems.append(f"{lid}.{name}: the payload still carries an action")
            # RecordFailure / RecordIsrFailure: the same step under two names
            served.setdefault(function, set()).add(name.removeprefix("Record").replace("Isr", ""))
    problems += [f"{fn} serves several states: {sorted(s)}" for fn, s in sorted(served.items()) if len(s) > 1]
    return problems


def test_every_task_invokes_a_function_of_its_own(template):
    assert task_problems(template) == []


def test_every_function_has_a_handler_of_its_own():
    app = load_app(TEMPLATE)
    entry = Counter(
        (f.package_type, str(f.dockerfile or f.code_dir), f.handler) for f in app.functions.values()
    )
    assert [e for e, n in entry.items() if n > 1] == []


def test_no_handler_dispatches_on_an_action():
    app = load_app(TEMPLATE)
    problems = []
    for path in sorted({f.handler_file for f in app.functions.values()}):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value == "action":
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert problems == []


def test_no_sample_event_carries_an_action():
    events = sorted((ROOT / "events").glob("*.json"))
    assert events
    assert [p.name for p in events if "action" in json.loads(p.read_text())] == []


def test_checks_can_fail(template):
    broken = copy.deepcopy(template)
    machine = broken["Resources"]["ProcessVisitStateMachine"]["Properties"]
    machine["DefinitionSubstitutions"]["MosaicFunctionArn"] = machine["DefinitionSubstitutions"][
        "IsrFunctionArn"
    ]
    del machine["DefinitionSubstitutions"]["SummarizeFunctionArn"]
    problems = task_problems(broken)
    assert "IsrFunction serves several states: ['Cluster', 'Mosaics']" in problems
    assert (
        "ProcessVisitStateMachine.Summarize: FunctionName ${SummarizeFunctionArn} is not a function of the template"
        in problems
    )
    assert _has_action({"Payload": {"plan.$": "$", "x": [{"action": "summarize"}]}})
