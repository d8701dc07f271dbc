"""Prompt-processing configuration: stack parameters, passed to the ingest function as environment.

=====================================  ======================================  =================
variable (template parameter)          meaning                                 default
=====================================  ======================================  =================
``ISRFLOW_PROMPT_PROCESSING``          start ProcessVisit for science uploads  ``false``
(``PromptProcessing``)
``ISRFLOW_PROCESS_VISIT_ARN``          the ProcessVisit state machine          (the stack's)
``ISRFLOW_PROMPT_CALIB_COLLECTION``    calibration collection                  ``<INSTRUMENT>/calib``
(``PromptCalibCollection``)
``ISRFLOW_PROMPT_OUTPUT_RUN``          output RUN; ``{instrument}``,           ``{instrument}/prompt/{day_obs}``
(``PromptOutputRun``)                  ``{day_obs}``, ``{exposure}`` expand
``ISRFLOW_PROMPT_ISR_CONFIG``          ISR config as JSON (``IsrConfig``)      ``{}``
(``PromptIsrConfig``)
``ISRFLOW_PROMPT_PREVIEWS``            PNG previews and mosaics                ``false``
(``PromptPreviews``)
=====================================  ======================================  =================

The execution input names the file's detectors explicitly (``quanta``), reads the raw from
``<INSTRUMENT>/raw/all``, uses mode ``replace`` (a re-upload of a frame with new content,
hence a new ETag and a new execution, re-processes it; a duplicate event never starts a second
execution, see :mod:`.starter`), clusters of up to 4 detectors and no tolerated failures.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, Field

from isrflow.model.errors import ConfigError
from isrflow.model.ids import calib_collection, check_collection_name, raw_collection
from isrflow.model.messages import ProcessVisitInput, QuantumKey
from isrflow.model.observation import ObservationInfo

ENV_PROMPT_PROCESSING = "ISRFLOW_PROMPT_PROCESSING"
ENV_PROCESS_VISIT_ARN = "ISRFLOW_PROCESS_VISIT_ARN"
ENV_PROMPT_CALIB_COLLECTION = "ISRFLOW_PROMPT_CALIB_COLLECTION"
ENV_PROMPT_OUTPUT_RUN = "ISRFLOW_PROMPT_OUTPUT_RUN"
ENV_PROMPT_ISR_CONFIG = "ISRFLOW_PROMPT_ISR_CONFIG"
ENV_PROMPT_PREVIEWS = "ISRFLOW_PROMPT_PREVIEWS"

DEFAULT_OUTPUT_RUN = "{instrument}/prompt/{day_obs}"
PROMPT_MODE = "replace"
PROMPT_CLUSTER_SIZE = 4


def _flag(text: str | None) -> bool:
    return str(text or "").strip().lower() in ("1", "true", "yes", "on")


class PromptConfig(BaseModel):
    enabled: bool = False
    state_machine_arn: str | None = None
    calib_collection: str = ""
    output_run: str = DEFAULT_OUTPUT_RUN
    isr_config: dict[str, Any] = Field(default_factory=dict)
    previews: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PromptConfig:
        env = os.environ if environ is None else environ
        text = env.get(ENV_PROMPT_ISR_CONFIG, "").strip() or "{}"
        try:
            isr_config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV_PROMPT_ISR_CONFIG} is not JSON: {exc}") from None
        if not isinstance(isr_config, dict):
            raise ConfigError(f"{ENV_PROMPT_ISR_CONFIG} must be a JSON object")
        config = cls(
            enabled=_flag(env.get(ENV_PROMPT_PROCESSING)),
            state_machine_arn=env.get(ENV_PROCESS_VISIT_ARN) or None,
            calib_collection=env.get(ENV_PROMPT_CALIB_COLLECTION, "").strip(),
            output_run=env.get(ENV_PROMPT_OUTPUT_RUN, "").strip() or DEFAULT_OUTPUT_RUN,
            isr_config=isr_config,
            previews=_flag(env.get(ENV_PROMPT_PREVIEWS)),
        )
        if config.enabled and not config.state_machine_arn:
            raise ConfigError(f"{ENV_PROMPT_PROCESSING} is on but {ENV_PROCESS_VISIT_ARN} is not set")
        return config

    def output_run_for(self, obs: ObservationInfo) -> str:
        try:
            run = self.output_run.format(
                instrument=obs.instrument, day_obs=obs.day_obs, exposure=obs.exposure
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{ENV_PROMPT_OUTPUT_RUN} {self.output_run!r}: unknown placeholder {exc}"
            ) from None
        try:
            return check_collection_name(run)
        except Exception as exc:
            raise ConfigError(f"{ENV_PROMPT_OUTPUT_RUN} {self.output_run!r} gives {run!r}: {exc}") from None

    def process_visit_input(self, observations: list[ObservationInfo]) -> ProcessVisitInput:
        """The ProcessVisit input for the detectors of one uploaded file (one exposure)."""
        first = observations[0]
        return ProcessVisitInput(
            quanta=[
                QuantumKey(instrument=o.instrument, exposure=o.exposure, detector=o.detector)
                for o in sorted(observations, key=lambda o: o.detector)
            ],
            input_collections=[raw_collection(first.instrument)],
            calib_collection=self.calib_collection or calib_collection(first.instrument),
            output_run=self.output_run_for(first),
            mode=PROMPT_MODE,
            cluster_size=PROMPT_CLUSTER_SIZE,
            max_failure_fraction=0.0,
            isr_config=self.isr_config,
            previews=self.previews,
        )


__all__ = [
    "DEFAULT_OUTPUT_RUN",
    "ENV_PROCESS_VISIT_ARN",
    "ENV_PROMPT_CALIB_COLLECTION",
    "ENV_PROMPT_ISR_CONFIG",
    "ENV_PROMPT_OUTPUT_RUN",
    "ENV_PROMPT_PREVIEWS",
    "ENV_PROMPT_PROCESSING",
    "PromptConfig",
]
