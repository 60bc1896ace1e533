"""Operators (``csdf.*``): library files, shapes, encode, reconstruct, interpolate, jobs, backend setup.

Job plumbing: ``session`` (the worker and the running job), ``job_operator`` (the operators'
base class), ``redraw`` (UI refresh helper).
"""

from . import encode, interpolate, jobs, library, reconstruct, setup_backend, shapes

CLASSES = [
    *library.CLASSES,
    *shapes.CLASSES,
    *encode.CLASSES,
    *reconstruct.CLASSES,
    *interpolate.CLASSES,
    *jobs.CLASSES,
    *setup_backend.CLASSES,
]
