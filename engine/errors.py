"""Every error the engine raises for a reason a user can act on derives from EngineError."""


class EngineError(Exception):
    """Something the user should be told about in words; the app keeps running."""


class BundleError(EngineError):
    """A bundle is missing, incomplete, corrupt, or for another task. The message names the file."""


class InputError(EngineError, ValueError):
    """The user's input cannot be analysed; the message says why."""


class InferenceError(EngineError):
    """ONNX Runtime failed while loading or running a model."""


class DataFormatError(EngineError, ValueError):
    """A data file is not in the format the task expects."""


class Cancelled(EngineError):
    """A request was abandoned: a newer one replaced it, or the app is closing."""
