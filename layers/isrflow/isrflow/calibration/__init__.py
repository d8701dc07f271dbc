"""Calibration construction science: master bias, dark, flat and defects per detector (after cp_pipe).

Modules, each doing one job (units in each docstring):

- :mod:`.steps` what each type is built from: inputs, ISR step set, scaling (pure Python);
- :mod:`.kernel` the per-pixel combination of a stack: median, mean, clipped mean;
- :mod:`.network` the pruned sorting networks the kernel applies (order statistics per pixel);
- :mod:`.mef` row strips of MEF files, read by byte ranges;
- :mod:`.mef_writer` row strips of MEF files, written in place and published atomically;
- :mod:`.combine` the streaming combine of one detector under a memory budget;
- :mod:`.stats` clipped statistics and the per-input statistics;
- :mod:`.normalize` flat normalisation over the focal plane (pure Python);
- :mod:`.defects` hot and cold pixels from the master dark and flat;
- :mod:`.routing` the combine's memory model and the Lambda/Fargate decision (pure Python).

The BuildCalibration state machine's steps that use these (plan, prepare, run, cleanup,
summary and the datastore layout) are in :mod:`isrflow.build_calibration`.

Importing this package imports nothing heavy.
"""
