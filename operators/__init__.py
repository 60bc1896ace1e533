"""Operators (``csdf.*``): library files, shapes, encode, reconstruct, interpolate, explore, jobs, backend setup.

Job plumbing: ``session`` (the worker and the running job), ``job_operator`` (the operators'
base class), ``redraw`` (UI refresh helper).
Shared helpers: ``scene_library`` (the library file and its metadata), ``shape_list`` (the
scene's list of the library's shapes), ``results`` (what becomes of a decoded mesh).
"""

from . import encode, explore, interpolate, jobs, library, reconstruct, setup_backend, shapes

CLASSES = [
    *library.CLASSES,
    *shapes.CLASSES,
    *encode.CLASSES,
    *reconstruct.CLASSES,
    *interpolate.CLASSES,
    *explore.CLASSES,
    *jobs.CLASSES,
    *setup_backend.CLASSES,
]
