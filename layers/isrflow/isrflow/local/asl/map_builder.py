"""Validation and compilation of Map states (inline and distributed, ItemReader, ResultWriter)."""

from __future__ import annotations

from typing import Any

from isrflow.local.asl.state_builder import UNSUPPORTED_FIELDS, StateBuilder
from isrflow.local.asl.states import (
    OUTPUT_TYPES,
    S3_GET_OBJECT,
    S3_PUT_OBJECT,
    TRANSFORMATIONS,
    ItemReader,
    MapState,
    ResultWriter,
)


class DefinitionBuilder(StateBuilder):
    """The whole builder: :class:`StateBuilder` and Map states."""

    def _map(self, st: MapState, obj: dict, where: str) -> None:
        self._results(st, obj, where)
        self._errors(st, obj, where)
        if "ItemSelector" in obj and "Parameters" in obj:
            self.bad(where, "a Map state cannot have both ItemSelector and (deprecated) Parameters")
        st.item_selector = st.parameters if "Parameters" in obj else self.template(obj, "ItemSelector", where)
        st.parameters = None
        if ("ItemProcessor" in obj) == ("Iterator" in obj):
            self.bad(where, "a Map state needs exactly one of ItemProcessor and (deprecated) Iterator")
        field = "ItemProcessor" if "ItemProcessor" in obj else "Iterator"
        proc = obj.get(field)
        ploc = f"{where}.{field}"
        mode = "INLINE"
        if isinstance(proc, dict):
            for k in proc:
                if k not in ("StartAt", "States", "Comment", "ProcessorConfig"):
                    self.bad(f"{ploc}.{k}", "field not allowed in an ItemProcessor")
            cfg = proc.get("ProcessorConfig", {})
            if not isinstance(cfg, dict):
                self.bad(ploc + ".ProcessorConfig", "must be an object")
                cfg = {}
            for k in cfg:
                if k not in ("Mode", "ExecutionType"):
                    self.bad(f"{ploc}.ProcessorConfig.{k}", "field not allowed in ProcessorConfig")
            mode = cfg.get("Mode", "INLINE")
            if mode not in ("INLINE", "DISTRIBUTED"):
                self.bad(ploc + ".ProcessorConfig.Mode", "must be INLINE or DISTRIBUTED")
            et = cfg.get("ExecutionType")
            if mode == "DISTRIBUTED":
                if et is None:
                    self.bad(
                        ploc + ".ProcessorConfig.ExecutionType", "required with Mode DISTRIBUTED (STANDARD)"
                    )
                elif et == "EXPRESS":
                    self.bad(
                        ploc + ".ProcessorConfig.ExecutionType",
                        "EXPRESS child executions are not supported: use STANDARD (EXPRESS children "
                        "cannot run .sync tasks and moto rejects them)",
                        unsupported=True,
                    )
                elif et != "STANDARD":
                    self.bad(ploc + ".ProcessorConfig.ExecutionType", "must be STANDARD or EXPRESS")
            elif et is not None:
                self.bad(ploc + ".ProcessorConfig.ExecutionType", "only allowed with Mode DISTRIBUTED")
            st.execution_type = et
        st.distributed = mode == "DISTRIBUTED"
        st.processor = self.graph(proc, ploc)
        st.items_path = self.path(obj, "ItemsPath", where, reference=True, nullable=False)
        if "MaxConcurrency" in obj and "MaxConcurrencyPath" in obj:
            self.bad(where, "a Map state cannot have both MaxConcurrency and MaxConcurrencyPath")
        st.max_concurrency = self.int_field(obj, "MaxConcurrency", where, 0, 0)
        st.max_concurrency_path = self.path(
            obj, "MaxConcurrencyPath", where, reference=True, nullable=False, default=None
        )
        if "Label" in obj:
            if not st.distributed:
                self.bad(where + ".Label", "only allowed in a DISTRIBUTED Map")
            elif not isinstance(obj["Label"], str) or len(obj["Label"]) > 40:
                self.bad(where + ".Label", "must be a string of at most 40 characters")
        if "ItemReader" in obj:
            if not st.distributed:
                self.bad(where + ".ItemReader", "ItemReader is only allowed in a DISTRIBUTED Map")
            st.item_reader = self.item_reader(obj["ItemReader"], where + ".ItemReader")
        if "ResultWriter" in obj:
            if not st.distributed:
                self.bad(where + ".ResultWriter", "ResultWriter is only allowed in a DISTRIBUTED Map")
            st.result_writer = self.result_writer(obj["ResultWriter"], where + ".ResultWriter")

    def result_writer(self, r: Any, where: str) -> ResultWriter | None:
        if not isinstance(r, dict):
            self.bad(where, "must be an object")
            return None
        rw = ResultWriter()
        for k in r:
            if k not in ("Resource", "Parameters", "WriterConfig"):
                self.bad(
                    f"{where}.{k}",
                    "field not allowed in a ResultWriter"
                    if k != "Arguments"
                    else UNSUPPORTED_FIELDS["Arguments"],
                    unsupported=k == "Arguments",
                )
        if "Resource" not in r and "Parameters" not in r:
            self.bad(
                where,
                "a ResultWriter with only WriterConfig (results transformed into the state output, "
                "not exported) is not supported: give Resource and Parameters",
                unsupported=True,
            )
        elif r.get("Resource") != S3_PUT_OBJECT:
            self.bad(where + ".Resource", f"must be {S3_PUT_OBJECT}")
        elif not isinstance(r.get("Parameters"), dict):
            self.bad(where + ".Parameters", "required: an object with Bucket and Prefix")
        else:
            params = r["Parameters"]
            if "Bucket" not in params and "Bucket.$" not in params:
                self.bad(where + ".Parameters.Bucket", "required")
            for k in params:
                if k.removesuffix(".$") not in ("Bucket", "Prefix"):
                    self.bad(f"{where}.Parameters.{k}", "field not allowed (Bucket and Prefix only)")
            rw.parameters = self.template(r, "Parameters", where)
        cfg = r.get("WriterConfig", {})
        if not isinstance(cfg, dict):
            self.bad(where + ".WriterConfig", "must be an object")
            return rw
        for k in cfg:
            if k not in ("Transformation", "OutputType"):
                self.bad(
                    f"{where}.WriterConfig.{k}", "field not allowed (Transformation and OutputType only)"
                )
        rw.transformation = cfg.get("Transformation", "NONE")
        if rw.transformation not in TRANSFORMATIONS:
            self.bad(where + ".WriterConfig.Transformation", f"must be one of {', '.join(TRANSFORMATIONS)}")
        rw.output_type = cfg.get("OutputType", "JSON")
        if rw.output_type not in OUTPUT_TYPES:
            self.bad(where + ".WriterConfig.OutputType", f"must be one of {', '.join(OUTPUT_TYPES)}")
        return rw

    def item_reader(self, r: Any, where: str) -> ItemReader | None:
        if not isinstance(r, dict):
            self.bad(where, "must be an object")
            return None
        ir = ItemReader()
        for k in r:
            if k not in ("Resource", "Parameters", "ReaderConfig"):
                self.bad(
                    f"{where}.{k}",
                    "field not allowed in an ItemReader"
                    if k != "Arguments"
                    else UNSUPPORTED_FIELDS["Arguments"],
                    unsupported=k == "Arguments",
                )
        res = r.get("Resource")
        if res != S3_GET_OBJECT:
            known = isinstance(res, str) and res.startswith("arn:aws:states:::s3:")
            self.bad(
                where + ".Resource",
                f"only {S3_GET_OBJECT} (a JSON array object) is supported"
                + (f", not {res!r}" if known else ""),
                unsupported=known,
            )
        ir.parameters = self.template(r, "Parameters", where)
        cfg = r.get("ReaderConfig", {})
        if not isinstance(cfg, dict):
            self.bad(where + ".ReaderConfig", "must be an object")
            return ir
        for k in cfg:
            if k not in ("InputType", "MaxItems", "MaxItemsPath"):
                self.bad(
                    f"{where}.ReaderConfig.{k}",
                    "not supported (the JSON reader takes InputType and MaxItems/MaxItemsPath)",
                    unsupported=True,
                )
        it = cfg.get("InputType")
        if res == S3_GET_OBJECT and it != "JSON":
            known = it in ("CSV", "JSONL", "PARQUET", "MANIFEST")
            self.bad(
                where + ".ReaderConfig.InputType",
                "only InputType JSON is supported"
                + (f", not {it}" if known else " (required for s3:getObject)"),
                unsupported=known,
            )
        if "MaxItems" in cfg and "MaxItemsPath" in cfg:
            self.bad(where + ".ReaderConfig", "cannot have both MaxItems and MaxItemsPath")
        ir.max_items = self.int_field(cfg, "MaxItems", where + ".ReaderConfig", 1)
        if ir.max_items is not None and ir.max_items > 100_000_000:
            self.bad(where + ".ReaderConfig.MaxItems", "must be at most 100000000")
        ir.max_items_path = self.path(
            cfg, "MaxItemsPath", where + ".ReaderConfig", reference=True, nullable=False, default=None
        )
        return ir
