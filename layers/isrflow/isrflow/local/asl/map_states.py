"""The Parallel and Map states (inline, and distributed with child executions, ItemReader
and ResultWriter)."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from isrflow.local.asl.basic_states import BasicStates
from isrflow.local.asl.execution import ABORTED, FAILED, SUCCEEDED, Execution, MapRun
from isrflow.local.asl.history import compact_json
from isrflow.local.asl.jsonpath import PathNotFound
from isrflow.local.asl.result_writer import PENDING, ChildRecord, export_files
from isrflow.local.asl.run_context import (
    DISCARDED,
    EXCEEDED_CAUSE,
    Abort,
    ChildFailed,
    Env,
    Failure,
    Outcome,
    Run,
)
from isrflow.local.asl.states import (
    MapState,
    ParallelState,
    ResultWriter,
)


class ParallelMapStates(BasicStates):
    """Parallel and Map (inline and distributed)."""

    # -- Parallel and Map
    def _run_all(
        self, n: int, work: Callable[[int], None], concurrency: int, stops: tuple[threading.Event, ...]
    ) -> None:
        """``work(i)`` for every i (it must not raise), on at most ``concurrency`` threads
        (0 = ``max_workers``); no new item starts once any of ``stops`` is set."""
        if n == 0:
            return
        workers = min(n, concurrency or self.max_workers, self.max_workers)

        def stopped() -> bool:
            return any(e.is_set() for e in stops)

        if workers == 1:
            for i in range(n):
                if stopped():
                    return
                work(i)
            return
        counter = itertools.count()

        def loop():
            while not stopped():
                i = next(counter)
                if i >= n:
                    return
                work(i)

        threads = [threading.Thread(target=loop, daemon=True, name=f"sfn-worker-{k}") for k in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _parallel(
        self, st: ParallelState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float
    ):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")

        def attempt(prev: int, retry_count: int):
            env = Env(run, st.name, entered, retry_count)
            branch_input = (
                effective
                if st.parameters is None
                else self._template(st.parameters, effective, env, st, entered_id, prev)
            )
            started = run.history.add("ParallelStateStarted", run.clock.now(), prev, None)
            n = len(st.branches)
            results: list = [None] * n
            stop = threading.Event()
            outcome = Outcome()
            inner_cancel = (*cancel, stop)

            def work(i: int) -> None:
                try:
                    results[i], _ = self._run_graph(st.branches[i], branch_input, run, inner_cancel, started)
                except BaseException as exc:
                    outcome.record(exc)
                    stop.set()

            self._run_all(n, work, n, inner_cancel)
            outcome.reraise_control()
            run.check(cancel)  # stopped (or timed out) before every branch had started
            if outcome.failure is not None:
                f = outcome.failure
                prev = run.history.add("ParallelStateFailed", run.clock.now(), len(run.history), None)
                raise Failure(f.error, f.cause, prev)
            prev = run.history.add("ParallelStateSucceeded", run.clock.now(), len(run.history), None)
            if self.payload_limit_bytes is not None and st.result_path is not None:
                self._check_size(compact_json(results), "the Parallel state's result", prev)
            return results, prev

        return self._with_recovery(st, raw, run, cancel, entered_id, entered, attempt)

    def _map(self, st: MapState, raw: Any, run: Run, cancel: tuple, entered_id: int, entered: float):
        effective = self._path(st.input_path, raw, st, run, entered, entered_id, "InputPath")
        concurrency = st.max_concurrency
        if st.max_concurrency_path is not None:
            try:
                concurrency = st.max_concurrency_path.apply(effective)
            except PathNotFound:
                raise self._runtime(
                    st,
                    entered_id,
                    f"Invalid path '{st.max_concurrency_path.text}' (MaxConcurrencyPath)",
                    entered_id,
                ) from None
            if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0:
                raise self._runtime(
                    st,
                    entered_id,
                    f"MaxConcurrencyPath must select a non-negative integer, not {compact_json(concurrency)}",
                    entered_id,
                )
        collect = st.result_path is not None

        def attempt(prev: int, retry_count: int):
            items = self._map_items(st, effective, run, entered, entered_id, prev)
            prev = run.history.add("MapStateStarted", run.clock.now(), prev, {"length": len(items)})
            if st.distributed:
                # the state's result (aggregated outputs, or the ResultWriter's details): it is
                # measured before ResultPath applies, so ResultPath null does not exempt it
                return self._distributed(
                    st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect
                )
            results, prev = self._inline(
                st, effective, items, run, cancel, entered, entered_id, prev, concurrency, collect
            )
            if not collect:
                return DISCARDED, prev
            if self.payload_limit_bytes is not None:
                self._check_size(compact_json(results), "the Map state's result", prev)
            return results, prev

        return self._with_recovery(st, raw, run, cancel, entered_id, entered, attempt)

    def _map_items(
        self, st: MapState, effective: Any, run: Run, entered: float, entered_id: int, prev: int
    ) -> list:
        reader = st.item_reader
        if reader is None:
            source = effective
        else:
            env = Env(run, st.name, entered)
            params = (
                {}
                if reader.parameters is None
                else self._template(reader.parameters, effective, env, st, entered_id, prev)
            )
            bucket, key = params.get("Bucket"), params.get("Key")
            if not isinstance(bucket, str) or not isinstance(key, str):
                raise Failure(
                    "States.ItemReaderFailed",
                    f"ItemReader Parameters need string Bucket and Key, got {compact_json(params)}",
                    prev,
                )
            if self.item_reader is None:
                raise Failure(
                    "States.ItemReaderFailed",
                    f"no item reader is configured to read s3://{bucket}/{key} "
                    f"(pass Interpreter(item_reader=...))",
                    prev,
                )
            try:
                body = self.item_reader(bucket, key)
                source = json.loads(body)
            except Exception as exc:
                raise Failure(
                    "States.ItemReaderFailed",
                    f"cannot read a JSON array from s3://{bucket}/{key}: {type(exc).__name__}: {exc}",
                    prev,
                ) from None
        items = self._path(st.items_path, source, st, run, entered, entered_id, "ItemsPath")
        if not isinstance(items, list):
            if reader is not None:
                raise Failure(
                    "States.ItemReaderFailed",
                    f"the ItemReader object does not hold a JSON array (found {type(items).__name__})",
                    prev,
                )
            raise self._runtime(
                st,
                entered_id,
                f"ItemsPath '{st.items_path.text}' must select an array, not {compact_json(items)[:200]}",
                prev,
            )
        if reader is not None:
            max_items = reader.max_items
            if reader.max_items_path is not None:
                max_items = self._positive_int(
                    st, reader.max_items_path, effective, entered_id, "MaxItemsPath"
                )
            if max_items is not None:
                items = items[:max_items]
        return items

    def _item_input(
        self,
        st: MapState,
        effective: Any,
        items: list,
        i: int,
        run: Run,
        entered: float,
        entered_id: int,
        prev: int,
    ) -> Any:
        if st.item_selector is None:
            return items[i]
        env = Env(run, st.name, entered, 0, (i, items[i]))
        return self._template(st.item_selector, effective, env, st, entered_id, prev)

    def _inline(
        self,
        st: MapState,
        effective: Any,
        items: list[Any],
        run: Run,
        cancel: tuple[threading.Event, ...],
        entered: float,
        entered_id: int,
        prev: int,
        concurrency: int,
        collect: bool,
    ) -> tuple[Any, int]:
        n = len(items)
        results: list = [None] * n if collect else []
        stop = threading.Event()
        outcome = Outcome()
        inner_cancel = (*cancel, stop)
        started = prev
        proc = st.processor
        assert proc is not None  # every Map state has an ItemProcessor (map_builder)

        def work(i: int) -> None:
            ip = 0
            try:
                item_input = self._item_input(st, effective, items, i, run, entered, entered_id, started)
                ip = run.history.add(
                    "MapIterationStarted", run.clock.now(), started, {"name": st.name, "index": i}
                )
                out, p = self._run_graph(proc, item_input, run, inner_cancel, ip)
                run.history.add("MapIterationSucceeded", run.clock.now(), p, {"name": st.name, "index": i})
                if collect:
                    results[i] = out
            except Failure as f:
                if ip:
                    run.history.add(
                        "MapIterationFailed", run.clock.now(), f.prev, {"name": st.name, "index": i}
                    )
                outcome.record(f)
                stop.set()
            except BaseException as exc:
                if ip and isinstance(exc, Abort):
                    run.history.add(
                        "MapIterationAborted",
                        run.clock.now(),
                        len(run.history),
                        {"name": st.name, "index": i},
                    )
                outcome.record(exc)
                stop.set()

        self._run_all(n, work, concurrency, inner_cancel)
        outcome.reraise_control()
        run.check(cancel)  # stopped (or timed out) before every iteration had started
        if outcome.failure is not None:
            f = outcome.failure
            prev = run.history.add("MapStateFailed", run.clock.now(), len(run.history), None)
            raise Failure(f.error, f.cause, prev)
        prev = run.history.add("MapStateSucceeded", run.clock.now(), len(run.history), None)
        return results, prev

    def _distributed(
        self,
        st: MapState,
        effective: Any,
        items: list[Any],
        run: Run,
        cancel: tuple[threading.Event, ...],
        entered: float,
        entered_id: int,
        prev: int,
        concurrency: int,
        collect: bool,
    ) -> tuple[Any, int]:
        n = len(items)
        parent = run.execution
        label = st.label or st.name
        machine_part = parent.state_machine_arn.split(":stateMachine:", 1)[-1]
        base = f"arn:aws:states:{self.region}:{self.account}"
        map_run_arn = f"{base}:mapRun:{machine_part}/{label}:{self.new_uuid()}"
        child_sm_arn = f"{base}:stateMachine:{machine_part}/{label}"
        map_run = MapRun(map_run_arn, parent.execution_arn, st.name, label, concurrency, n, run.clock.now())
        with self._lock:
            self._map_runs[map_run_arn] = map_run
        parent.map_runs.append(map_run)
        prev = run.history.add("MapRunStarted", run.clock.now(), prev, {"mapRunArn": map_run_arn})
        writer = st.result_writer
        collect = collect and writer is None
        results: list = [None] * n if collect else []
        sizes: list[int] = [0] * n  # UTF-8 bytes of each child's output (aggregated when no ResultWriter)
        stop = threading.Event()
        outcome = Outcome()
        child_cancel = (stop, *cancel)
        proc = st.processor

        def work(i: int) -> None:
            try:
                child_input = self._item_input(st, effective, items, i, run, entered, entered_id, prev)
                text = compact_json(child_input)
                self._check_size(text, f"the input of Map item {i}", prev)
                name = self.new_uuid()
                child = Execution(
                    f"{base}:execution:{machine_part}/{label}:{name}",
                    child_sm_arn,
                    name,
                    json.loads(text),
                    run.clock.now(),
                    self.max_history_events,
                    graph=proc,
                    map_run_arn=map_run_arn,
                )
                map_run.executions[i] = child
                with self._lock:
                    self._executions[child.execution_arn] = child
                self._execute(child, run.deadline, child_cancel, timeout_aborts=True)
                if child.status == SUCCEEDED:
                    if collect:
                        results[i] = child.output
                    if writer is None:
                        sizes[i] = len(compact_json(child.output).encode("utf-8"))
                elif child.status != ABORTED:  # aborted children were cancelled by the run, not failed
                    outcome.record(ChildFailed())
                    stop.set()
            except BaseException as exc:
                outcome.record(exc)
                stop.set()

        self._run_all(n, work, concurrency, child_cancel)
        map_run.stop_ts = run.clock.now()
        if any(e.is_set() for e in cancel) or (run.deadline is not None and run.clock.now() >= run.deadline):
            map_run.status = ABORTED
            run.history.add("MapRunAborted", run.clock.now(), prev, None)
            run.check(cancel)
        if outcome.failure is not None or outcome.child_failed:
            map_run.status = FAILED
            if outcome.failure is not None:
                error, cause = outcome.failure.error, outcome.failure.cause
            else:
                error, cause = "States.ExceedToleratedFailureThreshold", EXCEEDED_CAUSE
                if writer is not None:  # failed children are exported too; the map's own error wins
                    with contextlib.suppress(Failure):
                        self._export(st, writer, effective, items, map_run, run, entered, entered_id, prev)
            prev = run.history.add("MapRunFailed", run.clock.now(), prev, {"error": error, "cause": cause})
            prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
            raise Failure(error, cause, prev)
        result: Any
        if writer is not None:
            try:
                result = self._export(st, writer, effective, items, map_run, run, entered, entered_id, prev)
            except Failure as f:
                map_run.status = FAILED
                prev = run.history.add(
                    "MapRunFailed", run.clock.now(), prev, {"error": f.error, "cause": f.cause}
                )
                prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
                raise Failure(f.error, f.cause, prev) from None
        else:
            # AWS aggregates every child's output into the state's result before ResultPath and
            # OutputPath apply: the array counts against the payload limit even when discarded
            total = 2 + sum(sizes) + max(0, n - 1)  # "[" + outputs joined by "," + "]"
            limit = self.payload_limit_bytes
            if limit is not None and total > limit:
                map_run.status = SUCCEEDED
                prev = run.history.add("MapRunSucceeded", run.clock.now(), prev, None)
                prev = run.history.add("MapStateFailed", run.clock.now(), prev, None)
                raise Failure(
                    "States.DataLimitExceeded",
                    f"The state/task '{st.name}' returned a result with a size exceeding the maximum "
                    f"number of bytes service limit (the Distributed Map's aggregated child results: "
                    f"{total} bytes > {limit}; add a ResultWriter to export them to S3)",
                    prev,
                )
            result = results if collect else DISCARDED
        map_run.status = SUCCEEDED
        prev = run.history.add("MapRunSucceeded", run.clock.now(), prev, None)
        prev = run.history.add("MapStateSucceeded", run.clock.now(), prev, None)
        return result, prev

    def _export(
        self,
        st: MapState,
        writer: ResultWriter,
        effective: Any,
        items: list,
        map_run: MapRun,
        run: Run,
        entered: float,
        entered_id: int,
        prev: int,
    ) -> dict:
        """Write the map run's results with the state's ResultWriter; returns the state's result
        ``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``. Any problem is
        ``States.ResultWriterFailed``."""
        env = Env(run, st.name, entered)
        params = (
            {}
            if writer.parameters is None
            else self._template(writer.parameters, effective, env, st, entered_id, prev)
        )
        bucket, prefix = params.get("Bucket"), params.get("Prefix", "")
        if not isinstance(bucket, str) or not bucket or not isinstance(prefix, str):
            raise Failure(
                "States.ResultWriterFailed",
                f"ResultWriter Parameters need a string Bucket and Prefix, got {compact_json(params)}",
                prev,
            )
        if self.result_writer is None:
            raise Failure(
                "States.ResultWriterFailed",
                f"no result writer is configured to write to s3://{bucket}/"
                f"{prefix} (pass Interpreter(result_writer=...))",
                prev,
            )
        children = []
        for i, ex in enumerate(map_run.executions):
            if ex is None:
                children.append(ChildRecord(PENDING, items[i]))
            else:
                children.append(
                    ChildRecord(
                        ex.status,
                        ex.input,
                        ex.execution_arn,
                        ex.name,
                        ex.state_machine_arn,
                        ex.output,
                        ex.error,
                        ex.cause,
                        ex.start_ts,
                        ex.stop_ts,
                    )
                )
        export = export_files(
            children,
            bucket=bucket,
            prefix=prefix,
            map_run_arn=map_run.map_run_arn,
            transformation=writer.transformation,
            output_type=writer.output_type,
        )
        for key, body in export.objects:
            try:
                self.result_writer(bucket, key, body)
            except Exception as exc:
                raise Failure(
                    "States.ResultWriterFailed",
                    f"cannot write s3://{bucket}/{key}: {type(exc).__name__}: {exc}",
                    prev,
                ) from None
        map_run.results_written = export.results_written
        return export.result
