"""Operators (``csdf.*``): library files, encode, reconstruct, interpolate, jobs, backend setup."""

from . import encode, interpolate, jobs, library, reconstruct, setup_backend

CLASSES = [
    *library.CLASSES,
    *encode.CLASSES,
    *reconstruct.CLASSES,
    *interpolate.CLASSES,
    *jobs.CLASSES,
    *setup_backend.CLASSES,
]
