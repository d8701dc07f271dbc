"""The night model (:mod:`isrflow.ops.night`) as text: what ``isrflow plan-night`` prints."""

from __future__ import annotations

from isrflow.ops.night import NightModel


def report_lines(m: NightModel, currency: str = "USD") -> list[str]:
    """The model as ``isrflow plan-night`` prints it."""
    s = m.setup
    lines = [
        f"night: {s.visits:,} visits x {s.detectors_per_visit} detectors ({s.camera}) = {m.detectors:,} "
        f"detector-ISRs",
        f"modelled wall time at concurrency {s.concurrency}: {m.wall_seconds / 3600:.2f} h "
        f"({m.clusters:,} ISR invocations of {m.cluster_seconds:.1f} s)",
        f"{'service':<24} {currency:>10}  detail",
    ]
    for svc in m.services:
        lines.append(f"{svc.service:<24} {svc.usd:>10.2f}  {svc.detail}")
    lines.append(
        f"{'total per night':<24} {m.total_usd:>10.2f}  ({m.per_1000_detectors_usd:.4f} per 1,000 detectors)"
    )
    verdict = "within" if m.within_budget else "OVER"
    lines.append(f"{verdict} the {currency} {m.budget_usd:.0f} budget per night")
    store = ", ".join(f"{cls} {usd:,.2f}" for cls, usd in m.storage_month_usd.items())
    after = f" (to STANDARD_IA after {s.outputs_ia_days} days)" if s.outputs_ia_days else ""
    lines.append(f"storage of one night's outputs: {m.output_tb:.2f} TB, per month {store}{after}")
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in m.assumptions)
    return lines


__all__ = ["report_lines"]
