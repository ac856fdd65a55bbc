"""Errors that mean "the user asked for something wrong": the CLI prints them without a traceback."""


class ArtifactError(Exception):
    """A problem the user can fix; the message names what, where, and how to fix it."""


class ConfigError(ArtifactError):
    """An experiment config (or claim file) is invalid."""


class DataError(ArtifactError):
    """A data file is missing, corrupt, or cannot be read."""


class EngineError(ArtifactError):
    """An inference engine cannot be loaded or failed while generating."""


class LengthMismatchError(ArtifactError):
    """A model returned a different number of tokens than the forced generation length."""


class FixedTextMismatchError(ArtifactError):
    """Fixed-text timing: a model did not emit exactly the reference text (ids or decoded characters differ)."""
