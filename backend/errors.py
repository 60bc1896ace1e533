"""Exceptions with user-facing messages. Callers show ``str(error)`` as is."""


class CompactSdfError(Exception):
    """Base class of every error the engine raises on purpose."""


class BadMeshError(CompactSdfError, ValueError):
    """An input mesh cannot be encoded (empty, NaN coordinates, no faces, ...)."""


class BadInputError(CompactSdfError, ValueError):
    """An argument is unusable (blend weights, a raw code, an output path, ...)."""


class BadNameError(BadInputError):
    """A shape name that cannot be stored (empty, a path, control characters, too long)."""


class LibraryError(CompactSdfError):
    """A latent library file is missing, corrupt, foreign, or of an unsupported version."""


class Cancelled(CompactSdfError):
    """The caller asked the job to stop; nothing was written."""


class CheckpointError(CompactSdfError):
    """A training checkpoint is missing, unreadable, or belongs to another run."""
