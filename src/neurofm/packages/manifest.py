"""The package manifest (``manifest.yaml``): what a model package is, needs, outputs and proves.

Validated with pydantic v2 so a bad manifest fails with the field path and the problem, e.g.
``pkg/manifest.yaml: runtime.timeout_s: Input should be greater than 0``. Unknown keys are errors
(a typo must not silently drop a limit). Every path in a manifest is package-relative and may not
leave the package: absolute paths and ``..`` are refused here, links leaving the folder by
:func:`check_paths_inside` once the package is on disk.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from neurofm.errors import NeuroFMError
from neurofm.sequences import CANONICAL
from neurofm.task_text import TASK_FILE_NAME, task_from_text
from neurofm.tasks import TASKS, OutputKind, known_tasks

MANIFEST_NAME = "manifest.yaml"
#: argv tokens that mean "the Python interpreter that runs neurofm".
PYTHON_TOKENS = ("python", "python3")


def check_relative_path(value: str) -> str:
    """A package-relative POSIX path that cannot name anything outside the package."""
    if not value or not value.strip():
        raise ValueError("path is empty")
    if "\\" in value or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r} is not a POSIX relative path")
    p = PurePosixPath(value)
    if p.is_absolute():
        raise ValueError(f"{value!r} is absolute; paths must be relative to the package")
    if ".." in p.parts:
        raise ValueError(f"{value!r} contains '..'; paths must stay inside the package")
    return p.as_posix()


RelPath = Annotated[str, AfterValidator(check_relative_path)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 digest")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelRef(_Strict):
    """The pretrained model the package was adapted from (provenance)."""

    name: str = Field(min_length=1, description="name or run id of the pretrained base model")
    sha256: Sha256 | None = Field(
        None, description="sha256 of the base model's weights; null when trained from scratch"
    )


class Inputs(_Strict):
    """Which sequences a case must provide, as canonical names or one-of groups."""

    sequences: list[str | list[str]] = Field(
        min_length=1,
        description="canonical sequence names; a list inside the list is a one-of group, "
        "the first present member is used (e.g. [dwi_b1000, flair, [swi, t2s]])",
    )
    spacing: tuple[float, float, float] | None = Field(
        None, description="voxel spacing in mm the model works at (informational; it resamples)"
    )
    orientation: Literal["RAS"] = "RAS"

    @field_validator("sequences", mode="before")
    @classmethod
    def _known_names(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        seen: set[str] = set()
        for item in value:
            group = [item] if isinstance(item, str) else item
            if (
                not isinstance(group, list)
                or not group
                or not all(isinstance(s, str) for s in group)
            ):
                raise ValueError(f"{item!r} is neither a sequence name nor a list of names")
            for s in group:
                if s not in CANONICAL:
                    raise ValueError(f"unknown sequence {s!r} (known: {', '.join(CANONICAL)})")
                if s in seen:
                    raise ValueError(f"sequence {s!r} listed twice")
                seen.add(s)
        return value

    @field_validator("spacing")
    @classmethod
    def _positive(cls, value: tuple[float, float, float] | None) -> Any:
        if value is not None and min(value) <= 0:
            raise ValueError("spacing must be positive")
        return value

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(s for s in self.sequences if isinstance(s, str))

    @property
    def one_of(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(s) for s in self.sequences if isinstance(s, list))


class Outputs(_Strict):
    """What the package writes per case and the rule it must obey."""

    kind: OutputKind
    geometry: Literal["same_as_input", "none"] = Field(
        "none",
        description="same_as_input: a mask NIfTI with the shape and affine of the inputs "
        "(within 1e-3); none: a single number in a text file",
    )
    labels: dict[int, str] = Field(
        default_factory=dict, description="mask label values and their names (0 is background)"
    )
    range: tuple[float, float] | None = Field(
        None,
        description="allowed [min, max] of a number output (default: the task's value range)",
    )
    units: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Outputs:
        if self.kind == "mask":
            if self.geometry != "same_as_input":
                raise ValueError("a mask output needs geometry: same_as_input")
            if not self.labels or any(k <= 0 for k in self.labels):
                raise ValueError("a mask output needs labels with positive values, e.g. {1: name}")
        else:
            if self.geometry != "none":
                raise ValueError(f"a {self.kind} output has geometry: none")
            if self.labels:
                raise ValueError(f"labels only apply to mask outputs, not {self.kind}")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [min, max] with min < max")
        return self


class Runtime(_Strict):
    """How to start the package and the limits it runs under."""

    entrypoint: list[str] = Field(
        min_length=1,
        description="argv, relative to the package; 'python' means neurofm's interpreter; the "
        "runner appends --input DIR --output DIR",
    )
    timeout_s: float = Field(gt=0, description="wall-clock seconds allowed per case")
    memory_mb: int = Field(gt=0, description="address-space limit of the process in MiB")
    network: Literal["none"] = "none"

    @field_validator("entrypoint")
    @classmethod
    def _relative_tokens(cls, value: list[str]) -> list[str]:
        if value[0] in PYTHON_TOKENS:
            tokens = value[1:]
        else:
            tokens = value
            check_relative_path(value[0])
        for tok in tokens:
            if tok.startswith("/") or ".." in PurePosixPath(tok).parts:
                raise ValueError(f"argument {tok!r} would reach outside the package")
        return value


class Artifact(_Strict):
    """One file of the package and its digest; every file but the manifest is listed."""

    path: RelPath
    sha256: Sha256


class Tolerances(_Strict):
    """How close a re-run must be to the reference."""

    dice_min: float = Field(0.99, ge=0, le=1, description="minimum Dice per label (masks)")
    abs_max: float = Field(1e-3, ge=0, description="maximum |difference| (numbers)")


class SelfTest(_Strict):
    """A sample case shipped with the package and the output it must reproduce."""

    sample: RelPath = Field(description="folder of one case: <sequence>.nii.gz files")
    reference: RelPath = Field(description="the expected output for the sample")
    tolerances: Tolerances = Field(default_factory=lambda: Tolerances.model_validate({}))


class Manifest(_Strict):
    """A model package: identity, contract (task, inputs, outputs), runtime and proof."""

    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="short unique id")
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    license: str = Field(min_length=1)
    task: str = Field(
        description=f"a built-in task's name, or the name in the package's {TASK_FILE_NAME}",
        json_schema_extra={"examples": list(TASKS)},
    )
    track: Literal["method", "open"]
    authors: list[str] = Field(min_length=1)
    description: str = ""
    base_model: BaseModelRef
    inputs: Inputs
    outputs: Outputs
    runtime: Runtime
    artifacts: list[Artifact] = Field(default_factory=list)
    selftest: SelfTest

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in known_tasks():
            raise ValueError(f"unknown task {value!r} (known: {', '.join(TASKS)})")
        return value

    @model_validator(mode="after")
    def _task_contract(self) -> Manifest:
        want = known_tasks()[self.task].output_kind
        if self.outputs.kind != want:
            raise ValueError(f"task {self.task} outputs a {want}, not a {self.outputs.kind}")
        paths = [a.path for a in self.artifacts]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise ValueError(f"artifacts listed twice: {', '.join(dupes)}")
        if MANIFEST_NAME in paths:
            raise ValueError(f"{MANIFEST_NAME} cannot list itself as an artifact")
        return self

    @property
    def number_range(self) -> tuple[float, float] | None:
        """The allowed range of a number output: the manifest's, else the task's value range."""
        if self.outputs.kind == "mask":
            return None
        return self.outputs.range or known_tasks()[self.task].value_range

    @property
    def output_suffix(self) -> str:
        """File name suffix of one case's output (docs/architecture.md)."""
        return ".nii.gz" if self.outputs.kind == "mask" else ".txt"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message``; joined with '; '."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = _loc(tuple(err["loc"]))
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_manifest(data: Any, where: str | Path = MANIFEST_NAME) -> Manifest:
    """Validate an already-parsed manifest mapping; errors name ``where`` and the field path."""
    if not isinstance(data, dict):
        raise NeuroFMError(where, f"expected a mapping of fields, got {type(data).__name__}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise NeuroFMError(where, format_validation_error(exc)) from exc


def load_manifest(pkg_dir: Path) -> Manifest:
    """Read and validate ``<pkg_dir>/manifest.yaml``."""
    path = Path(pkg_dir) / MANIFEST_NAME
    if not path.is_file():
        raise NeuroFMError(pkg_dir, f"no {MANIFEST_NAME}: not a model package")
    task_file = Path(pkg_dir) / TASK_FILE_NAME
    if task_file.is_file():  # a user task travels with its package: make it known by name
        task_from_text(task_file.read_text(encoding="utf-8"), task_file)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise NeuroFMError(path, f"invalid YAML ({exc.__class__.__name__}: {exc})") from exc
    return parse_manifest(data, path)


def dump_manifest(manifest: Manifest, pkg_dir: Path) -> Path:
    """Write ``manifest.yaml`` atomically (temp file + rename), keys in declaration order."""
    path = Path(pkg_dir) / MANIFEST_NAME
    data = manifest.model_dump(mode="json")
    data["outputs"]["labels"] = manifest.outputs.labels  # int keys, as written by people
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``manifest.yaml`` (for editors and other tools)."""
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "neurofm model package manifest"
    return schema


def manifest_json_schema_text() -> str:
    return json.dumps(manifest_json_schema(), indent=2) + "\n"


def resolve_inside(pkg_dir: Path, rel: str, *, where: str) -> Path:
    """``pkg_dir/rel`` with links resolved; refuses anything that ends up outside the package."""
    root = Path(pkg_dir).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise NeuroFMError(Path(pkg_dir) / MANIFEST_NAME, f"{where}: {rel!r} leaves the package")
    return target


def check_paths_inside(pkg_dir: Path, manifest: Manifest) -> None:
    """Every path the manifest names exists and stays inside the package once links resolve."""
    named = [(f"artifacts[{i}].path", a.path) for i, a in enumerate(manifest.artifacts)]
    named += [("selftest.sample", manifest.selftest.sample)]
    named += [("selftest.reference", manifest.selftest.reference)]
    for where, rel in named:
        target = resolve_inside(pkg_dir, rel, where=where)
        if not target.exists():
            raise NeuroFMError(Path(pkg_dir) / MANIFEST_NAME, f"{where}: {rel!r} does not exist")
    ep = manifest.runtime.entrypoint
    for i, tok in enumerate(ep):
        if i == 0 and tok in PYTHON_TOKENS:
            continue
        if (Path(pkg_dir) / tok).exists() or os.path.lexists(Path(pkg_dir) / tok):
            resolve_inside(pkg_dir, tok, where=f"runtime.entrypoint[{i}]")
