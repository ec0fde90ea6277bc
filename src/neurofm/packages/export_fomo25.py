"""Export a verified package as a FOMO25 submission folder the organisers' sanity check accepts.

The folder holds ``predict.py`` (the challenge's one-case command line, ``--flair path ...
--output path``; the image holds it at exactly ``/app/predict.py``), the package's ``model/``,
``selftest/`` and ``manifest.yaml``, an ``Apptainer.def`` (``python:<this Python>-slim``,
``/input`` and ``/output`` created in ``%post``, a ``%test``), ``requirements.txt`` pinning every
dependency to the version installed here (the image runs without network, so what it installs
is fixed when it is built), the neurofm wheel in ``wheels/`` and a README with the organisers'
commands. The files are rendered from ``templates/`` with :class:`string.Template`. Only packages
built from a neurofm run (entrypoint ``neurofm.packages.infer``) can be exported: a hand-made
package's code is not something this exporter can vouch for inside a container.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from string import Template

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from neurofm.atomic import publish_dir
from neurofm.errors import NeuroFMError
from neurofm.packages.archive import open_package
from neurofm.packages.build import INFER_ENTRYPOINT, MODEL_DIR, SELFTEST_DIR
from neurofm.packages.check_fomo25 import ORGANISER_TASKS, organiser_args, output_name
from neurofm.packages.hashing import check_integrity
from neurofm.packages.manifest import MANIFEST_NAME, Manifest, load_manifest

TEMPLATES = ("predict.py", "Apptainer.def", "README.md")
REQUIREMENTS = "requirements.txt"
# What the organisers' validator reads back from each subject's output.
_ORGANISER_OUTPUT = {
    "probability": "`OUTPUT/sub_N.txt` must hold one number, the infarct probability.",
    "number": "`OUTPUT/sub_N.txt` must hold one number, the brain age in years.",
    "mask": "`OUTPUT/sub_N.nii.gz` must be a binary (0/1) mask with the input's shape.",
}
_OUTPUT_DESC = {
    "probability": "the infarct probability in [0, 1] as text (one number)",
    "number": "the brain age in years as text (one number)",
    "mask": "the binary meningioma mask as NIfTI, same shape and affine as the inputs",
}


def _flags(manifest: Manifest) -> str:
    parts = [f"--{s} PATH" for s in manifest.inputs.required]
    parts += ["[" + " | ".join(f"--{s} PATH" for s in g) + "]" for g in manifest.inputs.one_of]
    return " ".join(parts)


Lookup = Callable[[str], tuple[str, str, list[str]] | None]


def installed(name: str) -> tuple[str, str, list[str]] | None:
    """(name, version, requirements) of an installed distribution, or None."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return dist.metadata["Name"], dist.version, list(dist.requires or [])


def pin_closure(requirements: list[str], lookup: Lookup = installed) -> dict[str, str]:
    """``name -> version`` of every distribution ``requirements`` need here, transitively.

    Markers are evaluated for this interpreter (the image uses the same Python version) and for
    the extras each requirement asks for; the local label (``2.13.0+cpu``) is dropped so the
    image gets PyPI's build, which runs on both GPU and CPU.
    """
    pins: dict[str, str] = {}
    queue = [(Requirement(r), "") for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, extra = queue.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        found = lookup(req.name)
        if found is None:
            raise NeuroFMError(None, f"{req.name} (needed by neurofm) is not installed here")
        name, version, requires = found
        pins[canonicalize_name(name)] = Version(version).public
        for extra_name in ["", *sorted(req.extras)]:
            queue += [(Requirement(r), extra_name) for r in requires]
    return dict(sorted(pins.items()))


def neurofm_pins() -> dict[str, str]:
    """The pinned closure of the installed neurofm's own requirements (extras left out)."""
    found = installed("neurofm")
    if found is None:
        raise NeuroFMError(None, "neurofm is not installed (no metadata): cannot pin its deps")
    return pin_closure(found[2])


def requirements_text(pins: dict[str, str]) -> str:
    """The pinned ``requirements.txt`` of the image, with why it is pinned."""
    head = (
        "# Every dependency of neurofm, pinned to the version the export was made (and checked)\n"
        "# with. The image installs these, then neurofm from wheels/ with --no-deps.\n"
    )
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())


def organiser_command(manifest: Manifest, image: str) -> str:
    """The organisers' call of ``predict.py`` for one subject of the package's task."""
    task = manifest.task
    args = organiser_args(
        task, list(ORGANISER_TASKS[task][1]), "/input", "/output/" + output_name(task)
    )
    return (
        f"apptainer exec --nv --bind SUBJECT:/input:ro --bind OUTPUT:/output {image} "
        "python /app/predict.py " + " ".join(args)
    )


def _organiser_table() -> str:
    rows = []
    for task, (number, seqs) in ORGANISER_TASKS.items():
        args = organiser_args(task, list(seqs), "/input", "/output/" + output_name(task))
        rows.append(f"| {number} ({task}) | `python /app/predict.py {' '.join(args)}` |")
    return "\n".join(rows)


def neurofm_source_root() -> Path | None:
    """The source checkout neurofm runs from (``pyproject.toml`` beside ``src/``), if any."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "neurofm"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def build_wheel(dest: Path) -> Path:
    """Build a neurofm wheel into ``dest`` from a clean copy of the source (offline, no deps)."""
    root = neurofm_source_root()
    if root is None:
        raise NeuroFMError(None, "neurofm source tree not found; pass a wheel with --wheel")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="neurofm-wheel-") as tmp:
        src = Path(tmp) / "neurofm"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "src" / "neurofm",
            src / "src" / "neurofm",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        proc = subprocess.run(
            [*cmd, "--quiet", "-w", str(dest), str(src)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise NeuroFMError(root, f"building the neurofm wheel failed: {' '.join(tail)}")
    wheels = sorted(dest.glob("neurofm-*.whl"))
    if not wheels:
        raise NeuroFMError(dest, "pip wheel produced no neurofm wheel")
    return wheels[-1]


def export_fomo25(
    package: Path,
    out: Path,
    *,
    wheel: Path | None = None,
    build: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the FOMO25 folder for ``package`` to ``out``; returns ``out``.

    ``wheel`` bundles a given neurofm wheel; otherwise one is built from the source tree when
    ``build`` is true, and when it is false ``wheels/`` is left empty with the step in README.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise NeuroFMError(out, "exists; pass --overwrite to replace it")
    with open_package(Path(package)) as pkg_dir:
        manifest = load_manifest(pkg_dir)
        check_integrity(pkg_dir, manifest)
        if manifest.runtime.entrypoint != INFER_ENTRYPOINT:
            raise NeuroFMError(
                pkg_dir / MANIFEST_NAME,
                "only packages built from a neurofm run (neurofm package build) can be exported",
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
        try:
            shutil.copytree(pkg_dir / MODEL_DIR, tmp / MODEL_DIR)
            shutil.copytree(pkg_dir / SELFTEST_DIR, tmp / SELFTEST_DIR)
            shutil.copyfile(pkg_dir / MANIFEST_NAME, tmp / MANIFEST_NAME)
            (tmp / REQUIREMENTS).write_text(requirements_text(neurofm_pins()), encoding="utf-8")
            wheels = tmp / "wheels"
            wheels.mkdir()
            if wheel is not None:
                if not Path(wheel).is_file():
                    raise NeuroFMError(wheel, "wheel file does not exist")
                shutil.copyfile(wheel, wheels / Path(wheel).name)
                wheel_note = f"`wheels/` holds `{Path(wheel).name}`."
            elif build:
                built = build_wheel(wheels)
                wheel_note = f"`wheels/` holds `{built.name}`, built from the neurofm source."
            else:
                wheel_note = (
                    "First put a neurofm wheel into `wheels/`: from a neurofm checkout run "
                    "`python -m pip wheel --no-deps . -w <this folder>/wheels`."
                )
            values = {
                "name": manifest.name,
                "package_id": manifest.id,
                "version": manifest.version,
                "task": manifest.task,
                "track": manifest.track,
                "license": manifest.license,
                "authors": ", ".join(manifest.authors),
                "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                "challenge_task": ORGANISER_TASKS[manifest.task][0],
                "flags": _flags(manifest),
                "organiser_flags": " ".join(
                    organiser_args(
                        manifest.task,
                        list(ORGANISER_TASKS[manifest.task][1]),
                        "/input",
                        "/output/" + output_name(manifest.task),
                    )
                ),
                "organiser_command": organiser_command(manifest, f"{manifest.id}.sif"),
                "organiser_output": _ORGANISER_OUTPUT[manifest.outputs.kind],
                "organiser_table": _organiser_table(),
                "output_desc": _OUTPUT_DESC[manifest.outputs.kind],
                "wheel_note": wheel_note,
            }
            templates = resources.files("neurofm.packages") / "templates"
            for name in TEMPLATES:
                text = Template((templates / name).read_text(encoding="utf-8"))
                (tmp / name).write_text(text.substitute(values), encoding="utf-8")
            (tmp / "predict.py").chmod(0o755)
            publish_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def build_image(folder: Path, apptainer: str) -> Path:
    """``apptainer build`` the folder's definition into ``<folder>/<id>.sif`` (network needed)."""
    manifest = load_manifest(folder)
    image = Path(folder) / f"{manifest.id}.sif"
    fakeroot = ["--fakeroot"] if os.geteuid() != 0 else []
    proc = subprocess.run(
        [apptainer, "build", *fakeroot, str(image), "Apptainer.def"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-1:]
        raise NeuroFMError(
            Path(folder) / "Apptainer.def", f"apptainer build failed: {' '.join(tail)}"
        )
    return image
