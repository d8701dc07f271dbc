"""Parse and validate a state machine definition into compiled states: :class:`StateMachine`.

Everything that can be checked before running is checked on load (by
:mod:`isrflow.local.asl.state_builder` and :mod:`isrflow.local.asl.map_builder`, into the model of
:mod:`isrflow.local.asl.states`), and every problem is reported (not only the first) with its
location, e.g.
``States.Process.Retry[1].ErrorEquals: 'States.ALL' must appear alone ...``.

The subset (see the package docstring): JSONPath states Task, Pass, Choice, Wait,
Succeed, Fail, Parallel, Map (inline, and distributed with STANDARD children, a JSON
ItemReader and an s3:putObject ResultWriter). Valid ASL outside the subset (ItemBatcher,
ToleratedFailure*, EXPRESS children, a ResultWriter without Resource/Parameters, JSONata,
variables, ...) is rejected with :class:`UnsupportedFeatureError`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from isrflow.local.asl.errors import DefinitionError
from isrflow.local.asl.map_builder import DefinitionBuilder
from isrflow.local.asl.states import Graph, State


class StateMachine:
    """A validated, compiled state machine definition.

    ``StateMachine.from_json(definition, name)`` accepts a JSON string/bytes or a parsed
    dict; ``substitutions`` replaces ``${Key}`` placeholders first (as SAM's
    DefinitionSubstitutions do). Raises :class:`DefinitionError` /
    :class:`UnsupportedFeatureError`.
    """

    def __init__(
        self,
        name: str,
        definition: dict,
        graph: Graph,
        timeout_seconds: int | None,
        all_states: dict[str, State],
        arn: str | None = None,
    ):
        self.name = name
        self.definition = definition
        self.graph = graph
        self.timeout_seconds = timeout_seconds
        self.states = all_states  # every state by name, nested ones included
        self.arn = arn
        self.comment = definition.get("Comment")

    def __repr__(self) -> str:
        return f"<StateMachine {self.name!r}: {len(self.states)} states>"

    @classmethod
    def from_json(
        cls,
        definition: str | bytes | bytearray | dict[str, Any],
        name: str = "StateMachine",
        *,
        substitutions: dict[str, str] | None = None,
        arn: str | None = None,
    ) -> StateMachine:
        parsed: Any = definition
        if isinstance(parsed, (bytes, bytearray)):
            parsed = parsed.decode("utf-8")
        if isinstance(parsed, str):
            try:
                parsed = json.loads(parsed)
            except ValueError as exc:
                raise DefinitionError([("", f"the definition is not valid JSON: {exc}")], name) from None
        if not isinstance(parsed, dict):
            raise DefinitionError([("", "the definition must be a JSON object")], name)
        document: dict[str, Any] = (
            parsed if substitutions is None else substitute(parsed, substitutions, name)
        )
        builder = DefinitionBuilder(name)
        graph, timeout = builder.top(document)
        builder.raise_if_problems()
        return cls(name, document, graph, timeout, builder.all_states, arn)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        name: str | None = None,
        *,
        substitutions: dict[str, str] | None = None,
        arn: str | None = None,
    ) -> StateMachine:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if name is None:
            base = os.path.basename(os.fspath(path))
            name = base.split(".")[0]
        return cls.from_json(text, name, substitutions=substitutions, arn=arn)


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def substitute(definition: Any, substitutions: dict[str, str], name: str = "") -> Any:
    """Replace ``${Key}`` in every string (keys and values). An unknown key is an error."""
    missing: set[str] = set()

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in substitutions:
            missing.add(key)
            return m.group(0)
        return str(substitutions[key])

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return _PLACEHOLDER.sub(repl, v) if "${" in v else v
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {walk(k): walk(x) for k, x in v.items()}
        return v

    out = walk(definition)
    if missing:
        raise DefinitionError([("", f"no substitution given for ${{{k}}}") for k in sorted(missing)], name)
    return out
