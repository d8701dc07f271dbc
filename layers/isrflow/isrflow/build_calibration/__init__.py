"""BuildCalibration's steps as library calls (the science they call is in :mod:`isrflow.calibration`).

- :mod:`.layout` where an execution keeps its manifests, requests and results;
- :mod:`.plan` registry -> the masters to build, their inputs and ISR clusters;
- :mod:`.prepare` Normalize (flat exposure scales) and PrepareCombine (one request per master);
- :mod:`.run` one combine, as the ``combine`` Lambda and the Fargate task run it;
- :mod:`.cleanup` DeleteIntermediates: the ISR'd inputs of the masters that were built;
- :mod:`.summary` failed combines, Certify and Summarize.

The Lambda handlers in ``functions/`` only parse their event and call these. All but
:mod:`.run` are pure Python; importing this package does not import numpy.
"""
