"""The library file: shared networks, named per-shape codes and each shape's stored detail,
written atomically as safetensors, with metadata readable without torch."""
