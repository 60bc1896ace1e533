"""Meshes and their ground truth: loading and validating meshes, exact signed distances and
training samples, fidelity metrics, decimation and procedural test collections (no networks)."""
