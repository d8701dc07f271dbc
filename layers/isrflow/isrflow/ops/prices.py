"""The price table: ``prices.yaml`` (package data), optionally overridden by a user's YAML file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isrflow.model.errors import PriceTableError

ARCHITECTURES = ("arm64", "x86_64")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LambdaPrices(_Strict):
    requests_per_million: float = Field(ge=0)
    gb_second: dict[str, float]


class FargatePrices(_Strict):
    vcpu_hour: dict[str, float]
    gb_hour: dict[str, float]
    minimum_seconds: float = Field(default=60, ge=0)


class StepFunctionsPrices(_Strict):
    standard_per_1000_transitions: float = Field(ge=0)


class SqsPrices(_Strict):
    requests_per_million: float = Field(ge=0)


class S3Prices(_Strict):
    put_copy_post_list_per_1000: float = Field(ge=0)
    get_select_per_1000: float = Field(ge=0)
    storage_gb_month: dict[str, float] = Field(
        default_factory=dict, description="storage class -> price per GB-month (the night model)"
    )


class PriceTable(_Strict):
    region: str = "us-east-1"
    currency: str = "USD"
    lambda_: LambdaPrices = Field(alias="lambda")
    fargate: FargatePrices
    stepfunctions: StepFunctionsPrices
    sqs: SqsPrices
    s3: S3Prices
    source: str = Field(default="built-in", description="where the table came from")

    def per_architecture(self, table: dict[str, float], architecture: str, what: str) -> float:
        if architecture not in table:
            raise PriceTableError(
                f"price table ({self.source}) has no {what} price for architecture {architecture!r}"
            )
        return table[architecture]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def default_table_text() -> str:
    return resources.files(__package__).joinpath("prices.yaml").read_text()


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The built-in table, with ``path`` (a YAML file of any subset of its keys) merged over it."""
    data = yaml.safe_load(default_table_text())
    source = "built-in prices.yaml"
    if path is not None:
        try:
            override = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise PriceTableError(f"{path}: cannot read the price table ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise PriceTableError(f"{path}: not YAML: {exc}") from None
        if not isinstance(override, dict):
            raise PriceTableError(f"{path}: a price table is a mapping of sections")
        data = _merge(data, override)
        source = str(path)
    try:
        return PriceTable.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise PriceTableError(f"{source}: invalid price table: {exc}") from None


__all__ = ["ARCHITECTURES", "PriceTable", "load_prices"]
