"""Conformance of isrflow's local ASL interpreter, case by case after the Amazon States
Language specification (https://states-language.net/spec.html) sections.

Expected values are the specification's own worked examples where it has them (marked
"spec"), AWS developer-guide examples where the spec has none ("AWS doc"), and otherwise
derived from the rule being tested. Where AWS's observable behaviour differs from the
specification text, the test follows AWS and says so (the project deploys to AWS).

Every test uses a FakeClock, so retries and waits cost no time; the waits requested are
asserted instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import pytest

from isrflow.local.asl import (
    ECS_RUN_TASK_SYNC,
    STATES_START_EXECUTION_SYNC2,
    DefinitionError,
    ExecutionAlreadyExists,
    FakeClock,
    Interpreter,
    LocalIntegrations,
    RealClock,
    StateMachine,
    TaskFailure,
    UnsupportedFeatureError,
    count_state_transitions,
)

LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:{}"
INVOKE = "arn:aws:states:::lambda:invoke"


# --------------------------------------------------------------------------- helpers


class Scripted:
    """An ``Integrations`` whose outcomes are scripted: each call takes the next outcome (the
    last one repeats); an exception instance is raised, anything else returned."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes) or [None]
        self.calls: list[tuple] = []

    def invoke(self, resource, parameters, context):
        self.calls.append((resource, parameters, context))
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome(parameters) if callable(outcome) else outcome


def machine(states: dict, start: str | None = None, **top) -> StateMachine:
    return StateMachine.from_json(
        {"StartAt": start or next(iter(states)), "States": states, **top}, "Conformance"
    )


def run(states_or_machine, data=None, integrations=None, functions=None, clock=None, **kw):
    m = states_or_machine if isinstance(states_or_machine, StateMachine) else machine(states_or_machine)
    if integrations is None:
        integrations = LocalIntegrations(functions or {})
    interp = Interpreter(integrations, clock=clock or FakeClock(), **kw)
    return interp.start_execution(m, data)


def task(name="F", **fields) -> dict:
    st = {"Type": "Task", "Resource": LAMBDA.format(name)}
    st.update(fields)
    if "Next" not in st:
        st["End"] = True
    return st


def types(execution) -> list[str]:
    return [e["type"] for e in execution.history]


def errors_named(*names):
    """Exception classes with the given names (Lambda error names are class names)."""
    return {n: type(n, (Exception,), {}) for n in names}


# =========================================================================== Structure of a State Machine


def test_structure_hello_world_runs_the_lambda_task():
    ex = run(
        {"Hello World": task("HelloWorld")},
        {"who": "me"},
        functions={"HelloWorld": lambda event, ctx: f"Hello, {event['who']}"},
    )
    assert ex.status == "SUCCEEDED" and ex.output == "Hello, me"


def test_structure_data_example_adds_two_numbers():  # spec "Data": input {val1:3,val2:4} -> 7
    ex = run(
        {"Add": task("Add")}, {"val1": 3, "val2": 4}, functions={"Add": lambda e, c: e["val1"] + e["val2"]}
    )
    assert ex.output == 7


def test_structure_default_input_is_empty_object():
    ex = run({"P": {"Type": "Pass", "End": True}})
    assert ex.output == {}


def test_structure_top_level_timeout_seconds_times_the_execution_out():
    clock = FakeClock()
    m = machine({"W": {"Type": "Wait", "Seconds": 30, "End": True}}, TimeoutSeconds=10)
    ex = run(m, clock=clock)
    assert ex.status == "TIMED_OUT" and ex.error == "States.Timeout"
    assert clock.sleeps == [10]
    assert types(ex)[-1] == "ExecutionTimedOut"


# =========================================================================== Definition validation (load time)


def test_transitions_next_must_name_a_state_in_scope():
    with pytest.raises(DefinitionError) as exc:
        machine({"A": {"Type": "Pass", "Next": "Nowhere"}})
    assert "States.A.Next" in str(exc.value) and "'Nowhere'" in str(exc.value)


def test_transitions_cannot_cross_into_a_map_processor():
    with pytest.raises(DefinitionError) as exc:
        machine(
            {
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {"StartAt": "In", "States": {"In": {"Type": "Pass", "End": True}}},
                    "Next": "In",
                }
            }
        )
    assert "cannot cross" in str(exc.value)


def test_states_names_are_unique_in_the_whole_machine():
    with pytest.raises(DefinitionError, match="duplicate state name"):
        machine(
            {
                "M": {
                    "Type": "Map",
                    "End": True,
                    "ItemProcessor": {"StartAt": "M", "States": {"M": {"Type": "Pass", "End": True}}},
                }
            }
        )


def test_definition_reports_every_problem_with_its_location():
    with pytest.raises(DefinitionError) as exc:
        machine(
            {
                "A": {
                    "Type": "Task",
                    "Next": "B",
                    "Retry": [{"ErrorEquals": ["States.ALL", "X"]}],
                    "Bogus": 1,
                },
                "B": {"Type": "Wait", "End": True},
                "C": {"Type": "Succeed"},
            }
        )
    locs = {loc for loc, _ in exc.value.problems}
    assert {
        "States.A.Resource",
        "States.A.Retry[0].ErrorEquals",
        "States.A.Bogus",
        "States.B",
        "States.C",
    } <= locs


def test_retrying_states_all_must_appear_alone_and_last():
    with pytest.raises(DefinitionError, match="alone"):
        machine({"T": task(Retry=[{"ErrorEquals": ["States.ALL", "ErrorA"]}])})
    with pytest.raises(DefinitionError, match=r"Retry\[0\].*last"):
        machine({"T": task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["ErrorA"]}])})
    with pytest.raises(DefinitionError, match=r"Catch\[0\].*last"):
        machine(
            {
                "T": task(
                    Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Z"}, {"ErrorEquals": ["E"], "Next": "Z"}],
                    Next="Z",
                ),
                "Z": {"Type": "Succeed"},
            }
        )


@pytest.mark.parametrize(
    ("retrier", "field"),
    [
        ({"ErrorEquals": ["E"], "BackoffRate": 0.5}, "BackoffRate"),
        ({"ErrorEquals": ["E"], "IntervalSeconds": 0}, "IntervalSeconds"),
        ({"ErrorEquals": ["E"], "MaxAttempts": -1}, "MaxAttempts"),
        ({"ErrorEquals": ["E"], "MaxDelaySeconds": 0}, "MaxDelaySeconds"),
        ({"ErrorEquals": ["E"], "JitterStrategy": "SAMPLE"}, "JitterStrategy"),
        ({"ErrorEquals": []}, "ErrorEquals"),
    ],
)
def test_retrying_retrier_fields_are_validated(retrier, field):
    with pytest.raises(DefinitionError, match=rf"States\.T\.Retry\[0\]\.{field}"):
        machine({"T": task(Retry=[retrier])})


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"ItemBatcher": {"MaxItemsPerBatch": 10}}, "States.M.ItemBatcher"),
        # a ResultWriter that only transforms the state output (no export) is outside the subset
        (
            {"ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}}},
            "States.M.ResultWriter",
        ),
        ({"ToleratedFailurePercentage": 5}, "States.M.ToleratedFailurePercentage"),
        ({"ToleratedFailureCount": 1}, "States.M.ToleratedFailureCount"),
        ({"ToleratedFailurePercentagePath": "$.p"}, "States.M.ToleratedFailurePercentagePath"),
    ],
)
def test_map_state_unsupported_fields_are_rejected_at_load(fields, location):
    st = {
        "Type": "Map",
        "End": True,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "End": True}},
        },
        **fields,
    }
    with pytest.raises(UnsupportedFeatureError) as exc:
        machine({"M": st})
    assert location in str(exc.value)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (
            {"ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}}},
            "EXPRESS",
        ),
        (
            {"ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": "b"}}},
            "listObjectsV2",
        ),
        (
            {
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "CSV"},
                    "Parameters": {"Bucket": "b", "Key": "k"},
                }
            },
            "CSV",
        ),
    ],
)
def test_distributed_map_unsupported_variants_are_rejected_at_load(patch, needle):
    st = {
        "Type": "Map",
        "End": True,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "End": True}},
        },
    }
    for k, v in patch.items():
        if k == "ItemProcessor":
            st[k].update(v)
        else:
            st[k] = v
    with pytest.raises(UnsupportedFeatureError, match=needle):
        machine({"M": st})


def test_jsonata_and_variables_are_rejected_at_load():
    with pytest.raises(UnsupportedFeatureError, match="QueryLanguage"):
        machine({"P": {"Type": "Pass", "End": True}}, QueryLanguage="JSONata")
    with pytest.raises(UnsupportedFeatureError, match=r"States\.P\.Assign"):
        machine({"P": {"Type": "Pass", "Assign": {"x": 1}, "End": True}})


def test_item_reader_requires_a_distributed_map():
    with pytest.raises(DefinitionError, match="only allowed in a DISTRIBUTED Map"):
        machine(
            {
                "M": {
                    "Type": "Map",
                    "End": True,
                    "ItemReader": {
                        "Resource": "arn:aws:states:::s3:getObject",
                        "ReaderConfig": {"InputType": "JSON"},
                        "Parameters": {"Bucket": "b", "Key": "k"},
                    },
                    "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                }
            }
        )


def test_reference_paths_result_path_must_be_definite_and_not_the_context():
    with pytest.raises(DefinitionError, match="Reference Path"):
        machine({"P": {"Type": "Pass", "ResultPath": "$.a[*]", "End": True}})
    with pytest.raises(DefinitionError, match=r"\$\$"):
        machine({"P": {"Type": "Pass", "ResultPath": "$$.Execution", "End": True}})


def test_definition_substitutions_replace_placeholders():
    d = json.dumps({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "${AddArn}", "End": True}}})
    m = StateMachine.from_json(d, "Sub", substitutions={"AddArn": LAMBDA.format("Add")})
    ex = Interpreter(LocalIntegrations({"Add": lambda e, c: 1}), clock=FakeClock()).start_execution(m)
    assert ex.output == 1
    with pytest.raises(DefinitionError, match=r"\$\{AddArn\}"):
        StateMachine.from_json(d, "Sub", substitutions={})


# =========================================================================== Paths and Reference Paths

REF_INPUT = {"foo": 123, "bar": ["a", "b", "c"], "car": {"cdr": True}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [  # spec "Reference Paths"
        ("$.foo", 123),
        ("$.bar", ["a", "b", "c"]),
        ("$.car.cdr", True),
        ("$['car']['cdr']", True),
        ("$.bar[1]", "b"),
        ("$.bar[-1]", "c"),
    ],
)
def test_reference_paths_spec_examples(path, expected):
    ex = run({"P": {"Type": "Pass", "InputPath": path, "End": True}}, REF_INPUT)
    assert ex.output == expected


def test_paths_index_then_field_selects_the_value_not_a_list():
    # moto 5.2.5 returns a one-element list for $.a[0].b (local-runtime notes); ASL selects the value
    ex = run({"P": {"Type": "Pass", "Parameters": {"v.$": "$.a[0].b"}, "End": True}}, {"a": [{"b": 42}]})
    assert ex.output == {"v": 42}


def test_paths_multiple_results_are_gathered_into_an_array():
    # spec: $.a[0,1] on {"a": [1, 2, 3, 4]} gives [1, 2]; AWS doc: $.a[0:2] gives [1, 2]
    for path in ("$.a[0,1]", "$.a[0:2]"):
        ex = run({"P": {"Type": "Pass", "InputPath": path, "End": True}}, {"a": [1, 2, 3, 4]})
        assert ex.output == [1, 2]


def test_paths_context_object_execution_state_and_state_machine():
    m = machine(
        {
            "Ctx": {
                "Type": "Pass",
                "Parameters": {
                    "id.$": "$$.Execution.Id",
                    "name.$": "$$.Execution.Name",
                    "input.$": "$$.Execution.Input",
                    "state.$": "$$.State.Name",
                    "machine.$": "$$.StateMachine.Name",
                },
                "End": True,
            }
        }
    )
    interp = Interpreter(LocalIntegrations(), clock=FakeClock())
    ex = interp.start_execution(m, {"x": 1}, name="run-1")
    assert ex.output == {
        "id": ex.execution_arn,
        "name": "run-1",
        "input": {"x": 1},
        "state": "Ctx",
        "machine": "Conformance",
    }
    assert ex.execution_arn == "arn:aws:states:us-east-1:123456789012:execution:Conformance:run-1"


# =========================================================================== Payload Template


def test_payload_template_spec_example():
    # spec "Payload Template" (the example reads DayOfWeek with "$.", i.e. from the input)
    seen = Scripted(lambda p: "ok")
    m = machine(
        {
            "X": {
                "Type": "Task",
                "Resource": "arn:aws:states:us-east-1:123456789012:task:X",
                "End": True,
                "Parameters": {
                    "flagged": True,
                    "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[-3:]"},
                    "weekday.$": "$.DayOfWeek",
                    "formattedOutput.$": "States.Format('Today is {}', $.DayOfWeek)",
                },
            }
        }
    )
    run(m, {"flagged": 7, "vals": [0, 10, 20, 30, 40, 50], "DayOfWeek": "TUESDAY"}, integrations=seen)
    assert seen.calls[0][1] == {
        "flagged": True,
        "parts": {"first": 0, "last3": [30, 40, 50]},
        "weekday": "TUESDAY",
        "formattedOutput": "Today is TUESDAY",
    }


def test_payload_template_aws_doc_parameters_example():  # AWS doc "Manipulate parameters"
    data = {
        "comment": "Example for Parameters.",
        "product": {
            "details": {"color": "blue", "size": "small", "material": "cotton"},
            "availability": "in stock",
            "sku": "2317",
            "cost": "$23",
        },
    }
    ex = run(
        {
            "P": {
                "Type": "Pass",
                "End": True,
                "Parameters": {
                    "comment": "Selecting what I care about.",
                    "MyDetails": {
                        "size.$": "$.product.details.size",
                        "exists.$": "$.product.availability",
                        "StaticValue": "foo",
                    },
                },
            }
        },
        data,
    )
    assert ex.output == {
        "comment": "Selecting what I care about.",
        "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"},
    }


def test_payload_template_nested_in_arrays():
    ex = run({"P": {"Type": "Pass", "End": True, "Parameters": {"list": [{"a.$": "$.x"}, 2]}}}, {"x": 1})
    assert ex.output == {"list": [{"a": 1}, 2]}


def test_payload_template_path_that_cannot_be_applied_fails_with_states_runtime():
    # spec: States.ParameterPathFailure; AWS reports States.Runtime (not catchable) — we follow AWS
    ex = run(
        {
            "T": task(
                Parameters={"JobName.$": "$.JobName"},
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                Next="Done",
            ),
            "Caught": {"Type": "Succeed"},
            "Done": {"Type": "Succeed"},
        },
        {},
    )
    assert ex.status == "FAILED" and ex.error == "States.Runtime"
    assert (
        "The JSONPath '$.JobName' specified for the field 'JobName.$' could not be found in the input '{}'"
        in ex.cause
    )


def test_payload_template_duplicate_field_after_stripping_is_rejected():
    with pytest.raises(DefinitionError, match="duplicate field 'a'"):
        machine({"P": {"Type": "Pass", "Parameters": {"a": 1, "a.$": "$.x"}, "End": True}})


def test_payload_template_value_must_be_path_or_intrinsic():
    with pytest.raises(DefinitionError, match=r"States\.P\.Parameters\.a\.\$"):
        machine({"P": {"Type": "Pass", "Parameters": {"a.$": "not a path"}, "End": True}})


# =========================================================================== Intrinsic Functions (Appendix B)


def intrinsic(expr: str, data=None):
    ex = run({"P": {"Type": "Pass", "Parameters": {"out.$": expr}, "End": True}}, data or {})
    assert ex.status == "SUCCEEDED", (ex.error, ex.cause)
    return ex.output["out"]


def test_intrinsic_states_format_spec_example():
    assert (
        intrinsic(
            "States.Format('Your name is {}, we are in the year {}', $.name, 2020)",
            {"name": "Foo", "zebra": "stripe"},
        )
        == "Your name is Foo, we are in the year 2020"
    )


def test_intrinsic_states_format_escapes():
    assert (
        intrinsic(
            "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)",
            {"firstName": "John", "lastName": "Doe"},
        )
        == "Welcome to John Doe's playlist."
    )
    assert intrinsic("States.Format('\\{literal\\} {}', 'x')") == "{literal} x"
    assert intrinsic("States.Format('{} {} {}', true, null, 1.5)") == "true null 1.5"


def test_intrinsic_states_string_to_json_spec_example():
    assert intrinsic(
        "States.StringToJson($.someString)", {"someString": '{"number": 20}', "zebra": "stripe"}
    ) == {"number": 20}


def test_intrinsic_states_json_to_string_spec_example():
    assert (
        intrinsic(
            "States.JsonToString($.someJson)", {"someJson": {"name": "Foo", "year": 2020}, "zebra": "stripe"}
        )
        == '{"name":"Foo","year":2020}'
    )


def test_intrinsic_states_array_spec_example():
    assert intrinsic(
        "States.Array('Foo', 2020, $.someJson, null)", {"someJson": {"random": "abcdefg"}, "zebra": "stripe"}
    ) == ["Foo", 2020, {"random": "abcdefg"}, None]


@pytest.mark.parametrize(
    ("expr", "data", "expected"),
    [  # spec Appendix B examples
        (
            "States.ArrayPartition($.inputArray,4)",
            {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]},
            [[1, 2, 3, 4], [5, 6, 7, 8], [9]],
        ),
        (
            "States.ArrayContains($.inputArray, $.lookingFor)",
            {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5},
            True,
        ),
        ("States.ArrayRange(1, 9, 2)", {}, [1, 3, 5, 7, 9]),
        (
            "States.ArrayGetItem($.inputArray, $.index)",
            {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5},
            6,
        ),
        ("States.ArrayLength($.inputArray)", {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]}, 9),
        ("States.ArrayUnique($.inputArray)", {"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]}, [1, 2, 3, 4]),
        ("States.Base64Encode($.input)", {"input": "Data to encode"}, "RGF0YSB0byBlbmNvZGU="),
        # the spec prints "Decoded data" here, but RGF0YSB0byBlbmNvZGU= decodes to "Data to encode"
        ("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}, "Data to encode"),
        (
            "States.JsonMerge($.json1, $.json2, false)",
            {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}},
            {"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3},
        ),
        ("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}, 110),
        (
            "States.StringSplit($.inputString, $.splitter)",
            {"inputString": "1,2,3,4,5", "splitter": ","},
            ["1", "2", "3", "4", "5"],
        ),
        ("States.ArrayLength(States.ArrayPartition($.a, 2))", {"a": [1, 2, 3, 4, 5]}, 3),
    ],
)
def test_intrinsic_functions_spec_examples(expr, data, expected):
    assert intrinsic(expr, data) == expected


def test_intrinsic_states_hash_spec_example():
    # the spec prints a 39-digit value (a digit is missing); this is SHA-1("input data")
    out = intrinsic("States.Hash($.Data, $.Algorithm)", {"Data": "input data", "Algorithm": "SHA-1"})
    assert out == hashlib.sha1(b"input data").hexdigest() == "aaff4a450a104cd177d28d18d74485e8cae074b7"


def test_intrinsic_states_uuid_is_a_v4_uuid_and_seedable():
    out = intrinsic("States.UUID()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", out)
    m = machine({"P": {"Type": "Pass", "Parameters": {"u.$": "States.UUID()"}, "End": True}})
    a = Interpreter(LocalIntegrations(), clock=FakeClock(), seed=7).start_execution(m, name="a").output
    b = Interpreter(LocalIntegrations(), clock=FakeClock(), seed=7).start_execution(m, name="a").output
    assert a == b


def test_intrinsic_failure_fails_the_state_with_states_intrinsic_failure():
    ex = run(
        {"P": {"Type": "Pass", "Parameters": {"out.$": "States.ArrayPartition($.a, 0)"}, "End": True}},
        {"a": [1]},
    )
    assert ex.status == "FAILED" and ex.error == "States.IntrinsicFailure"


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("States.Nope($.a)", "unknown intrinsic"),
        ("States.ArrayLength($.a, $.b)", "takes 1 arguments"),
        ("States.Format('{} {}', $.a)", "placeholders"),
        ("States.Format('bad \\q escape')", "open escape"),
        ("States.MathRandom(1, 9)", "not supported"),
    ],
)
def test_intrinsic_syntax_errors_are_rejected_at_load(expr, needle):
    with pytest.raises(DefinitionError, match=needle):
        machine({"P": {"Type": "Pass", "Parameters": {"out.$": expr}, "End": True}})


# =========================================================================== Input and Output Processing

NUMBERS = {"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}}
ADD = {"Add": lambda e, c: e["val1"] + e["val2"]}


def test_input_output_processing_spec_example_numbers_to_add():
    ex = run({"Add": task("Add", InputPath="$.numbers", ResultPath="$.sum")}, NUMBERS, functions=ADD)
    assert ex.output == {"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}, "sum": 7}


def test_input_output_processing_aws_doc_output_path_selects_the_sum():
    ex = run(
        {"Add": task("Add", InputPath="$.numbers", ResultPath="$.sum", OutputPath="$.sum")},
        NUMBERS,
        functions=ADD,
    )
    assert ex.output == 7


def test_input_output_processing_result_path_constructs_intervening_objects():  # spec "$.b.greeting"
    ex = run({"T": task(ResultPath="$.b.greeting")}, {"a": 1}, functions={"F": lambda e, c: "Hi!"})
    assert ex.output == {"a": 1, "b": {"greeting": "Hi!"}}


def test_input_output_processing_result_path_overwrites_or_combines():  # spec master/detail example
    raw = {"master": {"detail": [1, 2, 3]}}
    six = {"F": lambda e, c: 6}
    assert run({"T": task(ResultPath="$.master.detail")}, raw, functions=six).output == {
        "master": {"detail": 6}
    }
    assert run({"T": task(ResultPath="$.master.result.sum")}, raw, functions=six).output == {
        "master": {"detail": [1, 2, 3], "result": {"sum": 6}}
    }


def test_input_output_processing_null_paths():
    raw = {"a": 1}
    seen = Scripted("result")
    ex = run(
        {"T": {"Type": "Task", "Resource": "r", "InputPath": None, "ResultPath": None, "End": True}},
        raw,
        integrations=seen,
    )
    assert seen.calls[0][1] == {}  # InputPath null: the effective input is {}
    assert ex.output == raw  # ResultPath null: the result is discarded, the raw input passes
    ex = run(
        {"T": {"Type": "Task", "Resource": "r", "OutputPath": None, "End": True}},
        raw,
        integrations=Scripted(1),
    )
    assert ex.output == {}  # OutputPath null: {}


def test_input_output_processing_aws_doc_result_selector_example():
    emr = {
        "resourceType": "elasticmapreduce",
        "resource": "createCluster.sync",
        "output": {
            "SdkHttpMetadata": {"HttpHeaders": {"Content-Length": "1112"}, "HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": "1234-5678-9012"},
            "ClusterId": "AKIAIOSFODNN7EXAMPLE",
        },
    }
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::elasticmapreduce:createCluster.sync",
                "ResultSelector": {"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType"},
                "ResultPath": "$.EMROutput",
                "End": True,
            }
        },
        {"Name": "cluster"},
        integrations=Scripted(emr),
    )
    assert ex.output == {
        "Name": "cluster",
        "EMROutput": {"ClusterId": "AKIAIOSFODNN7EXAMPLE", "ResourceType": "elasticmapreduce"},
    }


def test_input_output_processing_all_five_fields_in_the_spec_order():
    # InputPath -> Parameters -> (task) -> ResultSelector -> ResultPath (on the raw input) -> OutputPath
    seen = Scripted({"Payload": {"total": 7}, "StatusCode": 200})
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": INVOKE,
                "InputPath": "$.job",
                "Parameters": {"FunctionName": "Add", "Payload": {"numbers.$": "$.numbers", "static": 1}},
                "ResultSelector": {"sum.$": "$.Payload.total"},
                "ResultPath": "$.job.result",
                "OutputPath": "$.job",
                "End": True,
            }
        },
        {"keep": "me", "job": {"numbers": [3, 4]}},
        integrations=seen,
    )
    assert seen.calls[0][1] == {"FunctionName": "Add", "Payload": {"numbers": [3, 4], "static": 1}}
    assert ex.output == {"numbers": [3, 4], "result": {"sum": 7}}


def test_input_output_processing_pass_state_spec_example():
    ex = run(
        {
            "ProvideTestData": {
                "Type": "Pass",
                "Result": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
                "ResultPath": "$.coords",
                "End": True,
            }
        },
        {"georefOf": "Home"},
    )
    assert ex.output == {"georefOf": "Home", "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355}}


def test_jsonpath_runtime_errors_result_path_on_a_string_fails():
    # spec: States.ResultPathMatchFailure; AWS reports States.Runtime — we follow AWS
    ex = run({"P": {"Type": "Pass", "Result": 1, "ResultPath": "$.x", "End": True}}, "foo")
    assert ex.status == "FAILED" and ex.error == "States.Runtime"
    assert "Unable to apply ReferencePath $.x" in ex.cause


def test_input_path_that_selects_nothing_fails_with_states_runtime():
    ex = run({"P": {"Type": "Pass", "InputPath": "$.missing", "End": True}}, {"a": 1})
    assert ex.status == "FAILED" and ex.error == "States.Runtime"


def test_data_limit_task_result_over_256kb_fails_uncatchably():
    big = "x" * 300_000
    ex = run(
        {
            "T": task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}], Next="D"),
            "C": {"Type": "Succeed"},
            "D": {"Type": "Succeed"},
        },
        functions={"F": lambda e, c: big},
    )
    assert ex.status == "FAILED" and ex.error == "States.DataLimitExceeded"


# =========================================================================== Retrying after error


def test_retrying_spec_example_two_retries_after_3_and_6_seconds():
    clock = FakeClock()
    integ = Scripted(TaskFailure("States.Timeout", "slow"))
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "End": True,
                "Retry": [
                    {
                        "ErrorEquals": ["States.Timeout"],
                        "IntervalSeconds": 3,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                    }
                ],
            }
        },
        integrations=integ,
        clock=clock,
    )
    assert clock.sleeps == [3, 6]
    assert len(integ.calls) == 3
    assert ex.status == "FAILED" and ex.error == "States.Timeout"


def test_retrying_spec_example_max_delay_seconds_caps_the_interval():
    clock = FakeClock()
    run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "End": True,
                "Retry": [
                    {
                        "ErrorEquals": ["States.Timeout"],
                        "IntervalSeconds": 3,
                        "MaxAttempts": 2,
                        "BackoffRate": 2.0,
                        "MaxDelaySeconds": 4,
                    }
                ],
            }
        },
        integrations=Scripted(TaskFailure("States.Timeout")),
        clock=clock,
    )
    assert clock.sleeps == [3, 4]


def test_retrying_backoff_rate_and_max_delay_waits_2_4_5():
    clock = FakeClock()
    integ = Scripted(TaskFailure("Boom"), TaskFailure("Boom"), TaskFailure("Boom"), "finally")
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "End": True,
                "Retry": [
                    {
                        "ErrorEquals": ["Boom"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 3,
                        "BackoffRate": 2.0,
                        "MaxDelaySeconds": 5,
                    }
                ],
            }
        },
        integrations=integ,
        clock=clock,
    )
    assert clock.sleeps == [2, 4, 5]
    assert ex.status == "SUCCEEDED" and ex.output == "finally"


def test_retrying_defaults_interval_1_max_attempts_3_backoff_2():
    clock = FakeClock()
    ex = run(
        {"T": {"Type": "Task", "Resource": "r", "End": True, "Retry": [{"ErrorEquals": ["States.ALL"]}]}},
        integrations=Scripted(TaskFailure("E")),
        clock=clock,
    )
    assert clock.sleeps == [1, 2, 4] and ex.error == "E"


def test_retrying_max_attempts_zero_means_never_retry():  # spec example: all but States.Timeout retried
    clock = FakeClock()
    retry = [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 0}, {"ErrorEquals": ["States.ALL"]}]
    integ = Scripted(TaskFailure("States.Timeout"))
    ex = run(
        {"T": {"Type": "Task", "Resource": "r", "End": True, "Retry": retry}}, integrations=integ, clock=clock
    )
    assert ex.error == "States.Timeout" and len(integ.calls) == 1 and clock.sleeps == []
    integ = Scripted(TaskFailure("Other"))
    run(
        {"T": {"Type": "Task", "Resource": "r", "End": True, "Retry": retry}}, integrations=integ, clock=clock
    )
    assert len(integ.calls) == 4


def test_retrying_complex_scenario_spec_example():
    # spec "Complex retry scenarios": ErrorA, ErrorB, ErrorC, ErrorB -> waits 1, 2, 5, then Catch to Z
    errs = errors_named("ErrorA", "ErrorB", "ErrorC")
    sequence = iter(["ErrorA", "ErrorB", "ErrorC", "ErrorB"])

    def handler(event, ctx):
        raise errs[next(sequence)]("failed")

    clock = FakeClock()
    ex = run(
        {
            "X": task(
                "X",
                Next="Y",
                Retry=[
                    {
                        "ErrorEquals": ["ErrorA", "ErrorB"],
                        "IntervalSeconds": 1,
                        "BackoffRate": 2,
                        "MaxAttempts": 2,
                    },
                    {"ErrorEquals": ["ErrorC"], "IntervalSeconds": 5},
                ],
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Z"}],
            ),
            "Y": {"Type": "Succeed"},
            "Z": {"Type": "Pass", "End": True},
        },
        functions={"X": handler},
        clock=clock,
    )
    assert clock.sleeps == [1, 2, 5]
    assert ex.status == "SUCCEEDED" and ex.output["Error"] == "ErrorB"
    assert "Z" in [
        e["stateEnteredEventDetails"]["name"] for e in ex.history if e["type"].endswith("StateEntered")
    ]


def test_retrying_first_matching_retrier_decides():
    clock = FakeClock()
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "End": True,
                "Retry": [
                    {"ErrorEquals": ["E"], "MaxAttempts": 1, "IntervalSeconds": 7},
                    {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5, "IntervalSeconds": 1},
                ],
            }
        },
        integrations=Scripted(TaskFailure("E")),
        clock=clock,
    )
    assert clock.sleeps == [7] and ex.error == "E"  # the exhausted first retrier does not fall through


def test_retrying_parameters_reset_after_a_transition():
    # "once the interpreter transitions to another state in any way, all the Retrier parameters reset"
    integ = Scripted(TaskFailure("E"), {"n": 1}, TaskFailure("E"), {"n": 2})
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "Again?",
                "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}],
            },
            "Again?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "T"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
        integrations=integ,
    )
    assert ex.status == "SUCCEEDED" and ex.output == {"n": 2}


def test_retrying_jitter_full_is_random_below_the_backoff_and_seeded():
    def waits(seed):
        clock = FakeClock()
        m = machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": "r",
                    "End": True,
                    "Retry": [
                        {
                            "ErrorEquals": ["E"],
                            "IntervalSeconds": 2,
                            "MaxAttempts": 4,
                            "BackoffRate": 2.0,
                            "JitterStrategy": "FULL",
                        }
                    ],
                }
            }
        )
        Interpreter(Scripted(TaskFailure("E")), clock=clock, seed=seed).start_execution(m)
        return clock.sleeps

    w = waits(11)
    assert len(w) == 4 and all(0 <= s <= cap for s, cap in zip(w, [2, 4, 8, 16], strict=True))
    assert w == waits(11) and w != [2, 4, 8, 16]


def test_retrying_counts_as_state_transitions_in_the_history():
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": INVOKE,
                "Parameters": {"FunctionName": "F"},
                "End": True,
                "Retry": [{"ErrorEquals": ["E"]}],
            }
        },
        integrations=Scripted(TaskFailure("E"), {"Payload": 1}),
    )
    assert types(ex) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert count_state_transitions(ex.history) == 2 == ex.state_transitions()


# =========================================================================== Fallback states (Catch)


def catch_machine():
    return machine(
        {
            "T": task(
                "T",
                Next="Done",
                Catch=[
                    {"ErrorEquals": ["ErrorA"], "Next": "A"},
                    {"ErrorEquals": ["ErrorA", "ErrorB"], "Next": "B"},
                    {"ErrorEquals": ["States.ALL"], "Next": "C"},
                ],
            ),
            "A": {"Type": "Pass", "Result": "A", "End": True},
            "B": {"Type": "Pass", "Result": "B", "End": True},
            "C": {"Type": "Pass", "Result": "C", "End": True},
            "Done": {"Type": "Succeed"},
        }
    )


@pytest.mark.parametrize(("error", "target"), [("ErrorA", "A"), ("ErrorB", "B"), ("Other", "C")])
def test_fallback_states_catchers_are_scanned_in_order_first_match_wins(error, target):
    errs = errors_named(error)

    def handler(event, ctx):
        raise errs[error]("boom")

    ex = run(catch_machine(), functions={"T": handler})
    assert ex.output == target


def test_fallback_states_error_output_at_the_catcher_result_path():
    # spec "JSONPath Catchers": the original input with the Error Output at "$.error-info"
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "EndMachine",
                "Catch": [
                    {
                        "ErrorEquals": ["java.lang.Exception"],
                        "ResultPath": "$.error-info",
                        "Next": "RecoveryState",
                    },
                    {"ErrorEquals": ["States.ALL"], "Next": "EndMachine"},
                ],
            },
            "RecoveryState": {"Type": "Pass", "End": True},
            "EndMachine": {"Type": "Pass", "End": True},
        },
        {"order": 1},
        integrations=Scripted(TaskFailure("java.lang.Exception", "NullPointer")),
    )
    assert ex.output == {"order": 1, "error-info": {"Error": "java.lang.Exception", "Cause": "NullPointer"}}
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "EndMachine",
                "Catch": [
                    {
                        "ErrorEquals": ["java.lang.Exception"],
                        "ResultPath": "$.error-info",
                        "Next": "RecoveryState",
                    },
                    {"ErrorEquals": ["States.ALL"], "Next": "EndMachine"},
                ],
            },
            "RecoveryState": {"Type": "Pass", "End": True},
            "EndMachine": {"Type": "Pass", "End": True},
        },
        {"order": 1},
        integrations=Scripted(TaskFailure("Other", "x")),
    )
    assert ex.output == {"Error": "Other", "Cause": "x"}  # default ResultPath "$": only the Error Output


def test_fallback_states_lambda_error_name_is_the_exception_class_and_cause_is_aws_json():
    class IsrInputError(Exception):
        pass

    def handler(event, ctx):
        raise IsrInputError("truncated FITS file raw_1.fits")

    ex = run(
        {
            "T": task(
                "T",
                Next="Ok",
                Catch=[{"ErrorEquals": ["IsrInputError"], "ResultPath": "$.failure", "Next": "Recorded"}],
            ),
            "Ok": {"Type": "Succeed"},
            "Recorded": {"Type": "Pass", "End": True},
        },
        {"detector": 3},
        functions={"T": handler},
    )
    failure = ex.output["failure"]
    assert failure["Error"] == "IsrInputError"
    cause = json.loads(failure["Cause"])
    assert cause["errorType"] == "IsrInputError" and cause["errorMessage"] == "truncated FITS file raw_1.fits"
    assert ex.output["detector"] == 3


def test_fallback_states_named_error_before_states_all():
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "N",
                "Catch": [
                    {"ErrorEquals": ["MyError"], "Next": "Named"},
                    {"ErrorEquals": ["States.ALL"], "Next": "All"},
                ],
            },
            "Named": {"Type": "Pass", "Result": "named", "End": True},
            "All": {"Type": "Pass", "Result": "all", "End": True},
            "N": {"Type": "Succeed"},
        },
        integrations=Scripted(TaskFailure("MyError")),
    )
    assert ex.output == "named"


@pytest.mark.parametrize(("error", "target"), [("ValueError", "TaskFailed"), ("States.Timeout", "All")])
def test_fallback_states_task_failed_matches_everything_but_timeout(error, target):
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "N",
                "Catch": [
                    {"ErrorEquals": ["States.TaskFailed"], "Next": "TaskFailed"},
                    {"ErrorEquals": ["States.ALL"], "Next": "All"},
                ],
            },
            "TaskFailed": {"Type": "Pass", "Result": "TaskFailed", "End": True},
            "All": {"Type": "Pass", "Result": "All", "End": True},
            "N": {"Type": "Succeed"},
        },
        integrations=Scripted(TaskFailure(error)),
    )
    assert ex.output == target


def test_fallback_states_retry_before_catch():
    clock = FakeClock()
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Next": "N",
                "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["E"], "Next": "C"}],
            },
            "C": {"Type": "Pass", "End": True},
            "N": {"Type": "Succeed"},
        },
        integrations=Scripted(TaskFailure("E", "c")),
        clock=clock,
    )
    assert clock.sleeps == [1, 2] and ex.output == {"Error": "E", "Cause": "c"}


# =========================================================================== Task State: timeouts


def test_task_state_timeout_seconds_overrun_raises_states_timeout():
    clock = FakeClock()

    def slow(event, ctx):
        clock.advance(61)
        return "late"

    ex = run(
        {
            "T": task(
                "Slow",
                TimeoutSeconds=60,
                Next="N",
                Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
            ),
            "TimedOut": {"Type": "Pass", "End": True},
            "N": {"Type": "Succeed"},
        },
        functions={"Slow": slow},
        clock=clock,
    )
    assert ex.output["Error"] == "States.Timeout"
    assert "LambdaFunctionTimedOut" in types(ex)


def test_task_state_timeout_seconds_path_and_heartbeat_accepted():
    clock = FakeClock()

    def slow(event, ctx):
        clock.advance(5)
        return "late"

    ex = run(
        {"T": task("Slow", TimeoutSecondsPath="$.timeout", HeartbeatSeconds=1)},
        {"timeout": 4},
        functions={"Slow": slow},
        clock=clock,
    )
    assert ex.status == "FAILED" and ex.error == "States.Timeout"


def test_task_state_has_no_default_timeout_on_aws():
    # the spec says the default TimeoutSeconds is 60; AWS has none (99999999) — we follow AWS
    clock = FakeClock()

    def slow(event, ctx):
        clock.advance(3600)
        return "done"

    assert run({"T": task("Slow")}, functions={"Slow": slow}, clock=clock).output == "done"


def test_task_state_heartbeat_must_be_below_timeout():
    with pytest.raises(DefinitionError, match="HeartbeatSeconds"):
        machine({"T": task(TimeoutSeconds=10, HeartbeatSeconds=10)})


# =========================================================================== Choice State

DISPATCH = {
    "DispatchEvent": {
        "Type": "Choice",
        "Choices": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {
                "And": [
                    {"Variable": "$.value", "IsPresent": True},
                    {"Variable": "$.value", "IsNumeric": True},
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 30},
                ],
                "Next": "ValueInTwenties",
            },
            {"Variable": "$.rating", "NumericGreaterThanPath": "$.auditThreshold", "Next": "StartAudit"},
        ],
        "Default": "RecordEvent",
    },
    "Public": {"Type": "Pass", "Result": "Public", "End": True},
    "ValueInTwenties": {"Type": "Pass", "Result": "ValueInTwenties", "End": True},
    "StartAudit": {"Type": "Pass", "Result": "StartAudit", "End": True},
    "RecordEvent": {"Type": "Pass", "Result": "RecordEvent", "End": True},
}


@pytest.mark.parametrize(
    ("data", "target"),
    [
        ({"type": "Private", "value": 22}, "ValueInTwenties"),  # the spec's own input
        ({"type": "Public"}, "Public"),
        ({"type": "Private", "value": 35, "rating": 9, "auditThreshold": 5}, "StartAudit"),
        ({"type": "Private", "value": "22", "rating": 1, "auditThreshold": 5}, "RecordEvent"),
    ],
)
def test_choice_state_spec_dispatch_event_example(data, target):
    assert run(DISPATCH, data).output == target


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [  # spec StringMatches examples
        ("foo*.log", "foo23.log", True),
        ("*.log", "zebra.log", True),
        ("foo*.*", "foobar.zebra", True),
        ("foo*.log", "bar.log", False),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axxb", False),
        ("a\\\\b", "a\\b", True),
    ],
)
def test_choice_state_string_matches(pattern, value, expected):
    m = {
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.v", "StringMatches": pattern, "Next": "Y"}],
            "Default": "N",
        },
        "Y": {"Type": "Pass", "Result": True, "End": True},
        "N": {"Type": "Pass", "Result": False, "End": True},
    }
    assert run(m, {"v": value}).output is expected


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"Variable": "$.v", "StringEquals": "a"}, {"v": "a"}, True),
        ({"Variable": "$.v", "NumericEquals": 1}, {"v": 1.0}, True),
        ({"Variable": "$.v", "NumericEquals": 1}, {"v": "1"}, False),  # type mismatch: false
        ({"Variable": "$.v", "NumericLessThanEquals": 1}, {"v": 1}, True),
        ({"Variable": "$.v", "NumericGreaterThan": 1}, {"v": True}, False),  # a boolean is not a number
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": True}, True),
        ({"Variable": "$.v", "BooleanEquals": True}, {"v": 1}, False),
        ({"Variable": "$.v", "IsNull": True}, {"v": None}, True),
        ({"Variable": "$.v", "IsPresent": False}, {}, True),
        ({"Variable": "$.v", "IsString": True}, {"v": "x"}, True),
        ({"Variable": "$.v", "IsBoolean": False}, {"v": "x"}, True),
        ({"Variable": "$.v", "IsTimestamp": True}, {"v": "2016-03-14T01:59:00Z"}, True),
        ({"Variable": "$.v", "IsTimestamp": True}, {"v": "2016-03-14t01:59:00z"}, False),
        ({"Variable": "$.v", "StringEqualsPath": "$.w"}, {"v": "a", "w": "a"}, True),
        ({"Variable": "$.v", "NumericLessThanPath": "$.w"}, {"v": 1, "w": 2}, True),
        (
            {"Variable": "$.v", "TimestampLessThan": "2016-03-14T02:00:00Z"},
            {"v": "2016-03-14T01:59:00Z"},
            True,
        ),
        (
            {"Variable": "$.v", "TimestampEquals": "2016-03-14T01:59:00Z"},
            {"v": "2016-03-14T02:59:00+01:00"},
            True,
        ),
        (
            {"Or": [{"Variable": "$.v", "StringEquals": "x"}, {"Variable": "$.v", "StringEquals": "a"}]},
            {"v": "a"},
            True,
        ),
        (
            {"And": [{"Variable": "$.v", "IsPresent": True}, {"Variable": "$.v", "StringEquals": "b"}]},
            {"v": "a"},
            False,
        ),
        ({"Variable": "$$.State.Name", "StringEquals": "C"}, {}, True),
    ],
)
def test_choice_state_comparison_operators(rule, data, expected):
    m = {
        "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Y"}], "Default": "N"},
        "Y": {"Type": "Pass", "Result": True, "End": True},
        "N": {"Type": "Pass", "Result": False, "End": True},
    }
    assert run(m, data).output is expected


def test_choice_state_no_match_and_no_default_is_states_no_choice_matched():
    ex = run(
        {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.v", "StringEquals": "a", "Next": "Y"}]},
            "Y": {"Type": "Succeed"},
        },
        {"v": "b"},
    )
    assert ex.status == "FAILED" and ex.error == "States.NoChoiceMatched"


def test_choice_state_missing_variable_is_a_runtime_error():
    ex = run(
        {
            "C": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.v", "StringEquals": "a", "Next": "Y"}],
                "Default": "Y",
            },
            "Y": {"Type": "Succeed"},
        },
        {},
    )
    assert ex.status == "FAILED" and ex.error == "States.Runtime"


def test_choice_state_input_and_output_paths():
    ex = run(
        {
            "C": {
                "Type": "Choice",
                "InputPath": "$.in",
                "OutputPath": "$.keep",
                "Choices": [{"Variable": "$.v", "NumericEquals": 1, "Next": "Y"}],
            },
            "Y": {"Type": "Succeed"},
        },
        {"in": {"v": 1, "keep": "k"}},
    )
    assert ex.output == "k"


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"Variable": "$.v", "StringEquals": 1, "Next": "Y"}, "must be a string"),
        ({"Variable": "$.v", "Next": "Y"}, "exactly one comparison operator"),
        ({"Variable": "$.v", "StringEquals": "a", "NumericEquals": 1, "Next": "Y"}, "exactly one"),
        ({"Not": {"Variable": "$.v", "IsNull": True, "Next": "Y"}, "Next": "Y"}, "nested Choice Rule"),
        ({"Variable": "$.v", "StringEquals": "a"}, "must have 'Next'"),
        ({"Variable": "$.v", "TimestampEquals": "2016-03-14 01:59", "Next": "Y"}, "RFC 3339"),
    ],
)
def test_choice_state_rules_are_validated_at_load(rule, needle):
    with pytest.raises(DefinitionError, match=needle):
        machine({"C": {"Type": "Choice", "Choices": [rule]}, "Y": {"Type": "Succeed"}})


# =========================================================================== Wait State


def test_wait_state_seconds_and_seconds_path_use_the_clock():
    clock = FakeClock()
    ex = run(
        {
            "W1": {"Type": "Wait", "Seconds": 10, "Next": "W2"},
            "W2": {"Type": "Wait", "SecondsPath": "$.delay", "End": True},
        },
        {"delay": 3},
        clock=clock,
    )
    assert clock.sleeps == [10, 3] and ex.output == {"delay": 3}


def test_wait_state_timestamp_and_timestamp_path_wait_until_the_time():
    clock = FakeClock(start=1457920740.0)  # 2016-03-14T01:59:00Z
    run(
        {
            "W1": {"Type": "Wait", "Timestamp": "2016-03-14T02:00:00Z", "Next": "W2"},
            "W2": {"Type": "Wait", "TimestampPath": "$.expirydate", "End": True},
        },
        {"expirydate": "2016-03-14T02:00:30Z"},
        clock=clock,
    )
    assert clock.sleeps == [60, 30]


def test_wait_state_needs_exactly_one_duration_field():
    with pytest.raises(DefinitionError, match="exactly one of Seconds"):
        machine({"W": {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.x", "End": True}})


# =========================================================================== Succeed State and Fail State


def test_succeed_state_passes_input_through_input_and_output_paths():
    ex = run({"S": {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}}, {"a": {"b": 2}})
    assert ex.output == 2 and types(ex)[-2:] == ["SucceedStateExited", "ExecutionSucceeded"]


def test_fail_state_spec_example_error_and_cause():
    ex = run({"FailState": {"Type": "Fail", "Error": "ErrorA", "Cause": "Kaiju attack"}})
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "ErrorA", "Kaiju attack")
    last = ex.history[-1]
    assert last["type"] == "ExecutionFailed"
    assert last["executionFailedEventDetails"] == {"error": "ErrorA", "cause": "Kaiju attack"}


def test_fail_state_spec_example_error_path_and_cause_path():
    ex = run(
        {
            "FailState": {
                "Type": "Fail",
                "Comment": "my error comment",
                "ErrorPath": "$.Error",
                "CausePath": "$.Cause",
            }
        },
        {"Error": "TooManyFailures", "Cause": "3 of 8 detectors"},
    )
    assert (ex.error, ex.cause) == ("TooManyFailures", "3 of 8 detectors")


def test_fail_state_cause_path_may_be_an_intrinsic_function():
    ex = run(
        {
            "F": {
                "Type": "Fail",
                "Error": "TooManyFailures",
                "CausePath": "States.Format('{} of {} detectors failed', $.failed, $.total)",
            }
        },
        {"failed": 3, "total": 8},
    )
    assert ex.cause == "3 of 8 detectors failed"


def test_fail_state_cannot_have_both_error_and_error_path():
    with pytest.raises(DefinitionError, match="both Error and ErrorPath"):
        machine({"F": {"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}})


# =========================================================================== Parallel State


def test_parallel_state_spec_fun_with_math_example():
    integ = LocalIntegrations()
    integ.register_service("arn:aws:states:::task:Add", lambda p, c: p[0] + p[1])
    integ.register_service("arn:aws:states:::task:Subtract", lambda p, c: p[0] - p[1])
    ex = run(
        {
            "FunWithMath": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "Add",
                        "States": {
                            "Add": {"Type": "Task", "Resource": "arn:aws:states:::task:Add", "End": True}
                        },
                    },
                    {
                        "StartAt": "Subtract",
                        "States": {
                            "Subtract": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::task:Subtract",
                                "End": True,
                            }
                        },
                    },
                ],
            }
        },
        [3, 2],
        integrations=integ,
    )
    assert ex.output == [5, 1]
    assert "ParallelStateStarted" in types(ex) and "ParallelStateSucceeded" in types(ex)


def test_parallel_state_a_failing_branch_fails_the_state_and_can_be_caught():
    ex = run(
        {
            "P": {
                "Type": "Parallel",
                "Next": "Ok",
                "ResultPath": "$.r",
                "Catch": [{"ErrorEquals": ["ErrorA"], "ResultPath": "$.err", "Next": "Caught"}],
                "Branches": [
                    {"StartAt": "Fine", "States": {"Fine": {"Type": "Pass", "End": True}}},
                    {
                        "StartAt": "Bad",
                        "States": {"Bad": {"Type": "Fail", "Error": "ErrorA", "Cause": "branch"}},
                    },
                ],
            },
            "Ok": {"Type": "Succeed"},
            "Caught": {"Type": "Pass", "End": True},
        },
        {"x": 1},
    )
    assert ex.output == {"x": 1, "err": {"Error": "ErrorA", "Cause": "branch"}}
    assert "ParallelStateFailed" in types(ex)


def test_parallel_state_parameters_result_selector_result_path():
    ex = run(
        {
            "P": {
                "Type": "Parallel",
                "End": True,
                "Parameters": {"v.$": "$.v"},
                "ResultSelector": {"first.$": "$[0].v", "second.$": "$[1]"},
                "ResultPath": "$.out",
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "b", "End": True}}},
                ],
            }
        },
        {"v": 5},
    )
    assert ex.output == {"v": 5, "out": {"first": 5, "second": "b"}}


# =========================================================================== Map State (inline)

SHIPMENT = {
    "ship-date": "2016-03-14T01:59:00Z",
    "detail": {
        "delivery-partner": "UQS",
        "shipped": [
            {"prod": "R31", "dest-code": 9511, "quantity": 1344},
            {"prod": "S39", "dest-code": 9511, "quantity": 40},
            {"prod": "R31", "dest-code": 9833, "quantity": 12},
            {"prod": "R40", "dest-code": 9860, "quantity": 887},
            {"prod": "R40", "dest-code": 9511, "quantity": 1220},
        ],
    },
}


def validate_all(**extra):
    st = {
        "Type": "Map",
        "InputPath": "$.detail",
        "ItemsPath": "$.shipped",
        "MaxConcurrency": 0,
        "ItemProcessor": {"StartAt": "Validate", "States": {"Validate": task("ship-val")}},
        "ResultPath": "$.detail.shipped",
        "End": True,
    }
    st.update(extra)
    return {"Validate-All": st}


def test_map_state_spec_validate_all_example():
    seen = []

    def ship_val(event, ctx):
        seen.append(event)
        return {"prod": event["prod"], "valid": event["quantity"] > 0}

    ex = run(validate_all(), SHIPMENT, functions={"ship-val": ship_val})
    # the spec's iteration input is the item itself; MaxConcurrency 0 runs the items on several
    # threads, so the invocations arrive in any order
    assert sorted(seen, key=lambda e: json.dumps(e, sort_keys=True)) == sorted(
        SHIPMENT["detail"]["shipped"], key=lambda e: json.dumps(e, sort_keys=True)
    )
    assert {"prod": "R31", "dest-code": 9511, "quantity": 1344} in seen
    assert ex.output["ship-date"] == SHIPMENT["ship-date"]
    assert ex.output["detail"]["delivery-partner"] == "UQS"
    assert ex.output["detail"]["shipped"] == [
        {"prod": p["prod"], "valid": True} for p in SHIPMENT["detail"]["shipped"]
    ]


def test_map_state_spec_item_selector_example():
    # the spec's JSONPath example writes "$.Map.Item.Value"; the Context Object needs "$$."
    seen = []

    def ship_val(event, ctx):
        seen.append(event)
        return True

    run(
        validate_all(
            ItemSelector={
                "parcel.$": "$$.Map.Item.Value",
                "courier.$": "$.delivery-partner",
                "index.$": "$$.Map.Item.Index",
            }
        ),
        SHIPMENT,
        functions={"ship-val": ship_val},
    )
    first = min(seen, key=lambda e: e["index"])
    assert first == {
        "parcel": {"prod": "R31", "dest-code": 9511, "quantity": 1344},
        "courier": "UQS",
        "index": 0,
    }


def test_map_state_deprecated_iterator_and_parameters():
    ex = run(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "Parameters": {"v.$": "$$.Map.Item.Value"},
                "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                "End": True,
            }
        },
        {"items": [1, 2]},
    )
    assert ex.output == [{"v": 1}, {"v": 2}]


def test_map_state_max_concurrency_1_runs_in_order_one_at_a_time():
    order = []
    ex = run(
        {
            "M": {
                "Type": "Map",
                "MaxConcurrency": 1,
                "End": True,
                "ItemProcessor": {"StartAt": "T", "States": {"T": task("T")}},
            }
        },
        list(range(20)),
        functions={"T": lambda e, c: order.append(e) or e},
    )
    assert order == list(range(20)) and ex.output == list(range(20))


def test_map_state_max_concurrency_bounds_parallel_iterations():
    lock, active, peak = threading.Lock(), [0], [0]

    def slow(event, ctx):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return event

    ex = run(
        {
            "M": {
                "Type": "Map",
                "MaxConcurrency": 3,
                "End": True,
                "ItemProcessor": {"StartAt": "T", "States": {"T": task("T")}},
            }
        },
        list(range(12)),
        functions={"T": slow},
    )
    assert ex.output == list(range(12))
    assert peak[0] == 3


def test_map_state_per_item_catch_one_failing_item_does_not_fail_the_map():
    class IsrInputError(Exception):
        pass

    def isr(event, ctx):
        if event["detector"] == 2:
            raise IsrInputError("corrupt raw")
        return {"detector": event["detector"], "status": "ok"}

    ex = run(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.detectors",
                "End": True,
                "ItemSelector": {"detector.$": "$$.Map.Item.Value"},
                "ItemProcessor": {
                    "StartAt": "Isr",
                    "States": {
                        "Isr": task(
                            "isr",
                            Catch=[
                                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}
                            ],
                        ),
                        "Failed": {"Type": "Pass", "End": True},
                    },
                },
            }
        },
        {"detectors": [0, 1, 2, 3]},
        functions={"isr": isr},
    )
    assert ex.status == "SUCCEEDED"
    assert [o.get("status") for o in ex.output] == ["ok", "ok", None, "ok"]
    assert ex.output[2]["error"]["Error"] == "IsrInputError"


def test_map_state_an_uncaught_iteration_failure_fails_the_map_with_its_error():
    ex = run(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "ItemProcessor": {
                    "StartAt": "F",
                    "States": {"F": {"Type": "Fail", "Error": "ItemBroke", "Cause": "item"}},
                },
            }
        },
        [1, 2, 3],
    )
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "ItemBroke", "item")
    assert "MapIterationFailed" in types(ex) and "MapStateFailed" in types(ex)


def test_map_state_result_path_null_does_not_collect_results():
    big = "x" * 100_000  # 5 x 100 KB of results would exceed the 256 KB payload limit if collected
    states = {
        "M": {
            "Type": "Map",
            "ResultPath": None,
            "End": True,
            "ItemProcessor": {"StartAt": "T", "States": {"T": task("T")}},
        }
    }
    ex = run(states, [1, 2, 3, 4, 5], functions={"T": lambda e, c: big})
    assert ex.status == "SUCCEEDED" and ex.output == [1, 2, 3, 4, 5]
    states["M"]["ResultPath"] = "$"
    ex = run(states, [1, 2, 3, 4, 5], functions={"T": lambda e, c: big})
    assert ex.error == "States.DataLimitExceeded"


def test_map_state_items_path_must_select_an_array():
    ex = run(
        {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.x",
                "End": True,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            }
        },
        {"x": 1},
    )
    assert ex.status == "FAILED" and ex.error == "States.Runtime"


def test_map_state_history_events_of_an_inline_iteration():
    ex = run(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "MaxConcurrency": 1,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            }
        },
        [7],
    )
    assert types(ex) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "PassStateEntered",
        "PassStateExited",
        "MapIterationSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    started = next(e for e in ex.history if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 1}


# =========================================================================== Map State (distributed) and ItemReader


def distributed(processor_states: dict, **extra) -> dict:
    st = {
        "Type": "Map",
        "Label": "Detectors",
        "MaxConcurrency": 4,
        "ResultPath": None,
        "End": True,
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket.$": "$.manifest.bucket", "Key.$": "$.manifest.key"},
        },
        "ItemSelector": {"cluster.$": "$$.Map.Item.Value", "run.$": "$.run"},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": next(iter(processor_states)),
            "States": processor_states,
        },
    }
    st.update(extra)
    if "Next" in st:
        del st["End"]
    return {"Fanout": st}


def test_item_reader_json_manifest_feeds_child_executions():
    manifest = [{"detectors": [0, 1]}, {"detectors": [2, 3]}, {"detectors": [4]}]
    reads, seen = [], []

    def reader(bucket, key):
        reads.append((bucket, key))
        return json.dumps(manifest).encode()

    def isr(event, ctx):
        seen.append(event)
        return {"n": len(event["cluster"]["detectors"])}

    m = machine(
        distributed(
            {
                "Isr": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "End": True,
                    "Parameters": {"FunctionName": "isr", "Payload.$": "$"},
                    "ResultSelector": {"n.$": "$.Payload.n"},
                }
            }
        )
    )
    interp = Interpreter(LocalIntegrations({"isr": isr}), clock=FakeClock(), item_reader=reader)
    data = {"run": "u/r1", "manifest": {"bucket": "data", "key": "manifests/v1.json"}}
    ex = interp.start_execution(m, data, name="visit-1")
    assert ex.status == "SUCCEEDED" and ex.output == data  # ResultPath null
    assert reads == [("data", "manifests/v1.json")]
    assert sorted(e["cluster"]["detectors"][0] for e in seen) == [0, 2, 4]
    assert all(e["run"] == "u/r1" for e in seen)
    # the parent's history holds the map run, not the children's states
    assert types(ex) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapRunStarted",
        "MapRunSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    (map_run,) = ex.map_runs
    assert ex.history[3]["mapRunStartedEventDetails"]["mapRunArn"] == map_run.map_run_arn
    assert ":mapRun:Conformance/Detectors:" in map_run.map_run_arn
    assert map_run.describe()["itemCounts"]["succeeded"] == 3 and map_run.status == "SUCCEEDED"
    # each child is an execution with its own history
    child = ex.children()[0]
    assert child.status == "SUCCEEDED" and child.map_run_arn == map_run.map_run_arn
    assert types(child) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert child.output == {"n": len(child.input["cluster"]["detectors"])}
    assert interp.describe_execution(child.execution_arn)["mapRunArn"] == map_run.map_run_arn
    assert len(interp.list_executions(map_run_arn=map_run.map_run_arn)) == 3
    assert ex.state_transitions() == 1 + 3  # the Map + one Task per child


def test_item_reader_max_items_limits_the_items():
    m = machine(
        distributed(
            {"P": {"Type": "Pass", "End": True}},
            ResultPath="$.results",
            ItemReader={
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "JSON", "MaxItems": 2},
                "Parameters": {"Bucket": "b", "Key": "k"},
            },
        )
    )
    interp = Interpreter(LocalIntegrations(), clock=FakeClock(), item_reader=lambda b, k: b"[10, 20, 30]")
    ex = interp.start_execution(m, {"run": "r"})
    assert ex.output["results"] == [{"cluster": 10, "run": "r"}, {"cluster": 20, "run": "r"}]


def test_item_reader_failure_is_states_item_reader_failed():
    def reader(bucket, key):
        raise FileNotFoundError(f"{bucket}/{key}")

    m = machine(distributed({"P": {"Type": "Pass", "End": True}}))
    ex = Interpreter(LocalIntegrations(), clock=FakeClock(), item_reader=reader).start_execution(
        m, {"run": "r", "manifest": {"bucket": "b", "key": "missing.json"}}
    )
    assert ex.error == "States.ItemReaderFailed" and "missing.json" in ex.cause


def test_distributed_map_child_failure_fails_the_map_with_exceed_tolerated_failure_threshold():
    def isr(event, ctx):
        if event["cluster"] == 2:
            raise RuntimeError("bad cluster")
        return "ok"

    m = machine(
        {
            **distributed(
                {"Isr": task("isr")},
                Next="Done",
                Catch=[
                    {
                        "ErrorEquals": ["States.ExceedToleratedFailureThreshold"],
                        "ResultPath": "$.mapError",
                        "Next": "Summarize",
                    }
                ],
            ),
            "Done": {"Type": "Succeed"},
            "Summarize": {"Type": "Pass", "End": True},
        }
    )
    interp = Interpreter(
        LocalIntegrations({"isr": isr}),
        clock=FakeClock(),
        max_workers=1,
        item_reader=lambda b, k: b"[0, 1, 2, 3, 4]",
    )
    ex = interp.start_execution(m, {"run": "r", "manifest": {"bucket": "b", "key": "k"}})
    assert ex.output["mapError"] == {
        "Error": "States.ExceedToleratedFailureThreshold",
        "Cause": "The specified tolerated failure threshold was exceeded",
    }
    assert [c.status for c in ex.children()] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]  # the rest never started
    assert ex.children()[2].error == "RuntimeError"
    assert ex.map_runs[0].status == "FAILED" and "MapRunFailed" in types(ex)


def test_distributed_map_per_item_catch_keeps_the_run_going():
    def isr(event, ctx):
        if event["cluster"] % 2:
            raise ValueError("odd")
        return "ok"

    m = machine(
        distributed(
            {
                "Isr": task("isr", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Record"}]),
                "Record": {"Type": "Pass", "End": True},
            },
            ResultPath="$.r",
        )
    )
    interp = Interpreter(
        LocalIntegrations({"isr": isr}),
        clock=FakeClock(),
        item_reader=lambda b, k: json.dumps(list(range(6))).encode(),
    )
    ex = interp.start_execution(m, {"run": "r", "manifest": {"bucket": "b", "key": "k"}})
    assert ex.status == "SUCCEEDED"
    assert [r if r == "ok" else r["Error"] for r in ex.output["r"]] == ["ok", "ValueError"] * 3


# =========================================================================== Lambda and other integrations


def test_lambda_invoke_result_shape_like_aws():
    seen = []

    def plan(event, ctx):
        seen.append((event, ctx.function_name, ctx.get_remaining_time_in_millis() > 0))
        return {"clusters": 3}

    ex = run(
        {
            "Plan": {
                "Type": "Task",
                "Resource": INVOKE,
                "End": True,
                "Parameters": {"FunctionName": LAMBDA.format("plan") + ":$LATEST", "Payload": {"a.$": "$.a"}},
            }
        },
        {"a": 1},
        functions={"plan": plan},
    )
    assert seen == [({"a": 1}, "plan", True)]
    assert ex.output["Payload"] == {"clusters": 3} and ex.output["StatusCode"] == 200
    assert ex.output["ExecutedVersion"] == "$LATEST"


def test_lambda_unknown_function_is_resource_not_found():
    ex = run({"T": {"Type": "Task", "Resource": INVOKE, "Parameters": {"FunctionName": "nope"}, "End": True}})
    assert ex.error == "Lambda.ResourceNotFoundException"


def test_lambda_unserialisable_result_is_a_marshal_error():
    ex = run({"T": task()}, functions={"F": lambda e, c: {1, 2}})
    assert ex.error == "Runtime.MarshalError"


def test_lambda_handler_gets_a_private_copy_of_its_event():
    def mutate(event, ctx):
        event["x"].append(99)

    ex = run({"T": task(ResultPath=None)}, {"x": [1]}, functions={"F": mutate})
    assert ex.output == {"x": [1]}


def test_ecs_and_start_execution_sync_are_documented_extension_points():
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": ECS_RUN_TASK_SYNC,
                "End": True,
                "Parameters": {"Cluster": "c", "TaskDefinition": "td"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}],
            },
            "C": {"Type": "Succeed"},
        }
    )
    assert ex.status == "FAILED" and ex.error == "States.Runtime"  # a configuration error: not caught
    assert "ecs:runTask.sync" in ex.cause and "register_service" in ex.cause

    integ = LocalIntegrations({"child": lambda e, c: e["n"] * 2})
    child = machine({"Double": task("child")})
    interp = Interpreter(integ, clock=FakeClock())

    def start_execution_sync(params, ctx):
        c = interp.start_execution(child, params["Input"], name=f"child-{params['Input']['n']}")
        return {"Status": c.status, "Output": json.dumps(c.output), "ExecutionArn": c.execution_arn}

    integ.register_service(STATES_START_EXECUTION_SYNC2, start_execution_sync)
    integ.register_service(ECS_RUN_TASK_SYNC, lambda p, c: {"Containers": [{"ExitCode": 0}]})
    parent = machine(
        {
            "Ecs": {
                "Type": "Task",
                "Resource": ECS_RUN_TASK_SYNC,
                "ResultPath": "$.ecs",
                "Parameters": {"Cluster": "c"},
                "Next": "Child",
            },
            "Child": {
                "Type": "Task",
                "Resource": STATES_START_EXECUTION_SYNC2,
                "Parameters": {"StateMachineArn": "x", "Input": {"n.$": "$.n"}},
                "ResultSelector": {"out.$": "States.StringToJson($.Output)"},
                "End": True,
            },
        }
    )
    ex = interp.start_execution(parent, {"n": 21})
    assert ex.output == {"out": 42}
    assert [
        e["taskScheduledEventDetails"]["resourceType"] for e in ex.history if e["type"] == "TaskScheduled"
    ] == ["ecs", "states"]


# =========================================================================== Executions: names, stop, history


def test_execution_names_are_unique_and_validated():
    m = machine({"P": {"Type": "Pass", "End": True}})
    interp = Interpreter(LocalIntegrations(), clock=FakeClock())
    interp.start_execution(m, name="visit-42")
    with pytest.raises(ExecutionAlreadyExists):
        interp.start_execution(m, name="visit-42")
    with pytest.raises(ValueError, match="invalid execution name"):
        interp.start_execution(m, name="has space")


def test_execution_background_run_and_stop_aborts_it():
    m = machine({"W": {"Type": "Wait", "Seconds": 30, "End": True}})
    interp = Interpreter(LocalIntegrations(), clock=RealClock())
    ex = interp.start_execution(m, {}, name="long", wait=False)
    time.sleep(0.05)
    assert ex.status == "RUNNING"
    t0 = time.monotonic()
    ex.stop(error="UserAbort", cause="test")
    ex.wait(5)
    assert time.monotonic() - t0 < 2
    assert ex.status == "ABORTED" and ex.stop_date is not None
    assert ex.history[-1]["type"] == "ExecutionAborted"
    assert ex.history[-1]["executionAbortedEventDetails"] == {"error": "UserAbort", "cause": "test"}


def test_history_events_are_linked_and_shaped_like_get_execution_history():
    ex = run(
        {"T": task(Next="P"), "P": {"Type": "Pass", "End": True}}, {"a": 1}, functions={"F": lambda e, c: 2}
    )
    hist = ex.history
    assert [e["id"] for e in hist] == list(range(1, len(hist) + 1))
    assert all(e["previousEventId"] == e["id"] - 1 for e in hist[1:])
    assert hist[0]["executionStartedEventDetails"]["input"] == '{"a":1}'
    entered = hist[1]
    assert entered["type"] == "TaskStateEntered" and entered["stateEnteredEventDetails"]["name"] == "T"
    assert hist[-1]["executionSucceededEventDetails"]["output"] == "2"
    assert all(e["timestamp"].tzinfo is not None for e in hist)
    assert ex.describe()["status"] == "SUCCEEDED" and ex.describe()["output"] == "2"


def test_history_limit_fails_an_execution_with_too_many_events():
    # AWS stops a Standard execution at 25,000 history events; an inline Map counts against it
    m = machine(
        {
            "M": {
                "Type": "Map",
                "End": True,
                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
            }
        }
    )
    ex = Interpreter(LocalIntegrations(), clock=FakeClock(), max_history_events=50).start_execution(
        m, list(range(20))
    )
    assert ex.status == "FAILED" and ex.error == "States.Runtime" and "maximum number of events" in ex.cause


def test_context_object_state_retry_count_is_visible_to_parameters():
    integ = Scripted(TaskFailure("E"), TaskFailure("E"), lambda p: p)
    ex = run(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "End": True,
                "Parameters": {"n.$": "$$.State.RetryCount"},
                "Retry": [{"ErrorEquals": ["E"]}],
            }
        },
        integrations=integ,
    )
    assert [c[1]["n"] for c in integ.calls] == [0, 1, 2] and ex.output == {"n": 2}
    assert [c[2].retry_count for c in integ.calls] == [0, 1, 2]


def test_execution_stop_aborts_a_distributed_map_and_its_children():
    m = machine(distributed({"W": {"Type": "Wait", "Seconds": 30, "End": True}}))
    interp = Interpreter(
        LocalIntegrations(), clock=RealClock(), item_reader=lambda b, k: b"[1, 2, 3, 4, 5, 6]"
    )
    ex = interp.start_execution(
        m, {"run": "r", "manifest": {"bucket": "b", "key": "k"}}, name="stopme", wait=False
    )
    deadline = time.monotonic() + 5
    while len(ex.children()) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    ex.stop()
    ex.wait(5)
    assert ex.status == "ABORTED"
    assert ex.map_runs[0].status == "ABORTED" and "MapRunAborted" in types(ex)
    assert {c.status for c in ex.children()} == {"ABORTED"} and len(ex.children()) == 4  # MaxConcurrency 4


def test_integration_objects_cross_process_boundaries():
    import pickle

    from isrflow.local.asl import LambdaContext, TaskContext

    ctx = TaskContext("arn:x", "n", "arn:sm", "S", 1, 60, None)
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    failure = pickle.loads(pickle.dumps(TaskFailure("IsrInputError", "{}")))
    assert (failure.error, failure.cause) == ("IsrInputError", "{}")
    lc = pickle.loads(pickle.dumps(LambdaContext("isr", "req-1", timeout_seconds=900)))
    assert lc.function_name == "isr" and 899_000 < lc.get_remaining_time_in_millis() <= 900_000


def test_integration_errors_with_error_and_cause_attributes_keep_their_name():
    class PoolError(Exception):  # e.g. an error object rebuilt after crossing a process boundary
        def __init__(self, error, cause):
            super().__init__(f"{error}: {cause}")
            self.error, self.cause = error, cause

    ex = run(
        {"T": {"Type": "Task", "Resource": "r", "End": True}},
        integrations=Scripted(PoolError("IsrInputError", '{"errorMessage": "x"}')),
    )
    assert (ex.error, ex.cause) == ("IsrInputError", '{"errorMessage": "x"}')
    ex = run({"T": {"Type": "Task", "Resource": "r", "End": True}}, integrations=Scripted(KeyError("k")))
    assert ex.error == "KeyError"
