"""Repeat the FOMO25 organisers' container sanity check on an exported folder or a built image.

The organisers' public ``fomo25-sanity-check-pipeline`` rejects a container unless ``/app``,
``/input``, ``/output`` and ``/app/predict.py`` exist in it and ``apptainer test`` passes, then
calls ``python /app/predict.py --<sequence> /input/ses_1/<sequence>.nii.gz ... --output
/output/sub_N.txt`` (``.nii.gz`` for the mask task) and reads back one number (infarct
probability, brain age) or a binary mask on the input grid (meningioma). Building the image needs
Apptainer and network, so the same things are checked here on the export folder: the definition
is read for what ``%files`` puts where, what ``%post`` creates and installs and what ``%test``
tries, then ``predict.py`` runs on the package's self-test case in the neurofm sandbox (no
network, inputs read-only), called exactly as the organisers call it, plus once with a missing
input, which must fail. Where an image exists the calls go through ``apptainer exec`` instead.

Each check is a function returning a :class:`CheckResult` with a one-line reason. The definition
parser is hand-written: no maintained Python library reads Apptainer definition files, and only
their layout (header keys, ``%section`` blocks, shell lines) is needed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nibabel as nib

from neurofm.errors import NeuroFMError
from neurofm.packages.hashing import sha256_file
from neurofm.packages.manifest import MANIFEST_NAME, Manifest, load_manifest
from neurofm.packages.outputs import compare_outputs, input_grid, read_mask, read_number
from neurofm.packages.sandbox import SandboxSpec, run_sandboxed

# The organisers' task numbers and the sequences their check passes (one flag each), in the order
# of their validator; a case gets a flag for every one of these files it holds.
ORGANISER_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "infarct": ("task1", ("adc", "dwi_b1000", "flair", "t2s", "swi")),
    "meningioma": ("task2", ("dwi_b1000", "flair", "t2s", "swi")),
    "brain_age": ("task3", ("t1", "t2")),
}
REQUIRED_PATHS = ("/app", "/input", "/output", "/app/predict.py")
ENTRY_POINT = "/app/predict.py"
SUBJECT, SESSION = "sub_1", "ses_1"
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$")
_SEPARATORS = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class CheckResult:
    """One check of the organisers' list: its name, whether it passed and why, in one line."""

    name: str
    ok: bool
    reason: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.reason}"


@dataclass(frozen=True)
class Definition:
    """An Apptainer definition: header keys (``Bootstrap``, ``From``) and section lines."""

    header: dict[str, str]
    sections: dict[str, list[str]]

    def lines(self, section: str) -> list[str]:
        return self.sections.get(section, [])


def parse_definition(text: str) -> Definition:
    """Split a definition into header keys and ``%section`` blocks (comments, blanks dropped).

    Lines continued with a trailing backslash are joined, so a command is always one line.
    """
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("%"):
            name = line[1:].split()[0].lower() if len(line) > 1 else ""
            current = sections.setdefault(name, [])
        elif current is None:
            key, sep, value = line.partition(":")
            if sep:
                header[key.strip().lower()] = value.strip()
        else:
            current.append(line)
    return Definition(header, sections)


def file_entries(defn: Definition) -> list[tuple[str, str]]:
    """``(source, destination)`` of every ``%files`` line (one path alone is copied to itself)."""
    out = []
    for line in defn.lines("files"):
        parts = line.split()
        out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return out


def local_source(defn: Definition, folder: Path, container_path: str) -> Path | None:
    """The file or folder in ``folder`` that ``%files`` copies to ``container_path``, if any."""
    for src, dest in file_entries(defn):
        dest = dest.rstrip("/") or "/"
        if container_path == dest:
            return folder / src
        if container_path.startswith(dest + "/"):
            return folder / src / container_path[len(dest) + 1 :]
    return None


def commands(lines: list[str]) -> list[list[str]]:
    """Simple shell commands of a section: each line split at ``&&``, ``;``, ``|`` and the like."""
    out: list[list[str]] = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:
            tokens = line.split()
        current: list[str] = []
        for tok in tokens:
            if tok in _SEPARATORS:
                if current:
                    out.append(current)
                current = []
            else:
                current.append(tok)
        if current:
            out.append(current)
    return out


def _pip_installs(defn: Definition) -> list[list[str]]:
    """The arguments of every ``pip install`` (also ``python -m pip install``) in ``%post``."""
    out = []
    for cmd in commands(defn.lines("post")):
        for i in range(len(cmd) - 1):
            if cmd[i].endswith(("pip", "pip3")) and cmd[i + 1] == "install":
                out.append(cmd[i + 2 :])
                break
    return out


# -- checks on the definition and the files beside it -------------------------------------------


def check_header(defn: Definition) -> CheckResult:
    name = "definition"
    boot, base = defn.header.get("bootstrap"), defn.header.get("from")
    if not boot or not base:
        return CheckResult(name, False, "Apptainer.def has no 'Bootstrap:' and 'From:' header")
    return CheckResult(name, True, f"bootstraps from {boot} {base}")


def check_entry_point(defn: Definition, folder: Path) -> CheckResult:
    """The organisers call exactly ``python /app/predict.py``: it must be put there."""
    name = "entry point"
    src = local_source(defn, folder, ENTRY_POINT)
    if src is None:
        elsewhere = [d for s, d in file_entries(defn) if Path(s).name == "predict.py"]
        where = f" (it goes to {elsewhere[0]})" if elsewhere else ""
        return CheckResult(
            name, False, f"%files puts nothing at {ENTRY_POINT}{where}; the organisers call "
            f"exactly python {ENTRY_POINT}"
        )  # fmt: skip
    if not src.is_file():
        return CheckResult(
            name, False, f"%files copies {src.name} to {ENTRY_POINT} but it is missing"
        )
    return CheckResult(name, True, f"%files puts {src.relative_to(folder)} at {ENTRY_POINT}")


def check_io_dirs(defn: Definition) -> CheckResult:
    """``/input`` and ``/output`` must exist in the image: the organisers bind the case there."""
    name = "input/output folders"
    made = {arg.rstrip("/") for cmd in commands(defn.lines("post")) if cmd[0] == "mkdir"
            for arg in cmd[1:] if not arg.startswith("-")}  # fmt: skip
    missing = [d for d in ("/input", "/output") if d not in made]
    if missing:
        return CheckResult(
            name, False, f"%post does not create {' and '.join(missing)} (mkdir -p /input /output)"
        )
    return CheckResult(name, True, "%post creates /input and /output")


def check_executable(defn: Definition, folder: Path) -> CheckResult:
    name = "executable"
    src = local_source(defn, folder, ENTRY_POINT)
    if src is None or not src.is_file():
        return CheckResult(name, False, f"no {ENTRY_POINT} to make executable")
    first = src.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
    if not (first.startswith("#!") and "python" in first):
        return CheckResult(name, False, f"{src.name} does not start with a python #! line")
    chmod = any(
        cmd[0] == "chmod" and ENTRY_POINT in cmd and any(re.fullmatch(r"\+x|[0-7]?[157][0-7]{2}|"
        r"[ugoa]*\+[rwX]*x[rwX]*", a) for a in cmd[1:])
        for cmd in commands(defn.lines("post"))
    )  # fmt: skip
    if not chmod:
        return CheckResult(name, False, f"%post does not chmod +x {ENTRY_POINT}")
    return CheckResult(name, True, f"python #! line, %post runs chmod +x {ENTRY_POINT}")


def check_test_section(defn: Definition) -> CheckResult:
    """``apptainer test`` is the organisers' first call; it must look at the entry point."""
    name = "%test"
    lines = defn.lines("test")
    if not lines:
        return CheckResult(name, False, "Apptainer.def has no %test section")
    text = "\n".join(lines)
    if ENTRY_POINT not in text:
        return CheckResult(name, False, f"%test does not check {ENTRY_POINT}")
    if "import" not in text:
        return CheckResult(name, False, "%test imports nothing (python -c 'import ...')")
    return CheckResult(name, True, f"%test checks {ENTRY_POINT} and the imports")


def check_pinned(defn: Definition, folder: Path) -> CheckResult:
    """The image runs without network, so what ``%post`` installs must be fixed in advance."""
    name = "pinned dependencies"
    req = next(
        (args[i + 1] for args in _pip_installs(defn) for i, a in enumerate(args[:-1])
         if a in ("-r", "--requirement", "-c", "--constraint")),
        None,
    )  # fmt: skip
    if req is None:
        return CheckResult(name, False, "%post installs no requirements file (pip install -r)")
    local = local_source(defn, folder, req)
    if local is None or not local.is_file():
        return CheckResult(name, False, f"{req} is not copied into the image from this folder")
    lines = [ln.split("#", 1)[0].strip() for ln in local.read_text(encoding="utf-8").splitlines()]
    reqs = [ln for ln in lines if ln]
    loose = [r for r in reqs if not _PINNED.match(r.split(";", 1)[0].strip())]
    if not reqs:
        return CheckResult(name, False, f"{local.name} lists no dependency")
    if loose:
        return CheckResult(name, False, f"{local.name}: {loose[0]!r} is not pinned (name==version)")
    return CheckResult(name, True, f"{local.name} pins {len(reqs)} distributions (name==version)")


def check_wheel(defn: Definition, folder: Path) -> CheckResult:
    """neurofm comes from the bundled wheel, installed without resolving more dependencies."""
    name = "neurofm wheel"
    wheel_args = [a for args in _pip_installs(defn) for a in args if a.endswith(".whl")]
    no_deps = any("--no-deps" in args for args in _pip_installs(defn) if any(
        a.endswith(".whl") for a in args))  # fmt: skip
    if not wheel_args:
        return CheckResult(name, False, "%post installs no .whl")
    src = local_source(defn, folder, str(Path(wheel_args[0]).parent))
    wheels = sorted(src.glob("neurofm-*.whl")) if src is not None and src.is_dir() else []
    if not wheels:
        return CheckResult(
            name, False, "wheels/ holds no neurofm-*.whl: the image has nothing to install"
        )
    try:
        with zipfile.ZipFile(wheels[-1]) as zf:
            has_predict = "neurofm/predict.py" in zf.namelist()
    except zipfile.BadZipFile:
        has_predict = False
    if not has_predict:
        return CheckResult(name, False, f"{wheels[-1].name} is not a neurofm wheel")
    if not no_deps:
        return CheckResult(name, False, "the wheel is installed without --no-deps (unpinned deps)")
    return CheckResult(name, True, f"{wheels[-1].name}, installed with --no-deps")


def check_model_files(defn: Definition, folder: Path) -> CheckResult:
    """The weights, config and self-test are the package's, byte for byte, and land in /app."""
    name = "model files"
    try:
        manifest = load_manifest(folder)
    except NeuroFMError as exc:
        return CheckResult(name, False, f"{MANIFEST_NAME}: {exc.problem}")
    for art in manifest.artifacts:
        path = folder / art.path
        if not path.is_file():
            return CheckResult(name, False, f"{art.path} is listed in the manifest but missing")
        if sha256_file(path) != art.sha256:
            return CheckResult(name, False, f"{art.path} does not match its sha256 in the manifest")
    for rel in ("model", MANIFEST_NAME):
        src = local_source(defn, folder, f"/app/{rel}")
        if src is None or not src.exists():
            return CheckResult(
                name, False, f"%files puts no {rel} at /app/{rel} (beside predict.py)"
            )
    return CheckResult(
        name, True, f"{len(manifest.artifacts)} files match the manifest's sha256; model/ at /app"
    )


def structural_checks(folder: Path) -> list[CheckResult]:
    """Every check that reads the folder only (nothing runs)."""
    path = folder / "Apptainer.def"
    if not path.is_file():
        return [CheckResult("definition", False, f"{path.name} is missing")]
    defn = parse_definition(path.read_text(encoding="utf-8"))
    return [
        check_header(defn),
        check_entry_point(defn, folder),
        check_io_dirs(defn),
        check_executable(defn, folder),
        check_test_section(defn),
        check_pinned(defn, folder),
        check_wheel(defn, folder),
        check_model_files(defn, folder),
    ]


# -- checks that run predict.py ------------------------------------------------------------------


def organiser_args(task: str, sequences: list[str], input_root: str, output: str) -> list[str]:
    """``predict.py``'s arguments as the organisers build them: one flag per sequence found."""
    args: list[str] = []
    for seq in ORGANISER_TASKS[task][1]:
        if seq in sequences:
            args += [f"--{seq}", f"{input_root}/{SESSION}/{seq}.nii.gz"]
    return [*args, "--output", output]


def output_name(task: str) -> str:
    """The organisers' output path for one subject: a number as text, a mask as NIfTI."""
    return f"{SUBJECT}.nii.gz" if task == "meningioma" else f"{SUBJECT}.txt"


def check_flags(help_text: str, task: str) -> CheckResult:
    name = "flags"
    want = [*ORGANISER_TASKS[task][1], "output"]
    have = set(re.findall(r"--([A-Za-z0-9_]+)", help_text))
    missing = [f"--{f}" for f in want if f not in have]
    if missing:
        return CheckResult(name, False, f"predict.py --help lists no {', '.join(missing)}")
    return CheckResult(name, True, "accepts " + " ".join(f"--{f}" for f in want))


def check_run(returncode: int, error: str, output: Path) -> CheckResult:
    name = "self-test case"
    if returncode != 0:
        return CheckResult(name, False, f"predict.py exited with {returncode}: {error}")
    if not output.is_file():
        return CheckResult(name, False, f"predict.py exited 0 but wrote no {output.name}")
    return CheckResult(name, True, f"predict.py exited 0 and wrote {output.name}")


def check_output_type(manifest: Manifest, output: Path, first_input: Path) -> CheckResult:
    """A number in a ``.txt`` (probability in [0, 1], age in range) or a 0/1 mask on the grid."""
    name = "output type"
    try:
        if manifest.outputs.kind == "mask":
            if not output.name.endswith(".nii.gz"):
                return CheckResult(name, False, f"{output.name}: a mask must be written as .nii.gz")
            mask, _ = read_mask(output, {1}, input_grid(first_input))
            return CheckResult(
                name, True, f"binary NIfTI mask on the input grid {mask.shape}, "
                f"{int(mask.sum())} voxels set"
            )  # fmt: skip
        value = read_number(output, manifest.number_range)
    except NeuroFMError as exc:
        return CheckResult(name, False, exc.problem)
    lo, hi = manifest.number_range or (float("-inf"), float("inf"))
    what = "probability" if manifest.outputs.kind == "probability" else "number"
    return CheckResult(
        name, True, f"{output.name} holds the {what} {value:.6g} in [{lo:g}, {hi:g}]"
    )


def check_reference(manifest: Manifest, output: Path, reference: Path) -> CheckResult:
    name = "self-test reference"
    try:
        cmp = compare_outputs(manifest, output, reference)
    except NeuroFMError as exc:
        return CheckResult(name, False, exc.problem)
    shown = "; ".join(ln.split(": ", 1)[-1] for ln in cmp.lines)
    return CheckResult(name, cmp.ok, shown)


def check_failing_case(returncode: int, wrote_output: bool, missing: str) -> CheckResult:
    """The organisers count a case by the exit code: a case that cannot run must not exit 0."""
    name = "failing case"
    if returncode == 0:
        return CheckResult(name, False, f"a missing input ({missing}) still exits 0")
    if wrote_output:
        return CheckResult(name, False, f"a missing input ({missing}) still wrote an output")
    return CheckResult(
        name, True, f"a missing input ({missing}) exits {returncode}, writes nothing"
    )


class Target(Protocol):
    """Where ``predict.py`` runs: the export folder in the sandbox, or the built image."""

    def inside(self, host: Path, mount: str) -> str:
        """How the host folder bound at ``mount`` (``/input``, ``/output``) is named inside."""
        ...

    def call(self, args: list[str], subject: Path, output_dir: Path) -> tuple[int, str]:
        """Run ``python /app/predict.py ARGS``; returns the exit code and the last error line."""
        ...

    def help_text(self, scratch: Path) -> str:
        """What ``python /app/predict.py --help`` prints."""
        ...


@dataclass(frozen=True)
class FolderTarget:
    """The export folder's ``predict.py`` in the neurofm sandbox: no network, inputs read-only.

    ``output_dir``'s parent is the sandbox's one writable work folder.
    """

    folder: Path
    timeout_s: float
    memory_mb: int | None
    device: str = "auto"

    def inside(self, host: Path, mount: str) -> str:
        return str(host)

    def call(self, args: list[str], subject: Path, output_dir: Path) -> tuple[int, str]:
        spec = SandboxSpec(
            argv=[sys.executable, str(self.folder / "predict.py"), *args],
            workdir=output_dir.parent,
            read_only=[self.folder, subject],
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            env={"NEUROFM_DEVICE": self.device},
        )
        result = run_sandboxed(spec)
        return result.returncode if not result.timed_out else 124, result.failure() or ""

    def help_text(self, scratch: Path) -> str:
        work = scratch / "help"
        work.mkdir()
        spec = SandboxSpec(
            argv=[sys.executable, str(self.folder / "predict.py"), "--help"],
            workdir=work,
            read_only=[self.folder],
            timeout_s=self.timeout_s,
        )
        return run_sandboxed(spec).stdout_path.read_text(encoding="utf-8", errors="replace")


def apptainer_exec_argv(
    apptainer: str, image: Path, command: list[str], binds: dict[Path, str], gpu: bool
) -> list[str]:
    """``apptainer exec [--nv] --bind HOST:MOUNT ... IMAGE COMMAND``, as the organisers call it."""
    argv = [apptainer, "exec", *(["--nv"] if gpu else [])]
    for host, mount in binds.items():
        argv += ["--bind", f"{host}:{mount}"]
    return [*argv, str(image), *command]


@dataclass(frozen=True)
class ImageTarget:
    """The built ``.sif``: the subject folder bound read-only at /input, the output at /output."""

    image: Path
    timeout_s: float
    apptainer: str = "apptainer"
    gpu: bool = False

    def inside(self, host: Path, mount: str) -> str:
        return mount

    def call(self, args: list[str], subject: Path, output_dir: Path) -> tuple[int, str]:
        argv = apptainer_exec_argv(
            self.apptainer,
            self.image,
            ["python", ENTRY_POINT, *args],
            {subject: "/input:ro", output_dir: "/output"},
            self.gpu,
        )
        return _run(argv, self.timeout_s)

    def help_text(self, scratch: Path) -> str:
        argv = apptainer_exec_argv(
            self.apptainer, self.image, ["python", ENTRY_POINT, "--help"], {}, False
        )
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return ""
        return proc.stdout


def _run(argv: list[str], timeout_s: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout_s:g} s"
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else ""


def stage_subject(sample: Path, task: str, session: Path) -> list[str]:
    """Lay the self-test case out as an organisers' session folder (``<seq>.nii.gz`` only, the
    one name their validator globs for); returns the sequences staged."""
    present = []
    for seq in ORGANISER_TASKS[task][1]:
        dst = session / f"{seq}.nii.gz"
        if (sample / f"{seq}.nii.gz").is_file():
            shutil.copyfile(sample / f"{seq}.nii.gz", dst)
        elif (sample / f"{seq}.nii").is_file():
            nib.save(nib.load(str(sample / f"{seq}.nii")), str(dst))
        else:
            continue
        present.append(seq)
    return present


def runtime_checks(folder: Path, manifest: Manifest, target: Target) -> list[CheckResult]:
    """Flags, the self-test case as the organisers call it, its output, and a failing case."""
    task = manifest.task
    sample = folder / manifest.selftest.sample
    with tempfile.TemporaryDirectory(prefix="neurofm-fomo25-") as tmp:
        scratch = Path(tmp)
        results = [check_flags(target.help_text(scratch), task)]
        subject = scratch / SUBJECT
        (subject / SESSION).mkdir(parents=True)
        present = stage_subject(sample, task, subject / SESSION)
        if not present:
            return [*results, CheckResult("self-test case", False, f"{sample} holds no input")]
        out_dir = scratch / "work" / "output"
        out_dir.mkdir(parents=True)
        out_name = output_name(task)
        args = organiser_args(
            task,
            present,
            target.inside(subject, "/input"),
            f"{target.inside(out_dir, '/output')}/{out_name}",
        )
        code, error = target.call(args, subject, out_dir)
        run = check_run(code, error, out_dir / out_name)
        results.append(run)
        if run.ok:
            first = subject / SESSION / f"{present[0]}.nii.gz"
            results.append(check_output_type(manifest, out_dir / out_name, first))
            results.append(
                check_reference(manifest, out_dir / out_name, folder / manifest.selftest.reference)
            )
        fail_dir = scratch / "work2" / "output"
        fail_dir.mkdir(parents=True)
        bad = list(args)
        bad[1] = bad[1].replace(f"/{present[0]}.nii.gz", f"/missing_{present[0]}.nii.gz")
        bad[-1] = f"{target.inside(fail_dir, '/output')}/{out_name}"
        code, _ = target.call(bad, subject, fail_dir)
        missing = f"{bad[0]} .../{Path(bad[1]).name}"
        results.append(check_failing_case(code, (fail_dir / out_name).exists(), missing))
    return results


def _with_runtime(
    folder: Path, make_target: Callable[[Manifest], Target], before: list[CheckResult]
) -> list[CheckResult]:
    if not all(r.ok for r in before):
        return before  # nothing runs on a folder the organisers would already refuse
    manifest = load_manifest(folder)
    return [*before, *runtime_checks(folder, manifest, make_target(manifest))]


def check_folder(folder: Path, *, device: str = "auto") -> list[CheckResult]:
    """The organisers' checks on an export folder, without Apptainer (predict.py sandboxed)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise NeuroFMError(folder, "export folder does not exist")

    def target(m: Manifest) -> Target:
        memory = m.runtime.memory_mb if device == "cpu" else None  # CUDA reserves huge ranges
        return FolderTarget(folder, m.runtime.timeout_s, memory, device)

    return _with_runtime(folder, target, structural_checks(folder))


def image_checks(image: Path, apptainer: str, timeout_s: float) -> list[CheckResult]:
    """``apptainer test`` and the required paths, asked of the image as the organisers ask."""
    code, error = _run([apptainer, "test", str(image)], timeout_s)
    said = f"exits {code}" + (f": {error}" if error else "")
    results = [CheckResult("apptainer test", code == 0, f"apptainer test {image.name} {said}")]
    missing = []
    for path in REQUIRED_PATHS:
        flag = "-f" if path.endswith(".py") else "-d"
        argv = apptainer_exec_argv(apptainer, image, ["test", flag, path], {}, False)
        if _run(argv, timeout_s)[0] != 0:
            missing.append(path)
    reason = f"missing {', '.join(missing)}" if missing else "has " + ", ".join(REQUIRED_PATHS)
    results.append(CheckResult("image paths", not missing, reason))
    return results


def check_image(
    folder: Path, image: Path, *, apptainer: str = "apptainer", gpu: bool = False
) -> list[CheckResult]:
    """The same checks with ``predict.py`` run inside the built image via ``apptainer exec``."""
    folder = Path(folder).resolve()
    before = structural_checks(folder)
    if all(r.ok for r in before):
        timeout = load_manifest(folder).runtime.timeout_s
        before += image_checks(Path(image), apptainer, timeout)

    def target(m: Manifest) -> Target:
        return ImageTarget(Path(image), m.runtime.timeout_s, apptainer, gpu)

    return _with_runtime(folder, target, before)


def first_failure(results: list[CheckResult]) -> CheckResult | None:
    return next((r for r in results if not r.ok), None)
