"""Operations: execution status and its estimated AWS cost, reruns, tuning, the night model (metrics: the
functions' Powertools EMF lines, :mod:`isrflow.infra.edge`).

- :mod:`.prices` the price table (``prices.yaml``, overridable) (no numpy);
- :mod:`isrflow.local.usage` (not here: the local runtime records it too) what an execution used:
  Lambda GB-s and requests, Fargate vCPU-s and GB-s,
  state transitions, SQS and S3 requests (no numpy);
- :mod:`.cost` usage x prices;
- :mod:`.status` per-detector rows, totals and cost of a local or AWS execution;
- :mod:`.rerun` the input of a rerun of an execution's failed quanta;
- :mod:`.tune` (:mod:`.tune_child`, :mod:`.tune_workload`) a function's real handler at several
  memory settings, Lambda's CPU share and memory limit emulated, priced per 1,000 detectors;
- :mod:`.night` the night model: a night's wall time and cost per service from measured figures;
Images (PNG previews and focal-plane mosaics) are :mod:`isrflow.render`'s.
"""
