"""The latent space of a library: principal directions, random variants, nearest shapes,
evenly paced paths, and recipes of its points with the arithmetic of blends (``recipes``:
torch-free, imported by Blender)."""
