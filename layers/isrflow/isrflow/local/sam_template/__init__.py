"""The SAM template reader: the project's ``template.yaml`` (AWS SAM) for the local runtime.

The local runtime wires itself from the same template that deploys to AWS, so local and cloud
cannot drift: which functions exist, their handlers, memory, timeout and environment, the
queues and their redrive settings, the queue -> function event source mappings with their
batch settings, and the state machines with their ``DefinitionSubstitutions``.

Two layers:

- :func:`load_template` parses YAML (or JSON) with the CloudFormation short tags (``!Ref``,
  ``!GetAtt``, ``!Sub``, ``!If``, ``!Equals``, ``!Select``, ``!Join``, ``!Split``, ``!GetAZs``,
  ``!Not``, ``!And``, ``!Or``, ``!FindInMap``, ``!ImportValue``, ``!Condition``, ...) into the
  plain long forms (``{"Ref": ...}``, ``{"Fn::GetAtt": [resource, attribute]}``, ...), as
  CloudFormation itself reads them. Dates stay strings (``"2010-09-09"``).
- :func:`load_app` evaluates it for one set of parameters: parameter defaults and
  ``AllowedValues``, ``Conditions`` (resources whose condition is false are left out),
  ``Globals`` merged into each resource the SAM way (maps merged, lists appended, scalars
  overridden), and intrinsic functions. References to resources (``!Ref X``, ``!GetAtt X.Arn``,
  ``${X}`` / ``${X.Arn}`` in ``!Sub``) go to a *resolver* the caller passes, which turns them
  into local values; what it leaves (returns ``None`` for) gets :func:`default_resolver`'s local
  placeholders, e.g. ``!GetAtt PlanFunction.Arn`` ->
  ``arn:aws:lambda:local:000000000000:function:PlanFunction``.

A resolver may return :class:`Whole` to replace the *whole* string the reference appears in,
which is how ``ISRFLOW_DATASTORE_ROOT: !Sub "s3://${DataBucket}"`` becomes
``file:///repo/datastore`` locally::

    def resolver(ref: Reference):
        if ref.logical_id == "DataBucket" and ref.where.endswith("ISRFLOW_DATASTORE_ROOT"):
            return Whole(f"file://{repo}/datastore")
        if ref.resource_type == "AWS::SQS::Queue" and ref.attribute is None:
            return f"sqlite:///{repo}/queues.db#{ref.logical_id}"
        return None                        # default local placeholder

    app = load_app("template.yaml", {"IsrMemorySize": 2048}, resolver=resolver)
    app.functions["PlanFunction"].handler_file      # .../functions/plan/app.py
    app.state_machines["ProcessVisitStateMachine"].definition()   # substituted ASL (dict)

Only the standard library, PyYAML and pydantic are imported (no numpy/astropy), so the local
runtime's parent process and the registry-only Lambda layer can import this package cheaply.

Modules: :mod:`.yaml_loader` (short tags), :mod:`.references` (resolvers and local
placeholders), :mod:`.intrinsics` (intrinsic functions and Conditions), :mod:`.parameters`
(Parameters and Globals), :mod:`.dockerfile` (image functions' CMD and task-root files),
:mod:`.models` (the local application model) and :mod:`.app` (:func:`load_app`). The names
below are the package's public interface.
"""

from isrflow.local.sam_template.app import load_app
from isrflow.local.sam_template.constants import LOCAL_ACCOUNT, LOCAL_PARTITION, LOCAL_REGION
from isrflow.local.sam_template.dockerfile import dockerfile_cmd, dockerfile_task_root_files
from isrflow.local.sam_template.errors import TemplateError
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
    substitute_definition,
)
from isrflow.local.sam_template.references import Reference, Resolver, Whole, default_resolver
from isrflow.local.sam_template.yaml_loader import load_template

__all__ = [
    "LOCAL_ACCOUNT",
    "LOCAL_PARTITION",
    "LOCAL_REGION",
    "LocalApp",
    "LocalBucket",
    "LocalContainer",
    "LocalEventSourceMapping",
    "LocalFunction",
    "LocalLayer",
    "LocalQueue",
    "LocalStateMachine",
    "LocalTaskDefinition",
    "Reference",
    "Resolver",
    "TemplateError",
    "Whole",
    "default_resolver",
    "dockerfile_cmd",
    "dockerfile_task_root_files",
    "load_app",
    "load_template",
    "substitute_definition",
]
