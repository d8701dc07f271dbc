"""Calibration construction: master bias, dark, flat and defects per detector (after cp_pipe).

Modules, each doing one job (units in each docstring):

- :mod:`.steps` what each type is built from: inputs, ISR step set, scaling (pure Python);
- :mod:`.kernel` the per-pixel combination of a stack: median, mean, clipped mean;
- :mod:`.mef` row strips of MEF files, read by ranges and written in place;
- :mod:`.combine` the streaming combine of one detector under a memory budget;
- :mod:`.stats` clipped statistics and the per-input statistics;
- :mod:`.normalize` flat normalisation over the focal plane (pure Python);
- :mod:`.defects` hot and cold pixels from the master dark and flat;
- :mod:`.routing` the memory model and the Lambda/Fargate decision (pure Python);
- :mod:`.layout`, :mod:`.plan`, :mod:`.prepare`, :mod:`.run`, :mod:`.summary` the
  BuildCalibration state machine's steps as library calls (the handlers in ``functions/``
  only parse their event and call these; all but :mod:`.run` are pure Python).

Importing this package imports nothing heavy.
"""
