"""Usage x price table -> the estimated AWS cost of an execution, by service.

=============== ======================================================================
service         USD
=============== ======================================================================
lambda          requests / 1e6 x requests_per_million + sum(GB-s x gb_second[arch])
fargate         sum(max(seconds, minimum) x (vCPU x vcpu_hour + GB x gb_hour)[arch] / 3600)
stepfunctions   transitions / 1000 x standard_per_1000_transitions
sqs             requests / 1e6 x requests_per_million
s3              PUT-class / 1000 x put_copy_post_list_per_1000 + GET / 1000 x get_select_per_1000
=============== ======================================================================

``cost_per_1000_detectors`` = total / detectors x 1000 (None without detectors).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from isrflow.local.usage import Usage
from isrflow.ops.prices import PriceTable


class LambdaCost(BaseModel):
    requests: int
    gb_seconds: float
    usd: float


class FargateCost(BaseModel):
    tasks: int
    vcpu_seconds: float
    gb_seconds: float
    usd: float


class TransitionsCost(BaseModel):
    transitions: int
    usd: float


class RequestsCost(BaseModel):
    requests: int
    usd: float


class S3Cost(BaseModel):
    put_copy_post_list: int
    get_select: int
    usd: float


class CostBreakdown(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    lambda_: LambdaCost = Field(alias="lambda")
    fargate: FargateCost
    stepfunctions: TransitionsCost
    sqs: RequestsCost
    s3: S3Cost


class CostEstimate(BaseModel):
    cost_usd: float
    cost_per_1000_detectors: float | None
    detectors: int
    breakdown: CostBreakdown
    prices: str
    region: str
    currency: str
    notes: list[str]


def estimate(usage: Usage, prices: PriceTable) -> CostEstimate:
    lam = prices.lambda_
    gb_s = sum(i.gb_seconds for i in usage.lambda_invocations)
    lambda_usd = len(usage.lambda_invocations) / 1e6 * lam.requests_per_million + sum(
        i.gb_seconds * prices.per_architecture(lam.gb_second, i.architecture, "Lambda GB-s")
        for i in usage.lambda_invocations
    )
    far = prices.fargate
    vcpu_s = gb_fs = fargate_usd = 0.0
    for t in usage.fargate_tasks:
        seconds = max(t.duration_s, far.minimum_seconds)
        vcpu_s += t.vcpu * seconds
        gb_fs += t.memory_gb * seconds
        fargate_usd += (
            seconds
            / 3600.0
            * (
                t.vcpu * prices.per_architecture(far.vcpu_hour, t.architecture, "Fargate vCPU")
                + t.memory_gb * prices.per_architecture(far.gb_hour, t.architecture, "Fargate GB")
            )
        )
    sfn_usd = usage.state_transitions / 1000.0 * prices.stepfunctions.standard_per_1000_transitions
    sqs_usd = usage.sqs_requests / 1e6 * prices.sqs.requests_per_million
    s3_usd = (
        usage.s3_put_requests / 1000.0 * prices.s3.put_copy_post_list_per_1000
        + usage.s3_get_requests / 1000.0 * prices.s3.get_select_per_1000
    )
    total = lambda_usd + fargate_usd + sfn_usd + sqs_usd + s3_usd
    breakdown = CostBreakdown(
        lambda_=LambdaCost(requests=len(usage.lambda_invocations), gb_seconds=gb_s, usd=lambda_usd),
        fargate=FargateCost(
            tasks=len(usage.fargate_tasks), vcpu_seconds=vcpu_s, gb_seconds=gb_fs, usd=fargate_usd
        ),
        stepfunctions=TransitionsCost(transitions=usage.state_transitions, usd=sfn_usd),
        sqs=RequestsCost(requests=usage.sqs_requests, usd=sqs_usd),
        s3=S3Cost(put_copy_post_list=usage.s3_put_requests, get_select=usage.s3_get_requests, usd=s3_usd),
    )
    return CostEstimate(
        cost_usd=total,
        cost_per_1000_detectors=total / usage.detectors * 1000 if usage.detectors else None,
        detectors=usage.detectors,
        breakdown=breakdown,
        prices=prices.source,
        region=prices.region,
        currency=prices.currency,
        notes=list(usage.notes),
    )


def breakdown_json(cost: CostEstimate) -> dict:
    """The estimate as JSON-ready data (``lambda`` spelled as such)."""
    return cost.model_dump(mode="json", by_alias=True)


__all__ = ["CostEstimate", "breakdown_json", "estimate"]
