"""``load_app``: evaluate ``template.yaml`` into a :class:`~isrflow.local.sam_template.models.LocalApp`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, overload

from isrflow.local.sam_template.constants import (
    CFN_ESM,
    CFN_STATE_MACHINE,
    DEFAULT_MEMORY_MB,
    DEFAULT_RETENTION_S,
    DEFAULT_SQS_BATCH_SIZE,
    DEFAULT_TIMEOUT_S,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    ECS_TASK_DEFINITION,
    S3_BUCKET,
    SAM_FUNCTION,
    SAM_LAYER,
    SAM_STATE_MACHINE,
    SQS_QUEUE,
)
from isrflow.local.sam_template.dockerfile import dockerfile_cmd, dockerfile_task_root_files
from isrflow.local.sam_template.errors import TemplateError
from isrflow.local.sam_template.intrinsics import Evaluator, as_string
from isrflow.local.sam_template.models import (
    LocalApp,
    LocalBucket,
    LocalContainer,
    LocalEventSourceMapping,
    LocalFunction,
    LocalLayer,
    LocalQueue,
    LocalStateMachine,
    LocalTaskDefinition,
)
from isrflow.local.sam_template.parameters import effective_parameters, with_globals
from isrflow.local.sam_template.references import Resolver, Whole
from isrflow.local.sam_template.yaml_loader import load_template


def _target_logical_id(node: Any, resources: Mapping[str, Any]) -> str | None:
    """The logical id a raw (unevaluated) reference names: Ref X, GetAtt X.attr, Sub "${X.Arn}"."""
    if isinstance(node, dict) and len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and isinstance(value, str) and value in resources:
            return value
        if key == "Fn::GetAtt":
            target = (
                value.split(".", 1)[0]
                if isinstance(value, str)
                else value[0]
                if isinstance(value, list)
                else None
            )
            return target if target in resources else None
        if key == "Fn::Sub" and isinstance(value, str):
            match = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}", value)
            if match and match.group(1) in resources:
                return match.group(1)
    return None


@overload
def _int(value: Any, where: str, default: int) -> int: ...


@overload
def _int(value: Any, where: str, default: None = None) -> int | None: ...


def _int(value: Any, where: str, default: int | None = None) -> int | None:
    """``value`` (a number or numeric string, e.g. ``"30"`` or ``30.0``) as an int; ``default`` when absent."""
    if value is None:
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise TemplateError(f"{where}: expected a number, got {value!r}") from None


def _local_path(root: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or value.startswith("s3://"):
        raise TemplateError(f"{where}: the local runtime needs a local path, got {value!r}")
    return (root / value).resolve()


def load_app(
    template_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    resolver: Resolver | None = None,
    stack_name: str = "isrflow",
) -> LocalApp:
    """Evaluate ``template_path`` for ``parameters`` (defaults for the rest) into a :class:`LocalApp`.

    ``resolver(ref: Reference)`` turns references to resources into local values; ``None``
    falls back to :func:`default_resolver`. Paths (CodeUri, ContentUri, DefinitionUri,
    DockerContext) are resolved against the template's directory.
    """
    path = Path(template_path).resolve()
    root = path.parent
    template = load_template(path)
    params = effective_parameters(template, parameters)
    ev = Evaluator(template, params, resolver, stack_name)
    resources: dict[str, Any] = template["Resources"]

    def props_of(lid: str) -> tuple[dict[str, Any], str]:
        return with_globals(template, resources[lid]), f"Resources.{lid}.Properties"

    active = [lid for lid in resources if lid not in ev.excluded]
    by_type: dict[str, list[str]] = {}
    for lid in active:
        by_type.setdefault(resources[lid].get("Type", ""), []).append(lid)

    # Layers.
    layers: dict[str, LocalLayer] = {}
    for lid in by_type.get(SAM_LAYER, []):
        props, where = props_of(lid)
        content = _local_path(
            root, ev.eval_value(props.get("ContentUri"), f"{where}.ContentUri"), f"{where}.ContentUri"
        )
        meta = resources[lid].get("Metadata") or {}
        requirements = content / "requirements.txt"
        layers[lid] = LocalLayer(
            logical_id=lid,
            content_dir=content,
            build_method=meta.get("BuildMethod"),
            requirements_file=requirements if requirements.exists() else None,
        )

    # Queues.
    queues: dict[str, LocalQueue] = {}
    for lid in by_type.get(SQS_QUEUE, []):
        props, where = props_of(lid)
        redrive_raw = props.get("RedrivePolicy")
        if isinstance(redrive_raw, str):
            redrive_raw = json.loads(redrive_raw)
        redrive = ev.eval_value(redrive_raw, f"{where}.RedrivePolicy") or {}
        if isinstance(redrive, str):
            redrive = json.loads(redrive)
        target_node = (
            (redrive_raw or {}).get("deadLetterTargetArn") if isinstance(redrive_raw, dict) else None
        )
        queues[lid] = LocalQueue(
            logical_id=lid,
            name=as_string(ev.eval_value({"Fn::GetAtt": [lid, "QueueName"]}, f"{where}.QueueName"), where),
            url=as_string(ev.eval_value({"Ref": lid}, f"{where}.QueueUrl"), where),
            arn=as_string(ev.eval_value({"Fn::GetAtt": [lid, "Arn"]}, f"{where}.Arn"), where),
            visibility_timeout_s=_int(
                ev.eval_value(props.get("VisibilityTimeout"), f"{where}.VisibilityTimeout"),
                where,
                DEFAULT_VISIBILITY_TIMEOUT_S,
            ),
            message_retention_s=_int(
                ev.eval_value(props.get("MessageRetentionPeriod"), f"{where}.MessageRetentionPeriod"),
                where,
                DEFAULT_RETENTION_S,
            ),
            fifo=str(ev.eval_value(props.get("FifoQueue"), where, False)).lower() == "true",
            max_receive_count=_int(redrive.get("maxReceiveCount"), f"{where}.RedrivePolicy"),
            dead_letter_target=_target_logical_id(target_node, resources),
            dead_letter_target_arn=redrive.get("deadLetterTargetArn"),
        )

    # Functions and their SQS events.
    functions: dict[str, LocalFunction] = {}
    mappings: list[LocalEventSourceMapping] = []
    for lid in by_type.get(SAM_FUNCTION, []):
        props, where = props_of(lid)
        meta = resources[lid].get("Metadata") or {}
        package_type = ev.eval_value(props.get("PackageType"), where, "Zip")
        dockerfile = docker_context = None
        if package_type == "Image":
            if "Dockerfile" not in meta:
                raise TemplateError(f"Resources.{lid}: an Image function needs Metadata.Dockerfile locally")
            docker_context = _local_path(
                root, meta.get("DockerContext", "."), f"Resources.{lid}.Metadata.DockerContext"
            )
            dockerfile = (docker_context / meta["Dockerfile"]).resolve()
            target = meta.get("DockerBuildTarget")
            command = (ev.eval_value(props.get("ImageConfig"), f"{where}.ImageConfig") or {}).get("Command")
            handler = (command or dockerfile_cmd(dockerfile, target))[0]
            # The handler's source: the file the stage copies into the task root as <module>.py.
            module_file = handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
            copied = dockerfile_task_root_files(dockerfile, docker_context, target)
            code_dir = copied[module_file].parent if module_file in copied else dockerfile.parent
            runtime = None
        elif package_type == "Zip":
            code_dir = _local_path(
                root, ev.eval_value(props.get("CodeUri"), f"{where}.CodeUri"), f"{where}.CodeUri"
            )
            handler = ev.eval_value(props.get("Handler"), f"{where}.Handler")
            runtime = ev.eval_value(props.get("Runtime"), f"{where}.Runtime")
        else:
            raise TemplateError(f"{where}.PackageType: {package_type!r}")
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{where}.Handler: expected module.function, got {handler!r}")
        module, _, attribute = handler.rpartition(".")

        env_where = f"{where}.Environment.Variables"
        variables = ev.eval_value((props.get("Environment") or {}).get("Variables") or {}, env_where) or {}
        environment = {
            key: as_string(value.value if isinstance(value, Whole) else value, f"{env_where}.{key}")
            for key, value in variables.items()
        }

        layer_ids, layer_dirs, external = [], [], []
        for i, item in enumerate(props.get("Layers") or []):
            target = _target_logical_id(item, resources)
            if target in layers:
                layer_ids.append(target)
                layer_dirs.append(layers[target].content_dir)
            elif target is None:
                value = ev.eval_value(item, f"{where}.Layers[{i}]")
                if value is not None:
                    external.append(as_string(value, f"{where}.Layers[{i}]"))
            else:
                raise TemplateError(f"{where}.Layers[{i}]: {target} is not a layer of this template")

        architectures = ev.eval_value(props.get("Architectures"), f"{where}.Architectures") or ["x86_64"]
        functions[lid] = LocalFunction(
            logical_id=lid,
            name=as_string(ev.eval_value({"Ref": lid}, f"{where}.FunctionName"), where),
            arn=as_string(ev.eval_value({"Fn::GetAtt": [lid, "Arn"]}, f"{where}.Arn"), where),
            package_type=package_type,
            code_dir=code_dir,
            handler=handler,
            handler_module=module,
            handler_attribute=attribute,
            runtime=runtime,
            architectures=[str(a) for a in architectures],
            memory_mb=_int(
                ev.eval_value(props.get("MemorySize"), f"{where}.MemorySize"), where, DEFAULT_MEMORY_MB
            ),
            timeout_s=_int(ev.eval_value(props.get("Timeout"), f"{where}.Timeout"), where, DEFAULT_TIMEOUT_S),
            reserved_concurrency=_int(
                ev.eval_value(
                    props.get("ReservedConcurrentExecutions"), f"{where}.ReservedConcurrentExecutions"
                ),
                where,
                None,
            ),
            environment=environment,
            layers=layer_ids,
            layer_dirs=layer_dirs,
            external_layers=external,
            in_vpc=bool(ev.eval_value(props.get("VpcConfig"), f"{where}.VpcConfig")),
            dockerfile=dockerfile,
            docker_context=docker_context,
        )

        for event_name, event in (props.get("Events") or {}).items():
            if not isinstance(event, dict) or event.get("Type") != "SQS":
                continue
            ewhere = f"{where}.Events.{event_name}.Properties"
            eprops = event.get("Properties") or {}
            queue = _target_logical_id(eprops.get("Queue"), resources)
            if queue not in queues:
                raise TemplateError(f"{ewhere}.Queue: not a queue of this template: {eprops.get('Queue')!r}")
            mappings.append(_mapping(ev, lid, queue, event_name, eprops, ewhere))

    for lid in by_type.get(CFN_ESM, []):
        props, where = props_of(lid)
        function = _target_logical_id(props.get("FunctionName"), resources)
        queue = _target_logical_id(props.get("EventSourceArn"), resources)
        if function in functions and queue in queues:
            mappings.append(_mapping(ev, function, queue, lid, props, where))

    # State machines.
    state_machines: dict[str, LocalStateMachine] = {}
    for lid in by_type.get(SAM_STATE_MACHINE, []) + by_type.get(CFN_STATE_MACHINE, []):
        props, where = props_of(lid)
        definition_path = inline = None
        if props.get("DefinitionUri") is not None:
            definition_path = _local_path(
                root,
                ev.eval_value(props["DefinitionUri"], f"{where}.DefinitionUri"),
                f"{where}.DefinitionUri",
            )
        elif props.get("Definition") is not None:
            inline = ev.eval_value(props["Definition"], f"{where}.Definition")
        elif props.get("DefinitionString") is not None:
            inline = json.loads(
                as_string(ev.eval_value(props["DefinitionString"], f"{where}.DefinitionString"), where)
            )
        else:
            raise TemplateError(f"{where}: no DefinitionUri, Definition or DefinitionString")
        subs_where = f"{where}.DefinitionSubstitutions"
        subs = ev.eval_value(props.get("DefinitionSubstitutions") or {}, subs_where) or {}
        sm_type = ev.eval_value(props.get("Type") or props.get("StateMachineType"), where, "STANDARD")
        state_machines[lid] = LocalStateMachine(
            logical_id=lid,
            name=as_string(ev.eval_value({"Fn::GetAtt": [lid, "Name"]}, f"{where}.Name"), where),
            arn=as_string(ev.eval_value({"Ref": lid}, f"{where}.Arn"), where),
            type=sm_type,
            definition_path=definition_path,
            inline_definition=inline,
            substitutions={
                k: as_string(v.value if isinstance(v, Whole) else v, f"{subs_where}.{k}")
                for k, v in subs.items()
            },
        )

    task_definitions: dict[str, LocalTaskDefinition] = {}
    for lid in by_type.get(ECS_TASK_DEFINITION, []):
        props, where = props_of(lid)
        meta = resources[lid].get("Metadata") or {}
        containers = []
        for i, raw in enumerate(props.get("ContainerDefinitions") or []):
            cwhere = f"{where}.ContainerDefinitions[{i}]"
            env = {}
            for j, pair in enumerate(
                ev.eval_value(raw.get("Environment") or [], f"{cwhere}.Environment") or []
            ):
                value = pair.get("Value")
                env[str(pair.get("Name"))] = as_string(
                    value.value if isinstance(value, Whole) else value, f"{cwhere}.Environment[{j}]"
                )
            containers.append(
                LocalContainer(
                    name=as_string(ev.eval_value(raw.get("Name"), f"{cwhere}.Name"), cwhere),
                    entry_point=[
                        str(a) for a in ev.eval_value(raw.get("EntryPoint"), f"{cwhere}.EntryPoint") or []
                    ],
                    command=[str(a) for a in ev.eval_value(raw.get("Command"), f"{cwhere}.Command") or []],
                    environment=env,
                )
            )
        dockerfile = context = None
        task_root_files: dict[str, Path] = {}
        if "Dockerfile" in meta:
            context = _local_path(
                root, meta.get("DockerContext", "."), f"Resources.{lid}.Metadata.DockerContext"
            )
            dockerfile = (context / meta["Dockerfile"]).resolve()
            task_root_files = dockerfile_task_root_files(dockerfile, context, meta.get("DockerBuildTarget"))
        family = ev.eval_value(props.get("Family"), f"{where}.Family")
        task_definitions[lid] = LocalTaskDefinition(
            logical_id=lid,
            arn=as_string(ev.eval_value({"Ref": lid}, f"{where}.Arn"), where),
            family=None if family is None else as_string(family, where),
            cpu=None
            if props.get("Cpu") is None
            else as_string(ev.eval_value(props["Cpu"], f"{where}.Cpu"), where),
            memory=None
            if props.get("Memory") is None
            else as_string(ev.eval_value(props["Memory"], f"{where}.Memory"), where),
            containers=containers,
            dockerfile=dockerfile,
            docker_context=context,
            task_root_files=task_root_files,
        )

    buckets = {
        lid: LocalBucket(logical_id=lid, name=as_string(ev.eval_value({"Ref": lid}, f"Resources.{lid}"), lid))
        for lid in by_type.get(S3_BUCKET, [])
    }

    outputs: dict[str, Any] = {}
    for name, output in (template.get("Outputs") or {}).items():
        if not isinstance(output, dict):
            continue
        if output.get("Condition") and not ev.condition(output["Condition"]):
            continue
        outputs[name] = ev.eval_value(output.get("Value"), f"Outputs.{name}.Value")

    return LocalApp(
        template_path=path,
        root=root,
        stack_name=stack_name,
        parameters=params,
        conditions=dict(ev.conditions),
        functions=functions,
        layers=layers,
        queues=queues,
        event_source_mappings=mappings,
        state_machines=state_machines,
        buckets=buckets,
        outputs=outputs,
        task_definitions=task_definitions,
    )


def _mapping(
    ev: Evaluator, function: str, queue: str, name: str, props: Mapping[str, Any], where: str
) -> LocalEventSourceMapping:
    scaling = ev.eval_value(props.get("ScalingConfig"), f"{where}.ScalingConfig") or {}
    response_types = ev.eval_value(props.get("FunctionResponseTypes"), f"{where}.FunctionResponseTypes") or []
    enabled = ev.eval_value(props.get("Enabled"), f"{where}.Enabled", True)
    return LocalEventSourceMapping(
        function=function,
        queue=queue,
        name=name,
        batch_size=_int(
            ev.eval_value(props.get("BatchSize"), f"{where}.BatchSize"), where, DEFAULT_SQS_BATCH_SIZE
        ),
        batching_window_s=_int(
            ev.eval_value(
                props.get("MaximumBatchingWindowInSeconds"), f"{where}.MaximumBatchingWindowInSeconds"
            ),
            where,
            0,
        ),
        max_concurrency=_int(scaling.get("MaximumConcurrency"), f"{where}.ScalingConfig"),
        report_batch_item_failures="ReportBatchItemFailures" in response_types,
        enabled=str(enabled).lower() != "false",
    )
