"""Options that several commands share, declared once so that a flag means the same thing, with
the same help, in every command that takes it.

Each is an ``Annotated`` type for a command's signature. The default stays at the command
(``device: Device = "auto"``) because commands legitimately differ in it: monitoring and
planning run on the CPU unless told otherwise, training picks a GPU when there is one. The flag
is the parameter's name (``device`` -> ``--device``), as for any typer option.
"""

from __future__ import annotations

from typing import Annotated

import typer

Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
Threads = Annotated[int, typer.Option(help="torch CPU threads (0: default)")]
Seed = Annotated[int, typer.Option(help="random seed")]
Resume = Annotated[bool, typer.Option(help="continue from OUT/checkpoints/last")]
Isolation = Annotated[
    str, typer.Option(help="auto | bwrap | unshare | none (auto: the strongest that works here)")
]

Loader = Annotated[
    str,
    typer.Option(
        help="processes | threads: who reads the patches (threads: much faster from a cache "
        "made with `neurofm prepare --unpack`; a different random stream than processes)"
    ),
]

# --overwrite, by what it replaces
OverwriteOut = Annotated[bool, typer.Option(help="replace an existing OUT")]
OverwriteRun = Annotated[bool, typer.Option(help="replace an existing run in OUT")]
OverwritePredictions = Annotated[bool, typer.Option(help="replace existing predictions")]

# cases as Dask tasks (neurofm.data.dask_runner): prepare and predict
DaskWorkers = Annotated[
    int,
    typer.Option(
        min=0, help="0/1: in this process; N > 1: a private local Dask cluster of N processes"
    ),
]
DaskScheduler = Annotated[
    str | None,
    typer.Option(
        help="address of an existing Dask scheduler (tcp://host:8786) to run the cases on"
    ),
]
FailFast = Annotated[
    bool,
    typer.Option(help="on Dask, stop at the first bad case (default: name it, finish the others)"),
]
