#!/usr/bin/env python3
"""Draw docs/architecture.svg from template.yaml and statemachines/*.asl.json.

The diagram is derived from the code, not drawn by hand, so it cannot drift silently:

- the state machines (every state, its type, every Next/Default/Choice/Catch transition, the
  Lambda function or ECS task each Task calls, the non-Lambda errors each Retry names) are read
  from the ASL files that ``template.yaml``'s ``AWS::Serverless::StateMachine`` resources name;
- the Lambda functions (logical id, code directory or Dockerfile target), the SQS queues and
  their redrive settings, the SQS event source of the registry writer (batch size, window), the
  EventBridge rule of the ingest function, which functions read the registry database
  (``ISRFLOW_REGISTRY_URL`` in their environment) and the Fargate task definition are read
  from ``template.yaml`` with the project's own CloudFormation loader;
- the local runtime's equivalents are a fixed table whose modules are checked to exist.

Plain SVG text (no Graphviz, no matplotlib): boxes, lines and labels at fixed coordinates in
SVG user units (pixels). Deterministic: the same inputs give byte-identical output.

Usage::

    .venv/bin/python docs/make_diagram.py            # writes docs/architecture.svg
    .venv/bin/python docs/make_diagram.py --check    # exit 1 if docs/architecture.svg is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "isrflow"))

from isrflow.local.sam_template import load_template  # noqa: E402  (path set just above)

OUTPUT = ROOT / "docs" / "architecture.svg"

# Geometry, in SVG pixels.
STATE_H = 22  # height of one state box
STATE_GAP = 12  # vertical gap between consecutive states
MAP_PAD = 8  # padding inside a Map container
CHAR_W = 6.0  # rough width of one character at font-size 10.5 (sans-serif)

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f", "#bab0ac"]
FARGATE_COLOR = "#8c564b"

# What each AWS piece is on one machine: (AWS piece, local stand-in, module under layers/isrflow).
LOCAL_EQUIVALENTS = [
    ("Step Functions (ASL)", "project's own ASL interpreter", "isrflow/local/asl/interpreter.py"),
    ("Lambda functions", "real handlers in a process pool, reserved concurrency", "isrflow/local/lambdas.py"),
    ("Fargate ecs:runTask.sync", "subprocess with real exit code", "isrflow/local/tasks.py"),
    ("SQS registry queue + DLQ", "durable SQLite queue (WAL)", "isrflow/local/queue.py"),
    ("SQS -> writer mapping", "local event source (batch, window)", "isrflow/local/event_source.py"),
    ("S3 data bucket", "file datastore under the repo", "isrflow/io/storage.py"),
    ("RDS PostgreSQL registry", "SQLite (or PostgreSQL) registry", "isrflow/registry/engine.py"),
    ("S3 -> EventBridge -> ingest", "isrflow ingest --watch", "isrflow/prompt/watch.py"),
    ("Step Functions API", "isrflow local serve", "isrflow/local/sfn_api.py"),
    ("template.yaml wiring", "same template, read locally", "isrflow/local/sam_template/app.py"),
]


# --------------------------------------------------------------------------------------------
# Reading the code
# --------------------------------------------------------------------------------------------


@dataclass
class State:
    """One ASL state, flattened for drawing."""

    name: str
    type: str
    calls: str = ""  # logical id of the Lambda function / task definition called
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (target, label, kind)
    retries: list[str] = field(default_factory=list)  # non-Lambda error names retried
    end: bool = False
    children: list[State] = field(default_factory=list)  # Map: the item processor's states
    map_note: str = ""


@dataclass
class Function:
    """A Lambda function of the template."""

    logical_id: str
    code: str  # functions/<dir>/ or Dockerfile target
    reads_registry: bool
    color: str = ""


def _short_error(name: str) -> str:
    return name.replace("Lambda.", "").replace("Exception", "").replace("States.", "")


def _task_target(state: dict[str, Any], arn_to_id: dict[str, str]) -> str:
    resource = state.get("Resource", "")
    params = state.get("Parameters") or state.get("Arguments") or {}
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        fn = str(params.get("FunctionName", ""))
        return arn_to_id.get(fn, fn)
    if resource.startswith("arn:aws:states:::ecs:runTask"):
        td = str(params.get("TaskDefinition", ""))
        return arn_to_id.get(td, td)
    return resource


def _choice_label(rule: dict[str, Any]) -> str:
    variable = rule.get("Variable")
    if variable is None:
        for key in ("And", "Or", "Not"):
            if key in rule:
                return key.lower()
        return "if"
    return str(variable).rsplit(".", 1)[-1]


def read_states(states: dict[str, Any], arn_to_id: dict[str, str]) -> list[State]:
    """The states of one ASL ``States`` object, in definition order (nested Map processors inside)."""
    out = []
    for name, s in states.items():
        st = State(name=name, type=s["Type"], end=bool(s.get("End")) or s["Type"] in ("Succeed", "Fail"))
        if s["Type"] == "Task":
            st.calls = _task_target(s, arn_to_id)
        for r in s.get("Retry", []):
            st.retries += [e for e in r["ErrorEquals"] if not e.startswith(("Lambda.", "ECS.", "AmazonECS."))]
        if "Next" in s:
            st.transitions.append((s["Next"], "", "next"))
        for rule in s.get("Choices", []):
            st.transitions.append((rule["Next"], _choice_label(rule), "choice"))
        if "Default" in s:
            st.transitions.append((s["Default"], "else", "choice"))
        for c in s.get("Catch", []):
            label = ",".join(_short_error(e) for e in c["ErrorEquals"])
            st.transitions.append((c["Next"], label, "catch"))
        if s["Type"] == "Map":
            proc = s.get("ItemProcessor") or s.get("Iterator") or {}
            mode = (proc.get("ProcessorConfig") or {}).get("Mode", "INLINE")
            bits = [mode.lower()]
            if "ItemReader" in s:
                bits.append("ItemReader")
            if "ResultWriter" in s:
                bits.append("ResultWriter")
            st.map_note = "Map: " + ", ".join(bits)
            st.children = read_states(proc.get("States", {}), arn_to_id)
        out.append(st)
    return out


@dataclass
class Model:
    """Everything the diagram shows, read from template.yaml and the ASL files."""

    machines: list[tuple[str, str, list[State]]]  # (logical id, ASL path, states)
    functions: list[Function]
    queue: str
    dlq: str
    max_receive: int
    writer: str
    batch_size: int
    window_s: int
    ingest: str
    ingest_pattern: str
    task_definition: str
    database: str
    bucket: str
    migrate: str


def _ref_id(node: Any) -> str:
    if isinstance(node, dict):
        if "Ref" in node:
            return str(node["Ref"])
        if "Fn::GetAtt" in node:
            return str(node["Fn::GetAtt"][0])
    return ""


def read_model(root: Path = ROOT) -> Model:
    """Read the template and the ASL files it names."""
    template = load_template(root / "template.yaml")
    resources = template["Resources"]
    functions: list[Function] = []
    queue = dlq = writer = ingest = task_definition = database = bucket = migrate = ""
    max_receive = batch_size = window_s = 0
    ingest_pattern = ""
    for logical_id, r in resources.items():
        kind, props = r["Type"], r.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            target = (r.get("Metadata") or {}).get("DockerBuildTarget", "?")
            code = props.get("CodeUri") or f"image:{target}"
            env = (props.get("Environment") or {}).get("Variables", {})
            functions.append(Function(logical_id, str(code).rstrip("/"), "ISRFLOW_REGISTRY_URL" in env))
            if "ISRFLOW_REGISTRY_WRITER_SECRET_ARN" in env:
                migrate = logical_id
            for event in (props.get("Events") or {}).values():
                ep = event.get("Properties", {})
                if event["Type"] == "SQS":
                    queue = _ref_id(ep.get("Queue"))
                    writer = logical_id
                    batch_size = int(ep.get("BatchSize", 10))
                    window_s = int(ep.get("MaximumBatchingWindowInSeconds", 0))
                elif event["Type"] == "EventBridgeRule":
                    ingest = logical_id
                    pattern = ep.get("Pattern", {})
                    keys = pattern.get("detail", {}).get("object", {}).get("key", [{}])
                    prefix = keys[0].get("prefix", "") if keys and isinstance(keys[0], dict) else ""
                    ingest_pattern = f"{pattern.get('detail-type', ['?'])[0]} {prefix}*"
        elif kind == "AWS::ECS::TaskDefinition":
            task_definition = logical_id
        elif kind == "AWS::RDS::DBInstance":
            database = logical_id
        elif kind == "AWS::S3::Bucket":
            bucket = logical_id
    if queue:
        redrive = resources[queue]["Properties"].get("RedrivePolicy", {})
        dlq = _ref_id(redrive.get("deadLetterTargetArn"))
        max_receive = int(redrive.get("maxReceiveCount", 0))
    for i, f in enumerate(functions):
        f.color = PALETTE[i % len(PALETTE)]

    machines = []
    for logical_id, r in resources.items():
        if r["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = r["Properties"]
        arn_to_id = {}
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            target = _ref_id(value)
            if target:
                arn_to_id["${" + key + "}"] = target
        path = str(props["DefinitionUri"])
        definition = json.loads((root / path).read_text(encoding="utf-8"))
        machines.append((logical_id, path, read_states(definition["States"], arn_to_id)))
    return Model(
        machines,
        functions,
        queue,
        dlq,
        max_receive,
        writer,
        batch_size,
        window_s,
        ingest,
        ingest_pattern,
        task_definition,
        database,
        bucket,
        migrate,
    )


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


class Svg:
    """A list of SVG elements; coordinates in pixels."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str = "#ffffff",
        stroke: str = "#333333",
        rx: float = 4,
        dash: bool = False,
        width: float = 1.0,
    ) -> None:
        d = ' stroke-dasharray="4 3"' if dash else ""
        self.items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{d}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        s: str,
        size: float = 10.5,
        anchor: str = "start",
        weight: str = "normal",
        color: str = "#222222",
        italic: bool = False,
    ) -> None:
        st = ' font-style="italic"' if italic else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{color}"{st}>{escape(s)}</text>'
        )

    def path(
        self,
        points: list[tuple[float, float]],
        color: str = "#444444",
        dash: bool = False,
        arrow: bool = True,
        width: float = 1.0,
    ) -> None:
        d = "M " + " L ".join(f"{x:.1f} {y:.1f}" for x, y in points)
        extra = ' stroke-dasharray="4 3"' if dash else ""
        marker = f' marker-end="url(#arrow{_marker_key(color)})"' if arrow else ""
        self.items.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{extra}{marker}/>'
        )

    def render(self, width: int, height: int, colors: list[str]) -> str:
        markers = "".join(
            f'<marker id="arrow{_marker_key(c)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{c}"/></marker>'
            for c in sorted(set(colors))
        )
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">\n'
            f'<defs>{markers}</defs>\n<rect width="100%" height="100%" fill="#ffffff"/>\n'
        )
        return head + "\n".join(self.items) + "\n</svg>\n"


def _marker_key(color: str) -> str:
    return color.lstrip("#")


ARROW_COLORS = ["#444444", "#c0392b", "#1f77b4", "#2e7d32"]
TYPE_FILL = {
    "Choice": "#fff8dc",
    "Pass": "#f4f4f4",
    "Succeed": "#e8f5e9",
    "Fail": "#fdecea",
    "Map": "#f7fbff",
    "Wait": "#f4f4f4",
    "Parallel": "#f7fbff",
}


def _state_h(s: State) -> float:
    """Height of one state's box: a Map holds its children; a Task with custom retries has two lines."""
    if s.children:
        return _height(s.children) + 2 * MAP_PAD + 16
    return STATE_H + 12 if s.retries else STATE_H


def _height(states: list[State]) -> float:
    total = sum(_state_h(s) + STATE_GAP for s in states)
    return total - STATE_GAP if states else 0.0


def draw_states(
    svg: Svg, states: list[State], x: float, y: float, w: float, colors: dict[str, str], lane_x: float
) -> float:
    """Draw ``states`` in a column at (x, y), width w; side transitions use lanes left of ``lane_x``.

    Returns the y below the last state.
    """
    pos: dict[str, tuple[float, float]] = {}  # name -> (top, bottom)
    order = [s.name for s in states]
    cy = y
    for s in states:
        h = _state_h(s)
        if s.children:
            svg.rect(x, cy, w, h, fill=TYPE_FILL["Map"], stroke="#6b8fb5", dash=True)
            svg.text(x + 6, cy + 12, f"{s.name}", weight="bold", size=10.5)
            svg.text(x + w - 6, cy + 12, s.map_note, anchor="end", size=9, color="#555555", italic=True)
            draw_states(
                svg, s.children, x + MAP_PAD + 10, cy + 16 + MAP_PAD, w - 2 * MAP_PAD - 26, colors, x + w - 4
            )
        else:
            color = colors.get(s.calls, "#333333")
            svg.rect(
                x,
                cy,
                w,
                h,
                fill=TYPE_FILL.get(s.type, "#ffffff"),
                stroke=color if s.calls else "#777777",
                width=1.6 if s.calls else 1.0,
            )
            if s.calls:
                svg.rect(x, cy, 5, h, fill=color, stroke=color, rx=1)
            svg.text(x + 9, cy + 15, s.name, weight="bold" if s.type == "Task" else "normal")
            svg.text(
                x + w - 5,
                cy + 15,
                s.calls or s.type,
                anchor="end",
                size=9,
                color=color if s.calls else "#666666",
            )
            if s.retries:
                svg.text(
                    x + 9,
                    cy + 29,
                    "Retry also on " + ", ".join(s.retries),
                    size=8.5,
                    color="#555555",
                    italic=True,
                )
        pos[s.name] = (cy, cy + h)
        cy += h + STATE_GAP

    lane = 0
    for i, s in enumerate(states):
        top, bottom = pos[s.name]
        for k, (target, label, kind) in enumerate(s.transitions):
            if target not in pos:
                continue
            j = order.index(target)
            t_top, t_bottom = pos[target]
            color = {"catch": "#c0392b", "choice": "#1f77b4"}.get(kind, "#444444")
            if j == i + 1 and kind != "catch":
                svg.path([(x + w / 2, bottom), (x + w / 2, t_top)], color=color)
                if label:
                    svg.text(x + w / 2 + 4, bottom + 9, label, size=8.5, color=color)
                continue
            lane += 1
            lx = lane_x + 6 + 7 * ((lane - 1) % 6)
            y0 = min(top + 6 + 5 * k, bottom - 3)
            y1 = min(t_top + 8 + (4 if kind == "catch" else 0), t_bottom - 3)
            svg.path([(x + w, y0), (lx, y0), (lx, y1), (x + w, y1)], color=color, dash=kind == "catch")
            if label:
                svg.text(lx + 2, y0 + (8 if kind == "catch" else -2), label, size=8, color=color)
        if s.end and s.type not in ("Succeed", "Fail"):
            svg.text(x + w / 2, bottom + 9, "end", size=8, anchor="middle", color="#777777")
    return cy - STATE_GAP


def draw(model: Model) -> str:
    svg = Svg()
    colors = {f.logical_id: f.color for f in model.functions}
    if model.task_definition:
        colors[model.task_definition] = FARGATE_COLOR
    width = 1560
    svg.text(
        20,
        28,
        "isrflow: ProcessVisit and BuildCalibration on AWS (template.yaml, statemachines/*.asl.json)",
        size=16,
        weight="bold",
    )
    svg.text(
        20,
        46,
        "generated by docs/make_diagram.py; a Task's colour is the function it invokes; "
        "blue = Choice branch, red dashed = Catch",
        size=10,
        color="#555555",
    )

    # --- column A: uploads and prompt processing -------------------------------------------------
    ax, aw = 20, 250
    svg.text(ax, 80, "Uploads / prompt processing", size=12, weight="bold")
    svg.rect(ax, 92, aw, 40, fill="#fff3e0", stroke="#e6a23c")
    svg.text(ax + 8, 108, f"S3 {model.bucket}", weight="bold")
    svg.text(ax + 8, 124, "raw/<key> uploaded", size=9.5, color="#555555")
    svg.path([(ax + aw / 2, 132), (ax + aw / 2, 172)], color="#444444")
    svg.text(ax + aw / 2 + 5, 150, "EventBridge rule:", size=9)
    svg.text(ax + aw / 2 + 5, 162, model.ingest_pattern, size=9)
    ingest_color = colors.get(model.ingest, "#333333")
    svg.rect(ax, 172, aw, 44, stroke=ingest_color, width=1.6)
    svg.rect(ax, 172, 5, 44, fill=ingest_color, stroke=ingest_color, rx=1)
    svg.text(ax + 10, 189, model.ingest, weight="bold")
    svg.text(ax + 10, 205, "ranged header reads; bad -> quarantine/", size=9, color="#555555")

    # --- the state machines ------------------------------------------------------------------------
    col_x = [300, 700]
    col_w = 330
    machine_boxes = {}
    bottom = 0.0
    for (logical_id, path, states), mx in zip(model.machines, col_x, strict=False):
        svg.text(mx, 80, logical_id.replace("StateMachine", ""), size=13, weight="bold")
        svg.text(mx, 94, path, size=9, color="#555555")
        h = _height(states) + 24
        svg.rect(mx - 8, 102, col_w + 66, h, fill="#fbfbfb", stroke="#999999", rx=8)
        end = draw_states(svg, states, mx, 114, col_w, colors, mx + col_w)
        machine_boxes[logical_id] = (mx, 114)
        bottom = max(bottom, end)
    pv = next((m for m in machine_boxes if "ProcessVisit" in m), None)
    if pv and model.ingest:
        px, py = machine_boxes[pv]
        svg.path(
            [(ax + aw, 194), (px - 20, 194), (px - 20, py + 11), (px, py + 11)], color="#2e7d32", width=1.4
        )
        svg.text(ax + 10, 232, "-> StartExecution of ProcessVisit for the", size=9, color="#2e7d32")
        svg.text(ax + 10, 244, "file's detectors if PromptProcessing=true", size=9, color="#2e7d32")
        svg.text(ax + 10, 256, "(name = hash of bucket/key#ETag: once per upload)", size=9, color="#2e7d32")
        svg.text(ax, 284, "registry messages -> RegistryQueue (right)", size=9, color="#555555")
        svg.text(ax, 308, "Locally: isrflow ingest --watch DIR", size=9.5, weight="bold")
        svg.text(ax, 321, "feeds settled files to the same handler", size=9, color="#555555")

    # --- column D: functions, queue, writer, database, Fargate -----------------------------------------
    dx, dw = 1120, 420
    svg.text(dx, 80, "Lambda functions (template.yaml)", size=12, weight="bold")
    fy = 92.0
    for f in model.functions:
        svg.rect(dx, fy, dw, 24, stroke=f.color, width=1.6)
        svg.rect(dx, fy, 5, 24, fill=f.color, stroke=f.color, rx=1)
        svg.text(dx + 10, fy + 16, f.logical_id, weight="bold")
        note = f.code + ("   reads registry" if f.reads_registry else "")
        svg.text(dx + dw - 6, fy + 16, note, anchor="end", size=9, color="#555555")
        fy += 30
    fy += 6
    if model.task_definition:
        svg.rect(dx, fy, dw, 34, stroke=FARGATE_COLOR, width=1.6, fill="#f6efed")
        svg.rect(dx, fy, 5, 34, fill=FARGATE_COLOR, stroke=FARGATE_COLOR, rx=1)
        svg.text(dx + 10, fy + 15, f"Fargate {model.task_definition}", weight="bold")
        svg.text(
            dx + 10, fy + 28, "ecs:runTask.sync; large combines (CombineOnFargate)", size=9, color="#555555"
        )
        fy += 46

    # Data plane: every function -> queue (ISRFLOW_REGISTRY_QUEUE_URL is global) -> writer -> DB.
    qy = fy + 30
    svg.text(dx, fy + 14, "Registry data plane", size=12, weight="bold")
    svg.rect(dx, qy, 200, 40, fill="#eef6ff", stroke="#1f77b4")
    svg.text(dx + 8, qy + 16, f"SQS {model.queue}", weight="bold")
    svg.text(dx + 8, qy + 31, "registry messages from all workers", size=9, color="#555555")
    svg.rect(dx + 250, qy, 170, 40, fill="#fdecea", stroke="#c0392b")
    svg.text(dx + 258, qy + 16, f"SQS {model.dlq}", weight="bold", size=10)
    svg.text(dx + 258, qy + 31, "isrflow registry redrive", size=9, color="#555555")
    svg.path([(dx + 200, qy + 20), (dx + 250, qy + 20)], color="#c0392b", dash=True)
    svg.text(dx + 203, qy + 14, f">{model.max_receive} recv", size=8.5, color="#c0392b")
    wy = qy + 80
    wcolor = colors.get(model.writer, "#333333")
    svg.path([(dx + 100, qy + 40), (dx + 100, wy)], color="#1f77b4")
    svg.text(
        dx + 106, qy + 58, f"batch {model.batch_size}, window {model.window_s} s", size=9, color="#1f77b4"
    )
    svg.text(dx + 106, qy + 70, "ReportBatchItemFailures", size=9, color="#1f77b4")
    svg.rect(dx, wy, 200, 30, stroke=wcolor, width=1.6)
    svg.rect(dx, wy, 5, 30, fill=wcolor, stroke=wcolor, rx=1)
    svg.text(dx + 10, wy + 19, model.writer, weight="bold")
    dby = wy + 70
    svg.path([(dx + 100, wy + 30), (dx + 100, dby)], color="#444444")
    svg.text(dx + 106, wy + 50, "one transaction per batch", size=9)
    svg.rect(dx, dby, 420, 40, fill="#f3f0ff", stroke="#6a51a3")
    svg.text(dx + 8, dby + 16, f"Registry DB: RDS PostgreSQL {model.database}", weight="bold")
    readers = [
        f.logical_id.replace("Function", "")
        for f in model.functions
        if f.reads_registry and f.logical_id != model.writer
    ]
    svg.text(dx + 8, dby + 31, "read by: " + ", ".join(readers), size=9, color="#555555")
    sy = dby + 64
    svg.rect(dx, sy, 420, 40, fill="#fff3e0", stroke="#e6a23c")
    svg.text(dx + 8, sy + 16, f"S3 {model.bucket} (the datastore)", weight="bold")
    svg.text(
        dx + 8,
        sy + 31,
        "raws, manifests, map-results/, masters, postISRCCD, previews",
        size=9,
        color="#555555",
    )
    svg.text(
        dx + 8,
        sy + 56,
        "every function and the Fargate task read/write it (ISRFLOW_DATASTORE_ROOT)",
        size=9,
        color="#555555",
    )
    right_bottom = sy + 60

    # --- bottom band: the embedded local runtime ----------------------------------------------------
    by = max(bottom, right_bottom) + 40
    svg.text(
        20,
        by,
        "On one machine (isrflow.local.LocalRuntime: `make demo`, "
        "isrflow run/calib build --repo) "
        "the same template.yaml and ASL files run on:",
        size=12,
        weight="bold",
    )
    cols = 2
    cw = (width - 40) / cols
    for i, (aws, local, module) in enumerate(LOCAL_EQUIVALENTS):
        if not (ROOT / "layers" / "isrflow" / module).exists():
            raise SystemExit(f"make_diagram: LOCAL_EQUIVALENTS names {module}, which does not exist")
        r, c = divmod(i, cols)
        x0, y0 = 20 + c * cw, by + 14 + r * 26
        svg.rect(x0, y0, cw - 12, 22, fill="#fafafa", stroke="#cccccc")
        svg.text(x0 + 8, y0 + 15, aws, weight="bold", size=10)
        svg.text(x0 + 190, y0 + 15, "-> " + local, size=10)
        svg.text(
            x0 + cw - 20,
            y0 + 15,
            module.removesuffix(".py").replace("/", "."),
            anchor="end",
            size=9,
            color="#555555",
        )
    height = int(by + 14 + 26 * ((len(LOCAL_EQUIVALENTS) + cols - 1) // cols) + 16)
    used = [*ARROW_COLORS, FARGATE_COLOR]
    return svg.render(width, height, used)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed SVG is not up to date")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = draw(read_model())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run .venv/bin/python docs/make_diagram.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
