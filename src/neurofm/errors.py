"""One error type for bad input, so the CLI can print one line and exit non-zero.

Every message names the offending file (or object) and the problem, e.g.
``NeuroFMError(path, "4D image where a 3D volume is expected")`` renders as
``sub-01/flair.nii.gz: 4D image where a 3D volume is expected``. Multi-line problems (parser
messages) are joined into one line with ``; ``.
"""

from __future__ import annotations

from pathlib import Path


class NeuroFMError(Exception):
    """Bad input or a refused operation; carries where it happened and what went wrong."""

    def __init__(self, where: str | Path | None, problem: str) -> None:
        self.where = str(where) if where is not None else None
        # one line whatever the source (YAML and pydantic messages span several)
        self.problem = "; ".join(ln.strip() for ln in problem.splitlines() if ln.strip())
        super().__init__(f"{self.where}: {self.problem}" if self.where else self.problem)

    def __reduce__(self) -> tuple[type[NeuroFMError], tuple[str | None, str]]:
        """Picklable, so worker processes can send it back: rebuilt as a plain NeuroFMError
        (subclasses too) with the same text."""
        return (NeuroFMError, (self.where, self.problem))
