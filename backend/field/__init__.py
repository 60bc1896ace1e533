"""The neural field: the two-branch network, its training (with checkpoints and several
processes) and decoding codes into meshes. Imports geometry below it, never the library file."""
