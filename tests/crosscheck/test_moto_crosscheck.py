"""Cross-check: every project state machine (``statemachines/*.asl.json``) gives the same result in
isrflow's local ASL interpreter and in moto's Step Functions interpreter.

For each ASL file and each of its scenarios, the same input runs

- locally: ``isrflow.local.asl.Interpreter`` in this process (FakeClock), Lambda functions =
  ``stub_handlers.HANDLERS``, the Distributed Map's manifest served by ``item_reader``;
- in moto: ``moto_runner.py`` in a subprocess (moto 5.2.5, Lambda dispatch patched to the same
  stub handlers, the same manifest bytes uploaded to moto's S3);

and the two must agree on the final status, the output (SUCCEEDED) or the error name (FAILED),
the Distributed Map runs (status, maxConcurrency, item counts) and the multiset of Lambda
invocations (function, event, error name) — so the paths between the states (ItemSelector,
Catch ResultPath, Choice, Retry) are compared too, not only the last state's answer — and
where each Distributed Map's ResultWriter put its manifest. moto 5.2.5's ResultWriter writes
an empty manifest and no result files, so the result files themselves (one record per item)
are checked on the local side only.

A new ASL file fails here until it gets a case in ``CASES`` (input scenarios, substitutions and
the objects its ItemReaders read). The moto subprocesses (one per core, each running a share of
the scenarios) are started together when the first test needs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import stub_handlers as stubs

from isrflow.local.asl import FakeClock, Interpreter, LocalIntegrations, StateMachine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNNER = HERE / "moto_runner.py"
ASL_FILES = sorted((ROOT / "statemachines").glob("*.asl.json"))
PINNED_MOTO = "5.2.5"  # moto_runner.MOTO_VERSION
EXIT_SKIP = 75  # moto_runner.EXIT_SKIP
MOTO_RUN_TIMEOUT = 120  # seconds for one subprocess; a hang fails the test instead of blocking CI


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Scenario:
    name: str  # also the execution name (both interpreters)
    input: dict[str, Any]
    status: str  # expected final status, in both interpreters
    error: str | None = None  # expected error name when FAILED
    expect: Callable[[dict[str, Any]], None] | None = None  # extra checks on the (agreed) local result


@dataclass(frozen=True)
class Case:
    """How to run one ASL file: its machine name, substitutions, the S3 objects its ItemReaders
    read for a scenario (the same bytes for both interpreters), and its scenarios."""

    machine_name: str
    substitutions: dict[str, str]
    bucket: str
    objects: Callable[[str, Scenario], dict[str, str]]  # (machine_name, scenario) -> {key: text}
    scenarios: list[Scenario] = field(default_factory=list)


def _visit_input(
    quanta: list[tuple[str, int, int]] | None = None,
    *,
    where: str | None = None,
    cluster_size: int = 1,
    max_concurrency: int = 2,
    max_failure_fraction: float = 0.0,
    previews: bool = False,
    output_run: str = "HSC/runs/crosscheck",
) -> dict:
    spec: dict[str, Any] = {
        "input_collections": ["HSC/raw/all"],
        "calib_collection": "HSC/calib",
        "output_run": output_run,
        "mode": "skip-existing",
        "cluster_size": cluster_size,
        "max_concurrency": max_concurrency,
        "max_failure_fraction": max_failure_fraction,
        "previews": previews,
        "isr_config": {"overscan": {"fit_type": "MEDIAN_PER_ROW"}},
    }
    if where is not None:
        spec["where"] = where
    else:
        spec["quanta"] = [{"instrument": i, "exposure": e, "detector": d} for i, e, d in quanta or []]
    return spec


GOOD = [("HSC", e, d) for e in (904000, 904002, 904004) for d in (49, 50)]  # 4 clusters at cluster_size 2


def _process_visit_objects(machine_name: str, scenario: Scenario) -> dict[str, str]:
    eid = stubs.execution_arn(machine_name, scenario.name)
    return {stubs.manifest_key_for(eid): stubs.manifest_bytes(scenario.input).decode()}


def _calls(result: dict, function: str) -> list[dict]:
    return [c["event"] for c in result["invocations"] if c["function"] == function]


def _expect_all_succeed(r: dict) -> None:
    assert r["output"]["quanta"] == 6 and r["output"]["failed"] == 0
    assert len(_calls(r, stubs.ISR_FUNCTION)) == 4  # no previews: WantMosaics' Default skips Mosaics
    assert not _calls(r, stubs.RECORD_FAILURE_FUNCTION)
    assert r["map_runs"][0]["maxConcurrency"] == 2  # from MaxConcurrencyPath


def _expect_one_caught(r: dict) -> None:
    assert r["output"]["failed"] == 1 and r["output"]["failures"][0]["instrument"] == "BadCam"
    (recorded,) = _calls(r, stubs.RECORD_FAILURE_FUNCTION)
    assert recorded["cluster"]["cluster_id"] == "BadCam-0-904000"
    assert recorded["error"]["Error"] == "IsrInputError"
    assert all(e["previews"] is True for e in _calls(r, stubs.ISR_FUNCTION) if "cluster" in e)
    assert len(_calls(r, stubs.MOSAIC_FUNCTION)) == 1


def _expect_mosaic_caught(r: dict) -> None:
    assert r["output"]["failed"] == 0
    assert [c["error"] for c in r["invocations"] if c["function"] == stubs.MOSAIC_FUNCTION] == ["MosaicError"]


def _expect_plan_retried(r: dict) -> None:
    assert [c["error"] for c in r["invocations"] if c["function"] == stubs.PLAN_FUNCTION] == [
        "QuantaNotFoundError",
        None,
    ]
    assert r["output"]["quanta"] == 7


def _expect_zero_clusters(r: dict) -> None:
    assert r["output"]["quanta"] == 0
    assert [c["function"] for c in r["invocations"]] == [stubs.PLAN_FUNCTION, stubs.SUMMARIZE_FUNCTION]
    assert r["map_runs"] == []


def _expect_too_many_failures(r: dict) -> None:
    assert len(_calls(r, stubs.RECORD_FAILURE_FUNCTION)) == 2


PROCESS_VISIT = Case(
    machine_name="ProcessVisit",
    substitutions=stubs.substitutions(),
    bucket=stubs.BUCKET,
    objects=_process_visit_objects,
    scenarios=[
        Scenario("all-succeed", _visit_input(GOOD, cluster_size=2), "SUCCEEDED", expect=_expect_all_succeed),
        Scenario(
            "one-cluster-fails-and-is-caught",
            _visit_input([*GOOD, ("BadCam", 904000, 0)], max_failure_fraction=0.25, previews=True),
            "SUCCEEDED",
            expect=_expect_one_caught,
        ),
        Scenario(
            "zero-clusters",
            _visit_input(where="instrument = 'HSC' AND exposure = 1"),
            "SUCCEEDED",
            expect=_expect_zero_clusters,
        ),
        Scenario(
            "too-many-failures",
            _visit_input(
                [*GOOD[:2], ("BadCam", 904000, 0), ("BadCam", 904002, 0)],
                max_concurrency=1,
                max_failure_fraction=0.25,
            ),
            "FAILED",
            error="TooManyFailuresError",
            expect=_expect_too_many_failures,
        ),
        Scenario(
            "mosaic-fails-and-is-caught",
            _visit_input(GOOD, cluster_size=3, previews=True, output_run="HSC/runs/badpreviews"),
            "SUCCEEDED",
            expect=_expect_mosaic_caught,
        ),
        Scenario(
            "plan-retried-until-the-raws-are-registered",
            _visit_input([*GOOD, ("LateCam", 904000, 7)]),
            "SUCCEEDED",
            expect=_expect_plan_retried,
        ),
    ],
)


def _calib_input(
    calib_type: str, detectors: tuple[int, ...], *, certify: bool = False, max_failure_fraction: float = 0.0
) -> dict:
    spec: dict[str, Any] = {
        "calib_type": calib_type,
        "where": f"detector IN ({', '.join(map(str, detectors))})",
        "input_collections": ["Generic/raw/all"],
        "calib_collection": "Generic/calib",
        "output_run": f"Generic/calib/{calib_type}",
        "max_concurrency": 2,
        "max_failure_fraction": max_failure_fraction,
    }
    if calib_type == "defects":
        spec["input_collections"] = ["Generic/calib/dark", "Generic/calib/flat"]
    if certify:
        spec["certify"] = {"collection": "Generic/calib"}
    return spec


def _calib_objects(machine_name: str, scenario: Scenario) -> dict[str, str]:
    return stubs.calib_objects(stubs.execution_arn(machine_name, scenario.name), scenario.input)


def _expect_calib_all_succeed(r: dict) -> None:
    assert (r["output"]["succeeded"], r["output"]["failed"], r["output"]["certified"]) == (2, 0, 2)
    assert len(_calls(r, stubs.ISR_FUNCTION)) == 2 and len(_calls(r, stubs.COMBINE_FUNCTION)) == 2
    assert all(e["measure"] is True for e in _calls(r, stubs.ISR_FUNCTION))
    assert not _calls(r, stubs.NORMALIZE_FUNCTION)


def _expect_flat_failures_recorded(r: dict) -> None:
    assert r["output"]["failed"] == 2 and r["output"]["certified"] == 0
    assert len(_calls(r, stubs.NORMALIZE_FUNCTION)) == 1
    (isr_failure,) = _calls(r, stubs.RECORD_FAILURE_FUNCTION)
    assert isr_failure["error"]["Error"] == "IsrInputError"
    (combine_failure,) = _calls(r, stubs.RECORD_COMBINE_FAILURE_FUNCTION)
    assert combine_failure["state"]["item"]["detector"] == 5  # answered status failed: the Choice caught it
    assert not _calls(r, stubs.CERTIFY_FUNCTION)


def _expect_defects_skip_isr(r: dict) -> None:
    assert not _calls(r, stubs.ISR_FUNCTION) and len(r["map_runs"]) == 1
    assert r["output"]["succeeded"] == 2


def _expect_combine_error_caught(r: dict) -> None:
    (failure,) = _calls(r, stubs.RECORD_COMBINE_FAILURE_FUNCTION)
    assert failure["state"]["error"]["Error"] == "CombineError"


def _expect_nothing_to_combine(r: dict) -> None:
    assert len(r["map_runs"]) == 1 and not _calls(r, stubs.COMBINE_FUNCTION)


BUILD_CALIBRATION = Case(
    machine_name="BuildCalibration",
    substitutions=stubs.calib_substitutions(),
    bucket=stubs.BUCKET,
    objects=_calib_objects,
    scenarios=[
        Scenario(
            "bias-built-and-certified",
            _calib_input("bias", (0, 1), certify=True),
            "SUCCEEDED",
            expect=_expect_calib_all_succeed,
        ),
        Scenario(
            "flat-isr-and-combine-failures-recorded",
            _calib_input("flat", (0, 5, 7), max_failure_fraction=1.0),
            "SUCCEEDED",
            expect=_expect_flat_failures_recorded,
        ),
        Scenario(
            "defects-without-isr",
            _calib_input("defects", (2, 3)),
            "SUCCEEDED",
            expect=_expect_defects_skip_isr,
        ),
        Scenario(
            "combine-error-caught-then-too-many-failures",
            _calib_input("dark", (0, 9), certify=True),
            "FAILED",
            error="TooManyFailuresError",
            expect=_expect_combine_error_caught,
        ),
        Scenario(
            "nothing-to-combine",
            _calib_input("bias", (7,), max_failure_fraction=1.0),
            "SUCCEEDED",
            expect=_expect_nothing_to_combine,
        ),
    ],
)

CASES: dict[str, Case] = {
    "process_visit.asl.json": PROCESS_VISIT,
    "build_calibration.asl.json": BUILD_CALIBRATION,
}


def case_for(path: Path) -> Case:
    try:
        return CASES[path.name]
    except KeyError:
        raise LookupError(
            f"{path.relative_to(ROOT) if path.is_absolute() else path} has no moto cross-check: add a "
            f"cross-check case for it to CASES in tests/crosscheck/test_moto_crosscheck.py (machine name, "
            f"substitutions, ItemReader objects, input scenarios; stub Lambda handlers in "
            f"tests/crosscheck/stub_handlers.py)"
        ) from None


def _params() -> list:
    params = []
    for path in ASL_FILES:
        case = CASES.get(path.name)
        if case is None:
            params.append(pytest.param(path, None, id=f"{path.name}-NO-CASE"))
        else:
            params.extend(pytest.param(path, s, id=f"{path.name}-{s.name}") for s in case.scenarios)
    return params


# --------------------------------------------------------------------------- the two runs


def run_local(path: Path, case: Case, scenario: Scenario) -> dict[str, Any]:
    machine = StateMachine.from_file(path, case.machine_name, substitutions=case.substitutions)
    objects = case.objects(case.machine_name, scenario)
    stubs.reset()
    invocations: list[dict] = []
    lock = threading.Lock()

    def recording(name: str, handler: Callable) -> Callable:
        def call(event: Any, context: Any) -> Any:
            record = {"function": name, "event": json.loads(json.dumps(event)), "error": None}
            try:
                return handler(event, context)
            except Exception as exc:
                record["error"] = type(exc).__name__
                raise
            finally:
                with lock:
                    invocations.append(record)

        return call

    def item_reader(bucket: str, key: str) -> bytes:
        if bucket != case.bucket or key not in objects:
            raise FileNotFoundError(f"s3://{bucket}/{key}")
        return objects[key].encode()

    written: dict[str, bytes] = {}

    def result_writer(bucket: str, key: str, body: bytes) -> None:
        if bucket != case.bucket:
            raise FileNotFoundError(f"s3://{bucket} (NoSuchBucket)")
        written[key] = body

    interp = Interpreter(
        LocalIntegrations({n: recording(n, h) for n, h in stubs.HANDLERS.items()}),
        item_reader=item_reader,
        result_writer=result_writer,
        clock=FakeClock(),
    )
    ex = interp.start_execution(machine, scenario.input, name=scenario.name)
    map_runs = []
    for run in ex.map_runs:
        d = run.describe()
        map_runs.append(
            {
                "status": d["status"],
                "maxConcurrency": d["maxConcurrency"],
                "itemCounts": d["itemCounts"],
                "mapRunArn": d["mapRunArn"],
            }
        )
    return {
        "status": ex.status,
        "output": ex.output,
        "error": ex.error,
        "cause": ex.cause,
        "execution_arn": ex.execution_arn,
        "map_runs": map_runs,
        "invocations": invocations,
        "written": {k: v.decode("utf-8") for k, v in written.items()},
    }


def _moto_spec(path: Path, case: Case, scenario: Scenario) -> dict[str, Any]:
    return {
        "asl_path": str(path),
        "machine_name": case.machine_name,
        "substitutions": case.substitutions,
        "bucket": case.bucket,
        "objects": case.objects(case.machine_name, scenario),
        "execution_name": scenario.name,
        "input": scenario.input,
        "timeout_seconds": 60,
    }


class MotoBatch:
    """One moto_runner.py subprocess running a list of scenarios, started at once, read when a
    test first asks for one of its results."""

    def __init__(self, specs: list[dict[str, Any]], spec_file: Path):
        spec_file.write_text(json.dumps(specs), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER), str(spec_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._results: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def result(self, index: int) -> dict[str, Any]:
        with self._lock:
            if self._results is None:
                self._results = self._collect()
        result = self._results[index]
        if "runner_error" in result:
            pytest.fail(f"moto_runner.py could not run this scenario:\n{result['runner_error'][-3000:]}")
        return result

    def _collect(self) -> list[dict[str, Any]]:
        try:
            out, err = self.proc.communicate(timeout=MOTO_RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"moto_runner.py did not finish in {MOTO_RUN_TIMEOUT} s; stderr:\n{err[-3000:]}")
        if self.proc.returncode == EXIT_SKIP:
            pytest.skip(json.loads(out)["skip"])
        if self.proc.returncode != 0:
            pytest.fail(f"moto_runner.py exited {self.proc.returncode}; stderr:\n{err[-3000:]}")
        return json.loads(out)


@pytest.fixture(scope="module")
def moto_runs(tmp_path_factory):
    """{(file name, scenario name): result getter}: every scenario of every case, split over one
    moto_runner.py subprocess per core (moto's import costs ~2 s, a scenario ~1-2 s)."""
    import moto

    if moto.__version__ != PINNED_MOTO:
        pytest.skip(
            f"moto_runner.py patches moto {PINNED_MOTO} internals; installed moto is {moto.__version__}"
        )
    workdir = tmp_path_factory.mktemp("moto_crosscheck")
    todo = [(path, s) for path in ASL_FILES if path.name in CASES for s in CASES[path.name].scenarios]
    n = max(1, min(len(todo), os.cpu_count() or 1, 4))
    batches, runs = [], {}
    for b in range(n):
        mine = todo[b::n]
        batch = MotoBatch(
            [_moto_spec(path, CASES[path.name], s) for path, s in mine], workdir / f"batch{b}.json"
        )
        batches.append(batch)
        for i, (path, s) in enumerate(mine):
            runs[(path.name, s.name)] = (batch, i)
    yield {key: (lambda batch=batch, i=i: batch.result(i)) for key, (batch, i) in runs.items()}
    for batch in batches:
        if batch.proc.poll() is None:
            batch.proc.kill()
            batch.proc.communicate()


# --------------------------------------------------------------------------- comparison


def _cause_digest(cause: str | None) -> Any:
    """A Lambda error cause without what legitimately differs (request id, stack trace, JSON spacing)."""
    try:
        parsed = json.loads(cause) if cause else cause
    except ValueError:
        return cause
    if isinstance(parsed, dict) and "errorType" in parsed:
        return {"errorType": parsed["errorType"], "errorMessage": parsed.get("errorMessage")}
    return parsed


def _normalise_event(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Error", "Cause"}:  # a Catch's error output, passed on to a function
            return {"Error": value["Error"], "Cause": _cause_digest(value["Cause"])}
        return {k: _normalise_event(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_event(v) for v in value]
    return value


def _invocation_multiset(invocations: list[dict]) -> list[str]:
    return sorted(
        json.dumps(
            {"function": c["function"], "error": c["error"], "event": _normalise_event(c["event"])},
            sort_keys=True,
        )
        for c in invocations
    )


_COUNTS = ("total", "succeeded", "failed", "timedOut", "aborted", "pending", "running")


def _map_run_digest(runs: list[dict]) -> list[dict]:
    # resultsWritten is left out: moto counts it without writing any result file (see below).
    return [
        {
            "status": r["status"],
            "maxConcurrency": r["maxConcurrency"],
            "itemCounts": {k: r["itemCounts"].get(k) for k in _COUNTS},
        }
        for r in runs
    ]


_MAP_RUN_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/")


def _manifests(written: dict[str, str]) -> list[dict]:
    """Where the ResultWriters wrote their manifests (the map run id masked) and for which
    execution. Only that is compared: moto 5.2.5's ResultWriter writes an empty manifest and no
    result files, so what a manifest lists is checked on the local side alone
    (:func:`_check_local_results_exported`); and moto names a map run
    ``<machine>/<uuid>:<uuid>`` where AWS uses ``<machine>/<Label or state name>:<uuid>``."""
    out = []
    for key, text in written.items():
        if key.endswith("/manifest.json"):
            manifest = json.loads(text)
            out.append(
                {
                    "key": _MAP_RUN_ID.sub("/<map-run-id>/", key),
                    "bucket": manifest["DestinationBucket"],
                    "map_run_id_in_key": manifest["MapRunArn"].rsplit(":", 1)[-1] in key,
                }
            )
    return sorted(out, key=lambda m: m["key"])


def _check_local_results_exported(local: dict) -> None:
    """Every Distributed Map ran with a ResultWriter: one manifest per map run, whose result
    files hold one record per item, each child's output in the SUCCEEDED file."""
    written = local["written"]
    manifests = [json.loads(v) for k, v in written.items() if k.endswith("/manifest.json")]
    assert len(manifests) == len(local["map_runs"])
    for manifest in manifests:
        records = {
            group: [r for f in files for r in json.loads(written[f["Key"]])]
            for group, files in manifest["ResultFiles"].items()
        }
        (run,) = [r for r in local["map_runs"] if r["mapRunArn"] == manifest["MapRunArn"]]
        assert sum(len(v) for v in records.values()) == run["itemCounts"]["total"]
        assert len(records["SUCCEEDED"]) == run["itemCounts"]["succeeded"]
        assert all(
            json.loads(r["Output"]) is not None and r["Status"] == "SUCCEEDED" for r in records["SUCCEEDED"]
        )


# --------------------------------------------------------------------------- tests


def test_case_for_an_unknown_asl_file_says_what_to_add():
    with pytest.raises(LookupError, match="add a cross-check case"):
        case_for(ROOT / "statemachines" / "brand_new.asl.json")


def test_the_project_has_asl_files_to_check():
    assert ASL_FILES, "no statemachines/*.asl.json found"


@pytest.mark.parametrize(("path", "scenario"), _params())
def test_local_and_moto_interpreters_agree(path: Path, scenario: Scenario | None, request):
    if scenario is None:
        pytest.fail(str(_lookup_error(path)))
    case = case_for(path)
    moto_runs = request.getfixturevalue("moto_runs")  # starts every moto subprocess on first use
    local = run_local(path, case, scenario)
    moto = moto_runs[(path.name, scenario.name)]()

    assert moto["execution_arn"] == local["execution_arn"]
    assert (local["status"], moto["status"]) == (scenario.status, scenario.status), (
        f"local: {local['status']} {local['error']} {local['cause']}\nmoto: {moto['status']} {moto['error']} "
        f"{moto['cause']}"
    )
    if scenario.status == "SUCCEEDED":
        assert moto["output"] == local["output"]
    else:
        assert local["error"] == moto["error"] == scenario.error
        assert _cause_digest(moto["cause"]) == _cause_digest(local["cause"])
    assert _map_run_digest(moto["map_runs"]) == _map_run_digest(local["map_runs"])
    assert _invocation_multiset(moto["invocations"]) == _invocation_multiset(local["invocations"])
    assert _manifests(moto["written"]) == _manifests(local["written"])
    _check_local_results_exported(local)
    if scenario.expect is not None:
        scenario.expect(local)


def _lookup_error(path: Path) -> LookupError:
    try:
        case_for(path)
    except LookupError as exc:
        return exc
    raise AssertionError(f"{path.name} has a case")
