"""The public API carries numpydoc docstrings (sections a reader and a doc builder can rely on)."""

from __future__ import annotations

import inspect

import pytest

from isrflow import Client
from isrflow.calibration.kernel import combine_stack
from isrflow.isr.config import IsrConfig
from isrflow.isr.pipeline import run_isr


@pytest.mark.parametrize(
    ("obj", "sections"),
    [
        (run_isr, ("Parameters", "Returns", "Raises")),
        (combine_stack, ("Parameters", "Returns", "Raises")),
        (IsrConfig, ("Attributes",)),
        (Client, ("Examples",)),
    ],
    ids=["run_isr", "combine_stack", "IsrConfig", "Client"],
)
def test_numpydoc_sections(obj, sections):
    doc = inspect.getdoc(obj) or ""
    for section in sections:
        assert f"\n{section}\n{'-' * len(section)}\n" in doc, f"{obj.__name__}: no {section} section"


def test_every_parameter_of_the_functions_is_documented():
    for fn in (run_isr, combine_stack):
        doc = inspect.getdoc(fn)
        params = doc.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
        documented = {
            line.split(" : ")[0] for line in params.splitlines() if " : " in line and not line[0].isspace()
        }
        assert documented == set(inspect.signature(fn).parameters), fn.__name__
