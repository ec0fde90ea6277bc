"""`neurofm report`: the static HTML folder from a results folder (non-browser checks).

``write_results_folder`` builds a small but complete results folder (three tasks, three models,
two sites, learning curves, run info and two viewer cases with masks); the browser test reuses it.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurofm.errors import NeuroFMError
from neurofm.report import build_report
from neurofm.report.build import report_model
from neurofm.report.inputs import load_inputs
from neurofm.report.model import ReportModel
from neurofm.report.viewer import encode_case, read_viewer_cases

MODELS = ("contrastive-pretrained", "mae-pretrained", "scratch")
SKILL = {"contrastive-pretrained": 0.7, "mae-pretrained": 0.85, "scratch": 0.45}
SITES = ("site_b", "site_c")
N_BOOT = 200


def _nifti(path: Path, data: np.ndarray, dtype: type = np.float32) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(dtype), np.diag([4.0, 4.0, 4.0, 1.0])), str(path))
    return path.name


def _viewer_cases(folder: Path, rng: np.random.Generator) -> list[dict]:
    """Two meningioma cases: a blurry 'head' with a bright ball, reference and predicted masks."""
    shape = (36, 40, 32)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    centre = np.array(shape)[:, None, None, None] / 2
    head = np.exp(-(((grid - centre) / (np.array(shape)[:, None, None, None] / 3)) ** 2).sum(0))
    cases = []
    for k, site in enumerate(SITES):
        case = f"{site}-000"
        lesion_at = np.array([24 - 4 * k, 20, 16])[:, None, None, None]
        dist = np.sqrt(((grid - lesion_at) ** 2).sum(0))
        ref = dist < 5
        base = folder / "volumes" / case
        images = {}
        for seq, contrast in (("flair", 1.0), ("dwi_b1000", 0.6), ("t2s", -0.3)):
            img = 100 * head + 60 * contrast * ref + rng.normal(0, 3, shape)
            images[seq] = f"volumes/{case}/{_nifti(base / f'{seq}.nii.gz', img)}"
        _nifti(base / "label.nii.gz", ref, np.uint8)
        preds = {}
        for j, model in enumerate(MODELS):
            pred = np.sqrt(((grid - lesion_at - 2 * j + 2) ** 2).sum(0)) < 5 - j / 2
            preds[model] = f"volumes/{case}/{_nifti(base / f'pred-{model}.nii.gz', pred, np.uint8)}"
        cases.append(
            {
                "task": "meningioma",
                "case": case,
                "site": site,
                "images": images,
                "reference": f"volumes/{case}/label.nii.gz",
                "predictions": preds,
            }
        )
    return cases


def write_results_folder(
    root: Path,
    seed: int = 0,
    n_per_site: int = 10,
    tasks: tuple[str, ...] = ("meningioma", "infarct", "brain_age"),
) -> Path:
    """A complete results folder: results.csv, learning_curves.csv, run.json, viewer.json."""
    rng = np.random.default_rng(seed)
    folder = root / "results"
    folder.mkdir(parents=True)
    rows = []
    for site in SITES:
        for i in range(n_per_site):
            case = f"{site}-{i:03d}"
            label = i % 2
            age = float(rng.uniform(20, 85))
            for model in MODELS:
                s = SKILL[model]
                dice = float(np.clip(s + rng.normal(0, 0.1), 0, 1))
                nsd = float(np.clip(s + 0.05 + rng.normal(0, 0.1), 0, 1))
                hd95 = float(abs(10 * (1 - s) + rng.normal(0, 1.5)))
                assd = hd95 / 3
                prob = float(
                    1 / (1 + np.exp(-(3 * (s - 0.35) * (2 * label - 1) + rng.normal(0, 1.0))))
                )
                pred = age + float(rng.normal(0, 12 * (1.1 - s)))
                for task, metric, value in (
                    ("meningioma", "dice", dice),
                    ("meningioma", "nsd", nsd),
                    ("meningioma", "hd95", hd95),
                    ("meningioma", "assd", assd),
                    ("infarct", "label", label),
                    ("infarct", "prob", prob),
                    ("brain_age", "age", age),
                    ("brain_age", "pred", pred),
                    ("brain_age", "abs_error", abs(pred - age)),
                ):
                    if task in tasks:
                        rows.append((model, task, site, case, metric, value))
    pd.DataFrame(rows, columns=["model", "task", "site", "case", "metric", "value"]).to_csv(
        folder / "results.csv", index=False
    )
    curves = [
        (model, "meningioma", shots, "dice", v, v - 0.06, v + 0.06)
        for model in MODELS
        for shots in (2, 4, 8, 16)
        for v in [SKILL[model] * (1 - 0.5 / np.sqrt(shots))]
    ]
    pd.DataFrame(
        curves, columns=["model", "task", "shots", "metric", "value", "ci_low", "ci_high"]
    ).to_csv(folder / "learning_curves.csv", index=False)
    (folder / "run.json").write_text(
        json.dumps({"benchmark": "synth", "preset": "tiny", "seed": seed, "times": {"total_s": 42}})
    )
    (folder / "viewer.json").write_text(json.dumps(_viewer_cases(folder, rng)))
    return root


class _Links(HTMLParser):
    """Collects every src/href attribute and the rows of each table by id."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.rows: dict[str, int] = {}
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "table":
            self._table = a.get("id") or ""
            self.rows.setdefault(self._table, 0)
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.rows[self._table] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_results_folder(tmp_path_factory.mktemp("run"))
    index = build_report(run, tmp_path_factory.mktemp("report"), n_boot=N_BOOT)
    return index.parent


def test_report_files_and_local_links(report: Path) -> None:
    for name in ("index.html", "viewer.html", "assets/report.css", "assets/viewer.js"):
        assert (report / name).is_file(), name
    assert (report / "assets/niivue.umd.js").stat().st_size > 1_000_000
    for page in ("index.html", "viewer.html"):
        links = _parse(report / page).links
        assert links, page
        for link in links:
            assert not re.match(r"^(https?:)?//", link), f"{page} links to {link}"
            target = link.split("#")[0]
            if target:
                assert (report / target).is_file(), f"{page}: {link} missing"
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    for task in ("meningioma", "infarct", "brain_age"):
        assert f"{task}-sites.png" in figures
        assert f"{task}-rank-stability.png" in figures
        assert f"{task}-vs-scratch.png" in figures
    assert "meningioma-learning-curve-dice.png" in figures
    assert not list(report.parent.glob(f".{report.name}.*")), "temporary folder left behind"


def test_leaderboards_have_a_row_per_model(report: Path) -> None:
    parsed = _parse(report / "index.html")
    for task in ("meningioma", "infarct", "brain_age"):
        assert parsed.rows[f"leaderboard-{task}"] == len(MODELS)
    assert parsed.rows["overall-ranking"] == len(MODELS)
    text = (report / "index.html").read_text()
    assert "Synthetic data" in text
    assert "Mean absolute error" in text and "years" in text


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ReportModel:
    run = write_results_folder(tmp_path_factory.mktemp("run-model"))
    inputs = load_inputs(run / "results")
    return report_model(inputs, tmp_path_factory.mktemp("figs"), "t", N_BOOT, 0)


def test_ranking_order_follows_skill(model: ReportModel) -> None:
    """The best model (by construction) leads every leaderboard; scratch is last overall."""
    assert sorted(s.task for s in model.tasks) == ["brain_age", "infarct", "meningioma"]
    for section in model.tasks:
        assert section.models == ["mae-pretrained", "contrastive-pretrained", "scratch"]
        assert [r.ranks[0] for r in section.rows] == [1, 2, 3]  # aggregate, then rank
    assert model.overall is not None
    assert [r.model for r in model.overall.rows][-1] == "scratch"
    assert model.overall.task_titles == [s.title for s in model.tasks]


def test_model_numbers_match_the_results(model: ReportModel) -> None:
    """Primary metrics recomputed from results.csv by hand: MAE and Dice are case means,
    AUROC comes from scikit-learn; every interval holds its value."""
    from sklearn.metrics import roc_auc_score

    df = pd.read_csv(model.overview.folder + "/results.csv")
    by_task = {s.task: s for s in model.tasks}
    for row in by_task["brain_age"].rows:
        mine = df[(df.model == row.model) & (df.metric == "abs_error")]["value"].mean()
        assert row.primary.value == pytest.approx(mine)
    for row in by_task["meningioma"].rows:
        mine = df[(df.model == row.model) & (df.metric == "dice")]["value"].mean()
        assert row.primary.value == pytest.approx(mine)
        assert row.primary.decimals == 3 and len(row.others) == 3  # nsd, hd95, assd
    for row in by_task["infarct"].rows:
        t = df[(df.model == row.model) & (df.task == "infarct")].pivot(
            index=["site", "case"], columns="metric", values="value"
        )
        assert row.primary.value == pytest.approx(roc_auc_score(t["label"], t["prob"]))
    for section in model.tasks:
        assert section.n_cases == 2 * 10
        assert [(a.first.key, a.second.key) for a in section.agreement] == [
            ("aggregate", "case"), ("aggregate", "test"), ("case", "test"),
        ]  # fmt: skip
        assert all(-1 <= a.tau <= 1 for a in section.agreement)
        for row in section.rows:
            for iv in (row.primary, *row.others):
                assert iv.low <= iv.value <= iv.high
            assert 0 <= row.p_rank1 <= 1 and row.n_missing == 0
        # every resample has a first place (tied models share it)
        assert sum(r.p_rank1 for r in section.rows) >= 1.0 - 1e-9


def test_model_overview(model: ReportModel) -> None:
    o = model.overview
    assert o.synthetic and o.models == sorted(MODELS) and o.n_boot == N_BOOT
    assert {t.task: t.per_site for t in o.test_data}["infarct"] == {"site_b": 10, "site_c": 10}
    assert o.run_settings["times.total_s"] == "42" and o.run_settings["preset"] == "tiny"
    assert [g.metric for g in o.glossary if g.task_title == "Meningioma segmentation"] == [
        "dice", "nsd", "hd95", "assd",
    ]  # fmt: skip
    assert {g.metric: g.better for g in o.glossary}["hd95"] == "lower"
    assert model.n_viewer_cases == 2
    assert set(model.colours) >= set(MODELS)


def test_extra_page_is_rendered_and_linked(tmp_path: Path) -> None:
    """A page from another package's template folder, on the shared layout and navigation."""
    from neurofm.report.render import ReportPage

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "study.html").write_text(
        '{% extends "base.html" %}{% block body %}<p id="n">{{ data.n|num(1) }} {{ data.who }}</p>'
        "{% endblock %}"
    )
    run = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("brain_age",))
    page = ReportPage(
        "study.html", "Study", "study.html", {"data": {"n": 2.5, "who": "<b>"}}, templates
    )
    index = build_report(run, tmp_path / "rep", n_boot=100, extra_pages=[page])
    study = (index.parent / "study.html").read_text()
    assert '<p id="n">2.5 &lt;b&gt;</p>' in study  # formatted by the shared filter, escaped
    for html_page in (index, index.parent / "study.html", index.parent / "viewer.html"):
        assert "study.html" in _parse(html_page).links, html_page.name


def test_viewer_index_lists_cases_with_overlays(report: Path) -> None:
    html = (report / "viewer.html").read_text()
    blob = html.split('id="case-index">')[1].split("</script>")[0]
    index = json.loads(blob)
    assert [c["case"] for c in index] == ["site_b-000", "site_c-000"]
    first = index[0]
    assert first["sequences"] == ["flair", "dwi_b1000", "t2s"]
    assert [o["key"] for o in first["overlays"]] == ["reference", *MODELS]
    assert first["metrics"]["scratch"]["dice"] >= 0
    script = (report / first["script"]).read_text()
    assert script.startswith("window.NEUROFM_CASES")


def test_case_encoding_round_trips_and_shrinks(tmp_path: Path) -> None:
    """Embedded volumes decode to the original (masks exactly); big cases are coarsened."""
    import base64
    import gzip

    root = write_results_folder(tmp_path, n_per_site=2)
    cases = read_viewer_cases(root / "results" / "viewer.json")
    encoded = encode_case(cases[0])
    assert encoded["factor"] == 1
    raw = gzip.decompress(base64.b64decode(encoded["reference"]))
    img = nib.Nifti1Image.from_bytes(raw)
    original = nib.load(str(cases[0].reference)).get_fdata()
    np.testing.assert_array_equal(np.asarray(img.dataobj), original)
    flair = nib.Nifti1Image.from_bytes(
        gzip.decompress(base64.b64decode(encoded["images"]["flair"]))
    )
    np.testing.assert_allclose(
        flair.get_fdata(), nib.load(str(cases[0].images["flair"])).get_fdata(), atol=0.05
    )
    small = encode_case(cases[0], max_bytes=20_000)
    assert small["factor"] > 1
    coarse = nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(small["reference"])))
    assert coarse.shape[0] < original.shape[0]
    assert np.asarray(coarse.dataobj).max() == 1  # the lesion survives coarsening


def test_refuses_non_empty_out_unless_overwrite(tmp_path: Path) -> None:
    run = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("brain_age",))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(NeuroFMError, match="not empty"):
        build_report(run, out, n_boot=100)
    assert (out / "keep.txt").read_text() == "mine"
    index = build_report(run, out, overwrite=True, n_boot=100)
    assert index == out / "index.html" and index.is_file()
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]  # no temp/old folders
    with pytest.raises(NeuroFMError, match="results being reported"):
        build_report(run / "results", run, overwrite=True, n_boot=100)


def test_cli_prints_index_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neurofm.cli import main  # imports every command (torch …): only where needed

    run = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("brain_age",))
    (run / "results" / "viewer.json").unlink()
    main(["report", str(run / "results"), "--out", str(tmp_path / "rep"), "--n-boot", "100"])
    printed = capsys.readouterr().out
    assert printed == f"{(tmp_path / 'rep' / 'index.html').resolve()}\n"  # only the path
    assert not (tmp_path / "rep" / "viewer.html").exists()
    assert "No cases were listed" in Path(printed.strip()).read_text()


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neurofm.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert exc.value.code == 2
    assert "results.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("model,task,site\nscratch,infarct,a\n", "columns"),
        ("model,task,site,case,metric,value\nscratch,infarct,a,1,prob,abc\n", "finite number"),
        ("", "CSV"),
    ],
)
def test_malformed_results_csv_names_the_file(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "results.csv").write_text(content)
    with pytest.raises(NeuroFMError, match=problem) as exc:
        build_report(tmp_path, tmp_path / "rep")
    assert exc.value.where is not None and exc.value.where.endswith("results.csv")
    assert not (tmp_path / "rep").exists()


def test_missing_results_csv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    with pytest.raises(NeuroFMError, match=r"no results\.csv"):
        build_report(tmp_path, tmp_path / "rep")


def test_bad_optional_inputs_name_their_file(tmp_path: Path) -> None:
    run = write_results_folder(tmp_path / "run", n_per_site=4)
    res = run / "results"
    viewer = json.loads((res / "viewer.json").read_text())
    viewer[0]["predictions"]["scratch"] = "volumes/nope.nii.gz"
    (res / "viewer.json").write_text(json.dumps(viewer))
    with pytest.raises(NeuroFMError, match=r"nope\.nii\.gz does not exist") as exc:
        build_report(run, tmp_path / "rep", n_boot=100)
    assert "viewer.json" in str(exc.value)
    (res / "viewer.json").unlink()
    (res / "learning_curves.csv").write_text("model,task,shots\nscratch,infarct,4\n")
    with pytest.raises(NeuroFMError, match="missing column") as exc:
        build_report(run, tmp_path / "rep", n_boot=100)
    assert str(exc.value.where).endswith("learning_curves.csv")
    (res / "learning_curves.csv").unlink()
    (res / "run.json").write_text("[1, 2]")
    with pytest.raises(NeuroFMError, match="JSON object") as exc:
        build_report(run, tmp_path / "rep", n_boot=100)
    assert str(exc.value.where).endswith("run.json")
