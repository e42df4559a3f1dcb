"""One exception class per condition a user can act on.

`UserError` (exit 2) means the request itself is wrong; `StageFailed` (exit 1)
means a stage ran and failed. Both carry one message meant for a person; the
command line prints it without a traceback.
"""


class TfbuildError(Exception):
    exit_code = 2


class UserError(TfbuildError):
    """The request is wrong: fix the command line or the target file."""


class ConfigError(UserError):
    """A key is unknown, mistyped, of the wrong type, or settings clash."""


class TargetNotFound(UserError):
    """No targets/NAME.yaml in ./targets or among the shipped targets."""


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model."""


class NodeNotFound(UserError):
    """A node named in the config is not in the graph."""


class CalibrationError(UserError):
    """Calibration data is missing, empty, or of the wrong shape or dtype."""


class BackendUnavailable(UserError):
    """This machine or TensorFlow build lacks what a stage needs (e.g. TF-TRT)."""


class StageFailed(TfbuildError):
    """A stage ran and failed; nothing was published."""

    exit_code = 1


class DiskFull(StageFailed):
    """A stage ran out of disk space (or quota) while writing its artifact."""


class LockOutOfDate(TfbuildError):
    """`locked=true`, and the lock file does not record what this run would build."""

    exit_code = 1


class ParityError(StageFailed):
    """A converted graph's outputs differ from its source beyond tolerance."""


class InferenceModeError(StageFailed):
    """A frozen graph still behaves as in training (its outputs depend on the batch)."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception (TF errors carry pages of context)."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Graph execution error"):
        # TF puts the cause after a Python stack of where the op was defined.
        causes = [l for l in lines[1:] if not l.startswith(("[[", "File ", "Detected at node",
                                                             "Node:", "Original stack"))]
        return causes[-1] if causes else lines[0]
    return lines[0] if lines else type(error).__name__
