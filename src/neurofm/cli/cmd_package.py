"""`neurofm package schema|build|seal|verify|run|info|export|check-fomo25`: model packages."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app
from neurofm.cli.options import Device, Isolation
from neurofm.errors import NeuroFMError

package_app = typer.Typer(
    help="Model packages: build from a run, verify someone else's, run in a sandbox, export.",
    no_args_is_help=True,
)
app.add_typer(package_app, name="package")
console = Console()

_ISOLATION_NOTE = {
    "unshare": "sandbox: unshare -rn (no network; files NOT isolated: install bubblewrap)",
    "none": "sandbox: NO isolation (no bwrap/unshare here): the package had network and files",
}


def _warn_isolation(isolation: str) -> None:
    if isolation in _ISOLATION_NOTE:
        console.print(f"[bold yellow]warning:[/] {_ISOLATION_NOTE[isolation]}")


@package_app.command()
def schema(
    out: Path | None = typer.Option(None, "--out", help="write to this file instead of stdout"),
) -> None:
    """Print (or write) the JSON Schema of manifest.yaml."""
    from neurofm.packages.manifest import manifest_json_schema_text

    text = manifest_json_schema_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


@package_app.command()
def build(
    run: Path = typer.Argument(..., help="finetuned run folder (model.safetensors + config.json)"),
    out: Path = typer.Option(..., "--out", help="package folder to create"),
    sample: Path = typer.Option(..., "--sample", help="case folder used as the self-test"),
    task: str | None = typer.Option(
        None, help="check the run is for this task (a name, or a task file saying the same)"
    ),
    pkg_id: str | None = typer.Option(None, "--id", help="package id (default from the run)"),
    name: str | None = typer.Option(None, help="human-readable name"),
    version: str = typer.Option("1.0.0", help="package version"),
    license: str = typer.Option("Apache-2.0", "--license", help="licence of the weights"),
    author: list[str] = typer.Option([], "--author", help="author (repeatable)"),
    description: str = typer.Option("", help="one-paragraph description"),
    track: str = typer.Option("open", help="FOMO25 track: method | open"),
    timeout_s: float = typer.Option(600.0, "--timeout", help="wall-clock seconds per case"),
    memory_mb: int = typer.Option(8192, "--memory-mb", help="address-space limit in MiB"),
    isolation: Isolation = "auto",
    overwrite: bool = typer.Option(False, help="replace an existing package folder"),
) -> None:
    """Package a finetuned run: weights, config, self-test sample and its reference, sha256s."""
    from neurofm.packages.build import build_package

    with console.status("building: running the self-test sample in the sandbox"):
        m = build_package(
            run,
            out,
            sample=sample,
            task=task,
            pkg_id=pkg_id,
            name=name,
            version=version,
            license=license,
            authors=list(author) or None,
            description=description,
            track=track,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            isolation=isolation,
            overwrite=overwrite,
        )
    console.print(f"built package [bold]{m.id}[/] {m.version} ({m.task}) in {out}")
    console.print(f"{len(m.artifacts)} file(s) hashed; reference {m.selftest.reference}")


@package_app.command()
def seal(
    pkg: Path = typer.Argument(..., help="package folder with a manifest.yaml"),
    reference: bool = typer.Option(
        True, "--reference/--no-reference", help="(re)make the self-test reference by running it"
    ),
    isolation: Isolation = "auto",
) -> None:
    """Finish a hand-made package: make the self-test reference and hash every file."""
    from neurofm.packages.build import seal_package

    with console.status("sealing"):
        m = seal_package(pkg, make_reference=reference, isolation=isolation)
    console.print(f"sealed {m.id} {m.version}: {len(m.artifacts)} file(s) hashed")


@package_app.command()
def verify(
    pkg: Path = typer.Argument(..., help="package folder, .tar.gz or .zip"),
    device: Device = "cpu",
    isolation: Isolation = "auto",
) -> None:
    """Check every sha256 (nothing runs before), run the self-test, compare with the reference."""
    from neurofm.packages.verify import verify_package

    with console.status("verifying: running the self-test in the sandbox"):
        report = verify_package(pkg, device=device, isolation=isolation)
    for line in report.lines:
        style = "green" if line.startswith("ok") else "bold red"
        console.print(f"[{style}]{line}[/]", highlight=False)
    _warn_isolation(report.isolation)
    m = report.manifest
    if not report.ok:
        console.print(f"[bold red]FAILED[/]: {m.id} {m.version} does not reproduce its reference")
        raise typer.Exit(1)
    console.print(
        f"[bold green]verified[/]: {m.id} {m.version} ({report.wall_s:.1f} s, "
        f"peak {report.peak_rss_mb:.0f} MiB, sandbox {report.isolation})"
    )


@package_app.command("run")
def run_cmd(
    pkg: Path = typer.Argument(..., help="package folder, .tar.gz or .zip"),
    input: Path = typer.Option(
        ..., "--input", help="a case folder, a split, a dataset of splits or a DICOM study"
    ),
    output: Path = typer.Option(..., "--output", help="folder for <case>.txt / <case>.nii.gz"),
    overwrite: bool = typer.Option(False, help="replace existing outputs"),
    device: Device = "auto",
    isolation: Isolation = "auto",
    threads: int = typer.Option(1, min=1, help="CPU threads the package may use"),
) -> None:
    """Run a package in the sandbox; outputs are validated, then moved into OUTPUT."""
    from neurofm.packages.runner import run_package

    def group(name: str, n: int) -> None:
        status.update(f"running {pkg.name} on {n} case(s)" + (f" of {name}" if name else ""))

    with console.status("checking the package") as status:
        report = run_package(
            pkg,
            input,
            output,
            overwrite=overwrite,
            device=device,
            isolation=isolation,
            threads=threads,
            on_group=group,
        )
    _warn_isolation(report.isolation)
    if report.error:
        raise NeuroFMError(pkg, report.error)
    console.print(
        f"{len(report.outputs)} output(s) written to {output} ({report.n_cases} case(s), "
        f"{report.wall_s:.1f} s, peak {report.peak_rss_mb:.0f} MiB, sandbox {report.isolation})"
    )


@package_app.command()
def info(pkg: Path = typer.Argument(..., help="package folder, .tar.gz or .zip")) -> None:
    """Summarise a package: identity, contract, runtime, files and whether their sha256 match."""
    from neurofm.packages.archive import open_package
    from neurofm.packages.hashing import check_integrity
    from neurofm.packages.manifest import load_manifest

    with open_package(pkg) as pkg_dir:
        m = load_manifest(pkg_dir)
        try:
            check_integrity(pkg_dir, m)
            integrity = f"[green]ok[/] ({len(m.artifacts)} files match their sha256)"
        except NeuroFMError as exc:
            integrity = f"[bold red]FAILED[/] {exc.problem}"
        size = sum(
            (pkg_dir / a.path).stat().st_size for a in m.artifacts if (pkg_dir / a.path).is_file()
        )
    t = Table(title=f"{m.name} — {m.id} {m.version}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    seqs = ", ".join(
        s if isinstance(s, str) else "one of " + "/".join(s) for s in m.inputs.sequences
    )
    out = m.outputs.kind + (f" labels {m.outputs.labels}" if m.outputs.labels else "")
    if m.number_range is not None:
        out += f" in [{m.number_range[0]:g}, {m.number_range[1]:g}]"
    base = m.base_model.name + (
        f" (sha256 {m.base_model.sha256[:12]}…)" if m.base_model.sha256 else ""
    )
    tol = m.selftest.tolerances
    rows = [
        ("task / track", f"{m.task} / {m.track}"),
        ("licence", m.license),
        ("authors", ", ".join(m.authors)),
        ("description", m.description),
        ("base model", base),
        ("inputs", seqs + (f" at {m.inputs.spacing} mm" if m.inputs.spacing else "")),
        ("outputs", f"{out}, geometry {m.outputs.geometry}"),
        ("entrypoint", " ".join(m.runtime.entrypoint)),
        ("limits", f"{m.runtime.timeout_s:g} s per case, {m.runtime.memory_mb} MiB, network none"),
        ("self-test", f"{m.selftest.sample} → {m.selftest.reference}"),
        ("tolerances", f"Dice ≥ {tol.dice_min:g}, |diff| ≤ {tol.abs_max:g}"),
        ("files", f"{len(m.artifacts)} ({size / 1e6:.1f} MB)"),
        ("integrity", integrity),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


@package_app.command()
def export(
    pkg: Path = typer.Argument(..., help="package folder, .tar.gz or .zip"),
    out: Path = typer.Option(..., "--out", help="submission folder to create"),
    fomo25: bool = typer.Option(False, "--fomo25", help="FOMO25 challenge container folder"),
    wheel: Path | None = typer.Option(None, help="bundle this neurofm wheel"),
    build_wheel: bool = typer.Option(
        True, "--build-wheel/--no-build-wheel", help="build a neurofm wheel from the source tree"
    ),
    build: bool = typer.Option(
        False, "--build", help="build the .sif with apptainer and check it (needs apptainer)"
    ),
    overwrite: bool = typer.Option(False, help="replace an existing folder"),
) -> None:
    """Export a package for submission (predict.py, Apptainer.def, pinned requirements, README)."""
    import shutil

    from neurofm.packages.export_fomo25 import build_image, export_fomo25

    if not fomo25:
        raise NeuroFMError(None, "choose an export format: --fomo25 (the only one so far)")
    with console.status("exporting"):
        folder = export_fomo25(pkg, out, wheel=wheel, build=build_wheel, overwrite=overwrite)
    console.print(f"FOMO25 folder written to {folder} (see its README.md)")
    if not build:
        return
    apptainer = shutil.which("apptainer")
    if apptainer is None:
        console.print(
            f"apptainer is not on PATH: no image built; check the folder with "
            f"`neurofm package check-fomo25 {folder}`",
            highlight=False,
            soft_wrap=True,
        )
        return
    with console.status("building the image with apptainer (downloads the base image)"):
        image = build_image(folder, apptainer)
    console.print(f"built {image}")
    _check_fomo25(folder, image=image, apptainer=apptainer)


def _check_fomo25(
    folder: Path, *, image: Path | None = None, apptainer: str = "apptainer", device: str = "auto"
) -> None:
    """Print each check's line; the first failure becomes the one-line error (exit 2)."""
    from neurofm.packages.check_fomo25 import check_folder, check_image, first_failure

    where = "in the image" if image is not None else "in the sandbox"
    with console.status(f"running the FOMO25 checks ({where})"):
        if image is None:
            results = check_folder(folder, device=device)
        else:
            gpu = any(Path("/dev").glob("nvidia*"))
            results = check_image(folder, image, apptainer=apptainer, gpu=gpu)
    for r in results:
        style = "green" if r.ok else "bold red"
        console.print(f"[{style}]{r.line()}[/]", highlight=False, soft_wrap=True)
    failed = first_failure(results)
    if failed is not None:
        raise NeuroFMError(folder, f"{failed.name}: {failed.reason}")
    console.print(f"[bold green]passes the FOMO25 checks[/]: {folder}", soft_wrap=True)


@package_app.command("check-fomo25")
def check_fomo25(
    folder: Path = typer.Argument(..., help="exported FOMO25 folder (export --fomo25)"),
    image: Path | None = typer.Option(
        None, "--image", help="a built .sif: run the checks inside it (needs apptainer)"
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda (folder checks; NEUROFM_DEVICE)"),
) -> None:
    """Repeat the FOMO25 organisers' sanity check on an export, without Apptainer."""
    import shutil

    if image is None:
        _check_fomo25(folder, device=device)
        return
    apptainer = shutil.which("apptainer")
    if apptainer is None:
        raise NeuroFMError(image, "checking an image needs apptainer on PATH")
    _check_fomo25(folder, image=image, apptainer=apptainer)
