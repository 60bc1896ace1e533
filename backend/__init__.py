"""Compact SDF engine: many meshes as one shared neural SDF plus a small latent code per shape.

This package never imports ``bpy``. Importing it is cheap (no torch here): torch is only
imported by the modules that compute (model, train, decode, api).
"""

__version__ = "0.1.0"
