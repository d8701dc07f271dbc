"""The local application model: what ``template.yaml`` declares, as the local runtime runs it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from isrflow.local.sam_template.constants import (
    DEFAULT_MEMORY_MB,
    DEFAULT_RETENTION_S,
    DEFAULT_SQS_BATCH_SIZE,
    DEFAULT_TIMEOUT_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
)
from isrflow.local.sam_template.errors import TemplateError
from isrflow.local.sam_template.intrinsics import SUB_VAR


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalLayer(_Model):
    logical_id: str
    content_dir: Path
    build_method: str | None = None
    requirements_file: Path | None = None


class LocalFunction(_Model):
    """One Lambda function as the local runtime runs it."""

    logical_id: str
    name: str
    arn: str
    package_type: Literal["Zip", "Image"]
    code_dir: Path
    """CodeUri directory; for an image function, the directory of its Dockerfile."""
    handler: str
    """As Lambda reads it, e.g. ``app.lambda_handler``."""
    handler_module: str
    handler_attribute: str
    runtime: str | None = None
    architectures: list[str] = ["x86_64"]
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    reserved_concurrency: int | None = None
    """ReservedConcurrentExecutions (None: unreserved); the local runtime enforces it."""
    environment: dict[str, str] = {}
    layers: list[str] = []
    """Logical ids of the template's layers, in order."""
    layer_dirs: list[Path] = []
    """Their content directories (what the local runtime puts on ``sys.path``)."""
    external_layers: list[str] = []
    """Layer ARNs from outside the template (not available locally)."""
    in_vpc: bool = False
    dockerfile: Path | None = None
    docker_context: Path | None = None

    @property
    def handler_file(self) -> Path:
        """The source file of the handler module (``app`` -> ``<code_dir>/app.py``)."""
        relative = Path(*self.handler_module.split("."))
        package_init = self.code_dir / relative / "__init__.py"
        return package_init if package_init.exists() else self.code_dir / relative.with_suffix(".py")


class LocalQueue(_Model):
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    message_retention_s: int = DEFAULT_RETENTION_S
    fifo: bool = False
    max_receive_count: int | None = None
    dead_letter_target: str | None = None
    """Logical id of the dead-letter queue (None without redrive, or if it is outside the template)."""
    dead_letter_target_arn: str | None = None


class LocalEventSourceMapping(_Model):
    function: str
    """Logical id of the function fed by the queue."""
    queue: str
    """Logical id of the queue."""
    name: str
    """SAM event name, or the EventSourceMapping's logical id."""
    batch_size: int = DEFAULT_SQS_BATCH_SIZE
    batching_window_s: int = 0
    max_concurrency: int | None = None
    report_batch_item_failures: bool = False
    enabled: bool = True


class LocalStateMachine(_Model):
    logical_id: str
    name: str
    """Local name (the resolver's ``GetAtt <id>.Name``; the logical id by default)."""
    arn: str
    """Local ARN (the resolver's ``Ref``), e.g. ``arn:aws:states:local:000000000000:stateMachine:<id>``."""
    type: Literal["STANDARD", "EXPRESS"] = "STANDARD"
    definition_path: Path | None = None
    inline_definition: dict[str, Any] | None = None
    substitutions: dict[str, str] = {}

    def definition_text(self) -> str:
        """The definition as JSON text with every ``${name}`` substituted."""
        if self.definition_path is not None:
            try:
                text = self.definition_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"{self.logical_id}: cannot read {self.definition_path}: {exc}") from exc
        else:
            text = json.dumps(self.inline_definition)
        return substitute_definition(text, self.substitutions, where=self.logical_id)

    def definition(self) -> dict[str, Any]:
        """The substituted definition, parsed."""
        try:
            return json.loads(self.definition_text())
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{self.logical_id}: definition is not JSON: {exc}") from exc


class LocalContainer(_Model):
    name: str
    entry_point: list[str] = []
    command: list[str] = []
    environment: dict[str, str] = {}


class LocalTaskDefinition(_Model):
    """An ECS task definition (``AWS::ECS::TaskDefinition``) as the local runtime runs it: its
    containers' entry points and environment, and (``Metadata.Dockerfile``) where its image is
    built from, so that ``/var/task/...`` paths map to the files its stage copies there."""

    logical_id: str
    arn: str
    family: str | None = None
    cpu: str | None = None
    memory: str | None = None
    containers: list[LocalContainer] = []
    dockerfile: Path | None = None
    docker_context: Path | None = None
    task_root_files: dict[str, Path] = {}
    """Name in the task root (/var/task) -> its source file (from the Dockerfile stage's COPYs)."""


class LocalBucket(_Model):
    logical_id: str
    name: str


class LocalApp(_Model):
    """What ``template.yaml`` declares, evaluated for one set of parameters."""

    template_path: Path
    root: Path
    stack_name: str
    parameters: dict[str, str | list[str]]
    conditions: dict[str, bool]
    functions: dict[str, LocalFunction]
    layers: dict[str, LocalLayer]
    queues: dict[str, LocalQueue]
    event_source_mappings: list[LocalEventSourceMapping]
    state_machines: dict[str, LocalStateMachine]
    buckets: dict[str, LocalBucket]
    outputs: dict[str, Any]
    task_definitions: dict[str, LocalTaskDefinition] = {}

    def function(self, key: str) -> LocalFunction:
        """A function by logical id, local name or ARN (as substituted into an ASL file)."""
        if key in self.functions:
            return self.functions[key]
        for function in self.functions.values():
            if key in (function.name, function.arn):
                return function
        # Qualified ARNs (":$LATEST", ":alias") and names with a version suffix.
        for function in self.functions.values():
            if key.startswith(function.arn + ":"):
                return function
        raise KeyError(f"no function {key!r} in {self.template_path}")

    def mappings_for(self, function_or_queue: str) -> list[LocalEventSourceMapping]:
        """Event source mappings of a function or a queue (by logical id)."""
        return [m for m in self.event_source_mappings if function_or_queue in (m.function, m.queue)]


def substitute_definition(text: str, substitutions: Mapping[str, str], *, where: str = "definition") -> str:
    """Replace ``${name}`` in a state machine definition, as ``DefinitionSubstitutions`` does.

    Every ``${...}`` must have a substitution (the ASL itself never uses that syntax).
    """
    missing: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            missing.add(name)
            return match.group(0)
        return str(substitutions[name])

    result = SUB_VAR.sub(replace, text)
    if missing:
        raise TemplateError(f"{where}: no DefinitionSubstitutions for {', '.join(sorted(missing))}")
    return result
