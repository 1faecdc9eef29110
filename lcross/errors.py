"""The one exception type lcross raises for bad input: the message names the problem, where it is, and the fix."""


class LCrossInputError(ValueError):
    """Bad input given to lcross (a data file, a config option, a model spec, a checkpoint)."""

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None):
        parts = [problem if where is None else f"{where}: {problem}"]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))


class LCrossFitError(LCrossInputError):
    """A fit that stopped because it cannot go on correctly: T's loss or weights became NaN or Inf. Nothing is
    exported; the checkpoints of the epochs before stay as they were. A subclass of ``LCrossInputError`` so the
    command line shows it as one ``error: ... Fix: ...`` line (exit 2)."""
