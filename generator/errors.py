"""Every error a user is meant to read. The CLI prints their text as it is, without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """An error caused by input or environment; its message is complete and shown verbatim."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file, located as precisely as we can."""

    file: str
    path: str  # dotted field path as a user reads it, e.g. outputs.orders.columns.status.type
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<root>'}: {self.message}"


class SpecError(UserError):
    """A spec (or a set of specs) is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"{len(problems)} problem(s) found; nothing was written:"]
        lines += [f"  {p}" for p in problems]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Problem]]]:
        # Pickled as its problems (the default would pass the message back as `problems`): a
        # render in a forked process raises it in the parent (parallel.py).
        return (type(self), (self.problems,))


class NotFound(UserError):
    """What was asked for (a product, an output) is not in the catalog. The console answers 404."""


class NotAllowed(UserError):
    """Who asked may not do this (an approval by someone outside the owning team). The console answers 403."""


class CheckFailed(UserError):
    """A check ran and found something wrong (drift, a failing policy): exit code 1, not 2."""

    exit_code = 1


class RunFailed(Exception):
    """A pipeline step failed at run time (dbt, gate, publish); the message says why."""
