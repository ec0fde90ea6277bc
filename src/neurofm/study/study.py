"""``neurofm study``: the grid over seeds, the freeze rule, and the study's outputs.

A study folder belongs to one recipe (by hash) and one phase. Development studies run any seeds
that are not confirmation seeds; ``--confirm`` runs only the recipe's confirmation seeds, and
once the first confirmation results exist in a folder, running or reporting there with a
recipe of another hash is refused — the recipe is frozen by its results. Outputs:

- ``rows.csv`` and ``rows.parquet``: tidy per-case rows ``seed, arm, task, site, case, metric,
  value`` plus ``domain``;
- ``estimates.csv``: primary metric per task, domain and arm (mean over seeds, hierarchical CI);
- ``comparisons.csv``: paired effects with CIs, raw and Holm-adjusted p-values;
- ``findings.csv`` / ``summary.md``: the FOMO25 findings as sentences and the headline table;
- ``report/index.html``: the same as a page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from neurofm.atomic import write_json_atomic, write_text_atomic
from neurofm.errors import NeuroFMError
from neurofm.runfiles import code_revision
from neurofm.study.analysis import (
    IN_DOMAIN,
    OUT_OF_DOMAIN,
    compare,
    comparison_family,
    domain_of,
    estimates,
    findings,
)
from neurofm.study.grid import Grid
from neurofm.study.recipe import OBJECTIVES, Recipe
from neurofm.synth.benchmark import get_preset
from neurofm.train.distributed import init_distributed

STATE = "study.json"
GAIN = "pretrained minus this (OOD)"
DEVELOPMENT, CONFIRMATION = "development", "confirmation"


def choose_seeds(recipe: Recipe, seeds: Sequence[int] | None, confirm: bool) -> tuple[int, ...]:
    """The seeds to run: confirmation seeds only with ``confirm``, never otherwise."""
    if confirm:
        chosen = tuple(seeds) if seeds else recipe.confirmation
        stray = [s for s in chosen if s not in recipe.confirmation]
        if stray:
            raise NeuroFMError(
                recipe.source, f"--confirm runs confirmation seeds only; {stray} are not among "
                f"{list(recipe.confirmation)}",
            )  # fmt: skip
        return chosen
    chosen = tuple(seeds) if seeds else recipe.development
    held = [s for s in chosen if s in recipe.confirmation]
    if held:
        raise NeuroFMError(
            recipe.source, f"seed(s) {held} are confirmation seeds: run them with --confirm"
        )
    return chosen


def check_folder(out: Path, recipe: Recipe, phase: str) -> dict[str, Any] | None:
    """The folder's study state, after refusing another recipe, phase or a non-study folder."""
    state_file = out / STATE
    if not state_file.exists():
        if out.exists() and any(out.iterdir()):
            raise NeuroFMError(out, "not empty and not a study folder; choose a new --out")
        return None
    try:
        state = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NeuroFMError(state_file, f"unreadable study state ({e})") from None
    if state.get("recipe_hash") != recipe.hash:
        if state.get("confirmation_first_written"):
            raise NeuroFMError(
                state_file, f"confirmation results were made with recipe {state.get('recipe_hash')}"
                f"; this recipe is {recipe.hash}: a recipe is frozen once confirmed — confirm the "
                "new one into a new folder (docs/study.md lists every confirmation)",
            )  # fmt: skip
        raise NeuroFMError(
            state_file, f"written by recipe {state.get('recipe_hash')}, not {recipe.hash}; "
            "use a new --out",
        )  # fmt: skip
    if state.get("phase") != phase:
        raise NeuroFMError(state_file, f"holds {state.get('phase')} results, not {phase}")
    return dict(state)


def check_shots(grid: Grid, recipe: Recipe, data: Path | None) -> None:
    """Refuse a shot count larger than a task's training split before anything is written."""
    for task in grid.tasks:
        if data is None:
            n = get_preset(recipe.preset).train.get(task, 0)
            where = f"synth preset {recipe.preset}"
        else:
            labels = data / task / "train" / "labels.csv"
            if not labels.exists():
                raise NeuroFMError(labels, f"missing: {task} needs a labelled train split")
            n, where = len(pd.read_csv(labels)), str(labels)
        for shots in grid.shots:
            if shots is not None and shots > n:
                raise NeuroFMError(where, f"--shots {shots} but {task} has {n} training cases")


@dataclass
class StudyResult:
    """What a finished study wrote."""

    out: Path
    rows: pd.DataFrame
    estimates: pd.DataFrame
    comparisons: pd.DataFrame
    findings: pd.DataFrame


def run_study(
    out: Path,
    recipe: Recipe,
    grid: Grid,
    seeds: Sequence[int] | None = None,
    *,
    confirm: bool = False,
    data: Path | None = None,
    workers: int = 2,
    device: str = "cpu",
    console: Console | None = None,
) -> StudyResult:
    """Run (or resume) every seed of the grid, then analyse and write the outputs."""
    from neurofm.study.runner import SeedRun

    console = console or Console()
    out = Path(out)
    phase = CONFIRMATION if confirm else DEVELOPMENT
    chosen = choose_seeds(recipe, seeds, confirm)
    check_shots(grid, recipe, data)
    state = check_folder(out, recipe, phase)
    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {
            "recipe_hash": recipe.hash, "recipe_name": recipe.name, "phase": phase,
            "code_revision": code_revision(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "confirmation_first_written": None,
            "data": str(data) if data else f"synthetic benchmark ({recipe.preset}, {recipe.shift})",
        }  # fmt: skip
        write_text_atomic(out / "recipe.json", json.dumps(_recipe_record(recipe), indent=2) + "\n")
    state.setdefault("seeds", [])
    write_json_atomic(out / STATE, state)
    dist = init_distributed(device)
    t0 = time.perf_counter()
    frames: list[pd.DataFrame] = []
    sources: dict[str, set[str]] = {}
    # seeds run earlier into this folder are read back (their stages are all reused), so a
    # folder's tables always cover every seed it holds
    for seed in [*chosen, *(s for s in state["seeds"] if s not in chosen)]:
        seed_run = SeedRun(out / "seeds" / str(seed), seed, recipe, dist, console, workers, data)
        frames.append(seed_run.run(grid))
        for task in grid.tasks:
            sources.setdefault(task, set()).update(seed_run.source_sites(task))
        if seed not in state["seeds"]:  # a seed counts once all its units are scored
            state["seeds"] = sorted([*state["seeds"], seed])
            if confirm and not state.get("confirmation_first_written"):
                state["confirmation_first_written"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write_json_atomic(out / STATE, state)
    rows = pd.concat(frames, ignore_index=True)
    rows["domain"] = domain_of(rows, sources)
    result = analyse(out, rows, grid, recipe, synthetic=data is None)
    state.setdefault("invocations", []).append(
        {"seeds_run": list(chosen), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
         "wall_time_s": round(time.perf_counter() - t0, 1)}
    )  # fmt: skip
    write_json_atomic(out / STATE, state)
    return result


def _recipe_record(recipe: Recipe) -> dict[str, Any]:
    return {"hash": recipe.hash, **asdict(recipe)}


def arm_labels(grid: Grid, recipe: Recipe) -> list[str]:
    """Result labels of the grid's arms, in table order (models, then baselines)."""
    labels = [u.label for u in grid.units(recipe)]
    return list(dict.fromkeys(labels))


def analyse(
    out: Path, rows: pd.DataFrame, grid: Grid, recipe: Recipe, synthetic: bool = True
) -> StudyResult:
    """Estimates, the comparison family with Holm's adjustment, findings; written to ``out``."""
    from neurofm.study.page import write_page

    labels = arm_labels(grid, recipe)
    est = estimates(rows, labels, recipe.n_boot, seed=0)
    objective_arms = [a for a in grid.arms if a in OBJECTIVES]
    extra_backbones = [b for b in grid.backbones if b != recipe.backbone]
    pairs = []
    for shots in grid.shots:
        suffix = f"/n{shots}" if shots is not None else ""
        pairs += comparison_family(
            grid.tasks, grid.arms, objective_arms, extra_backbones, rows, suffix
        )
    comp = compare(rows, pairs, recipe.n_boot, seed=0)
    found = findings(comp, grid.tasks)
    rows_out = rows.copy()
    write_text_atomic(out / "rows.csv", rows_out.to_csv(index=False))
    _write_parquet(rows_out, out / "rows.parquet")
    write_text_atomic(out / "estimates.csv", est.to_csv(index=False))
    write_text_atomic(out / "comparisons.csv", comp.to_csv(index=False))
    write_text_atomic(out / "findings.csv", found.to_csv(index=False))
    write_text_atomic(out / "summary.md", summary_markdown(est, comp, found, recipe, labels))
    seeds = sorted(int(s) for s in rows.seed.unique())
    write_page(out / "report", est, comp, found, recipe, labels, seeds, synthetic)
    return StudyResult(out, rows, est, comp, found)


def _write_parquet(rows: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    rows.to_parquet(tmp, index=False)
    tmp.replace(path)


def _interval(value: float, low: float, high: float, signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    value, low, high = (round(v, 3) + 0.0 for v in (value, low, high))  # no "-0.000"
    return f"{value:{f}} [{low:{f}}, {high:{f}}]"


def headline(est: pd.DataFrame, comp: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """One row per task and arm: in-domain and out-of-domain value [CI], and pretrained minus
    that arm out of domain with its Holm-adjusted p."""
    out = []
    for task in dict.fromkeys(est.task):
        of_task = est[est.task == task]
        versus = comp[(comp.task == task) & (comp.domain == OUT_OF_DOMAIN)] if len(comp) else comp
        for label in labels:
            cells: dict[str, str] = {"task": str(task), "arm": label}
            for domain in (IN_DOMAIN, OUT_OF_DOMAIN):
                sel = of_task[(of_task.arm == label) & (of_task.domain == domain)]
                cells[domain] = "-"
                if len(sel):
                    r = sel.iloc[0]
                    cells[domain] = _interval(r.value, r.ci_low, r.ci_high)
                    cells["metric"] = str(r.metric)
            cells.setdefault("metric", "")
            vs = versus[(versus.a == "pretrained") & (versus.b == label)] if len(versus) else versus
            cells[GAIN] = ""
            if len(vs):
                r = vs.iloc[0]
                p = f"p_holm {r.p_holm:.3g}"
                cells[GAIN] = f"{_interval(r.effect, r.ci_low, r.ci_high, signed=True)}, {p}"
            out.append(cells)
    return pd.DataFrame(out)


def summary_markdown(
    est: pd.DataFrame,
    comp: pd.DataFrame,
    found: pd.DataFrame,
    recipe: Recipe,
    labels: Sequence[str],
) -> str:
    """The headline table and findings as Markdown (what the README quotes)."""
    table = headline(est, comp, labels)
    seeds = sorted(set(int(n) for n in est.n_seeds)) if not est.empty else []
    lines = [
        f"Recipe `{recipe.name}` (hash `{recipe.hash}`), {', '.join(map(str, seeds))} seed(s); "
        "mean over seeds of each seed's metric, 95 % hierarchical (seed, then case) bootstrap "
        "intervals; out-of-domain pools the target sites only. Effects: + favours pretrained.",
        "",
        "| task | arm | metric | in-domain | out-of-domain | pretrained minus this (OOD) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['task']} | {r['arm']} | {r['metric']} | {r[IN_DOMAIN]} | {r[OUT_OF_DOMAIN]} "
            f"| {r[GAIN]} |"
        )
    lines += ["", "| finding | task | result |", "|---|---|---|"]
    lines += [f"| {r.finding} | {r.task} | {r.text} |" for r in found.itertuples()]
    return "\n".join(lines) + "\n"
