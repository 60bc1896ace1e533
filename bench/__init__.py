"""Benchmark harness for the Compact SDF engine (issue 5).

``python -m bench.run`` encodes a mesh collection, measures fidelity against the marching-cubes
meshing limit (DESIGN §3), runs the baselines, interpolation, unseen-shape, ablation and scaling
studies, and writes Markdown, CSV, JSON and PNG pictures to an output directory.
"""
