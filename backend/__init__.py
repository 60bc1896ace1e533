"""Compact SDF engine: many meshes as one shared neural SDF plus a small latent code per shape.

The pipeline, bottom to top; a package imports only those listed before it:

- ``config``, ``errors``, ``progress``, ``names``, ``atomic_io``, ``lifecycle``, ``memory``: settings,
  exceptions, progress and cancellation, shape names, crash-safe files, helper processes that end
  with their parent, the memory a job may take (used by every layer);
- ``geometry``: meshes, exact signed distances and samples, metrics;
- ``field``: the two-branch network, training and decoding;
- ``store``: the library file and each shape's stored detail;
- ``latent``: exploring the code space (directions, variants, paced paths);
- ``api``: the one public facade on NumPy arrays;
- ``interfaces``: the command line and the worker process that serves Blender.

This package never imports ``bpy``. Importing it is cheap (no torch here): torch is only
imported by the modules that compute.
"""

__version__ = "0.1.0"
