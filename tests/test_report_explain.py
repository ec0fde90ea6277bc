"""The report's Explanations page from `neurofm explain-table` folders.

The fast tests build an explain-table folder from the table module's own summary and writers
(table.csv, cases.csv) plus hand-made maps; the slow one runs explain-table on the tiny
benchmark and then `neurofm report --explain` on its output.
"""

from __future__ import annotations

import base64
import csv
import gzip
import json
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from neurofm.errors import NeuroFMError
from neurofm.explain.run import write_rows
from neurofm.explain.table import COLUMNS, MANIFEST, CaseScore, summarise
from neurofm.report import build_report
from neurofm.report.explain import explain_page, read_explain
from test_report import write_results_folder
from test_report_browser import ARTIFACTS, _pixels, _severe, _wait, driver  # noqa: F401

torch.set_num_threads(1)

AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
SHAPE = (12, 14, 10)
ARMS = ("pretrained", "scratch")
METHODS = ("gradcam", "smoothgrad")


def _save(path: Path, data: np.ndarray, dtype: type = np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(dtype), AFFINE), str(path))


def make_explain_folder(folder: Path, task: str = "infarct") -> Path:
    """An explain-table output: two arms, two methods, three scored cases, the first one shown
    (images, reference, one map per arm and method, a picture) and one CAManim GIF."""
    rng = np.random.default_rng(1)
    cases = [f"{task}_test_sitea_{i:04d}" for i in range(3)]
    scores = [
        CaseScore(arm, case, m, *rng.uniform(-0.2, 1.0, 4).tolist(), False)
        for arm in ARMS
        for case in cases
        for m in METHODS
    ]
    folder.mkdir(parents=True)
    write_rows(folder / "cases.csv", [asdict(s) for s in scores])
    write_rows(folder / "table.csv", summarise(scores, n_boot=100, seed=0))
    shown = cases[0]
    sub = f"maps/{shown}"
    lesion = np.zeros(SHAPE, bool)
    lesion[4:8, 5:9, 3:6] = True
    _save(folder / sub / "flair.nii.gz", rng.normal(100, 10, SHAPE))
    _save(folder / sub / "reference.nii.gz", lesion, np.uint8)
    maps = {}
    for arm in ARMS:
        for m in METHODS:
            value = rng.normal(0, 1, SHAPE)
            value[6, 7, 4] = 5.0  # the maximum, inside the lesion
            _save(folder / sub / f"{arm}_{m}.nii.gz", value)
            maps[f"{arm} {m}"] = f"{sub}/{arm}_{m}.nii.gz"
    frames = [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(3)]
    gif = f"camanim_pretrained_{shown}.gif"
    frames[0].save(folder / gif, save_all=True, append_images=frames[1:])
    png = f"pretrained_{shown}_gradcam.png"
    Image.new("RGB", (8, 8)).save(folder / png)
    manifest = {
        "task": task,
        "command": "neurofm explain-table --model pretrained=RUN_A --model scratch=RUN_B",
        "arms": list(ARMS),
        "methods": list(METHODS),
        "animations": [{"src": gif, "caption": f"pretrained: {shown}, Grad-CAM"}],
        "cases": [
            {
                "case": shown,
                "split": "test_sitea",
                "images": {"flair": f"{sub}/flair.nii.gz"},
                "reference": f"{sub}/reference.nii.gz",
                "maps": maps,
                "constant": [],
                "pictures": [{"src": png, "caption": png[:-4]}],
            }
        ],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _case_index(html: str) -> list[dict]:
    found = re.search(r'<script type="application/json" id="case-index">(.*?)</script>', html, re.S)
    assert found is not None
    return json.loads(found.group(1))


def _embedded(report: Path, script: str) -> dict:
    last = (report / script).read_text().strip().splitlines()[-1]  # window.X[id] = {...};
    return json.loads(last.split("] = ", 1)[1].rstrip(";"))


def test_page_data_is_the_table_with_each_arms_best_marked(tmp_path: Path) -> None:
    folder = make_explain_folder(tmp_path / "explain_infarct")
    table = list(csv.DictReader((folder / "table.csv").open()))
    section = read_explain(folder).section
    assert [(r.arm, r.method) for r in section.rows] == [(t["arm"], t["method"]) for t in table]
    for row, t in zip(section.rows, table, strict=True):
        assert row.cases == 3
        for cell, c in zip(row.cells, COLUMNS, strict=True):
            assert (cell.value, cell.low, cell.high) == pytest.approx(
                (float(t[c]), float(t[c + "_low"]), float(t[c + "_high"]))
            )
    for arm in ARMS:  # by hand: the highest value per column, the lowest correlation
        mine = [r for r in section.rows if r.arm == arm]
        for j, c in enumerate(COLUMNS):
            values = [r.cells[j].value for r in mine]
            want = min(values) if c == "randomisation_corr" else max(values)
            assert [r.best[j] for r in mine] == [v == want for v in values]
    assert section.viewer_cases == ["infarct_test_sitea_0000"]


def test_report_gets_explanations_page_with_rows_gif_and_map_overlays(tmp_path: Path) -> None:
    results = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("meningioma",))
    folder = make_explain_folder(tmp_path / "explain_infarct")
    page = explain_page([folder])
    assert page is not None
    out = tmp_path / "report"
    build_report(results, out, n_boot=100, extra_pages=[page])
    html = (out / "explain.html").read_text()
    assert 'href="explain.html">Explanations' in (out / "index.html").read_text()
    # one table row per arm x method, with the table's numbers (3 decimals)
    body = html.split('<table class="explain">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == 1 + len(ARMS) * len(METHODS)
    table = list(csv.DictReader((folder / "table.csv").open()))
    for t in table:
        assert f"<td>{t['arm']}</td><td>{t['method']}</td>" in body
        assert f"{float(t['road']):.3f}" in body
    gif = "explain/explain_infarct/camanim_pretrained_infarct_test_sitea_0000.gif"
    assert f'src="{gif}"' in html
    assert (out / gif).read_bytes() == (folder / gif.rsplit("/", 1)[1]).read_bytes()
    # the viewer: the reference and one heat overlay per map, each referenced NIfTI exists
    manifest = json.loads((folder / MANIFEST).read_text())
    for rel in [*manifest["cases"][0]["maps"].values(), manifest["cases"][0]["reference"]]:
        assert (folder / rel).is_file()
    [meta] = _case_index(html)
    assert meta["script"].startswith("explain/cases/")
    kinds = {o["key"]: o["kind"] for o in meta["overlays"]}
    assert kinds == {"reference": "mask", **{k: "map" for k in manifest["cases"][0]["maps"]}}
    assert set(meta["metrics"]) == set(manifest["cases"][0]["maps"])
    data = _embedded(out, meta["script"])
    for key, rel in manifest["cases"][0]["maps"].items():
        raw = gzip.decompress(base64.b64decode(data["maps"][key]))
        shown = nib.Nifti1Image.from_bytes(raw)
        original = np.asarray(nib.load(str(folder / rel)).dataobj)
        expected = np.clip(original, 0, None) / original.max()  # positive part over the maximum
        np.testing.assert_allclose(shown.get_fdata(), expected, atol=1e-3)
        np.testing.assert_allclose(shown.affine, AFFINE)


def test_constant_map_is_shown_as_zero_not_scaled(tmp_path: Path) -> None:
    from neurofm.report.viewer import display_map

    assert not display_map(np.zeros(SHAPE)).any()
    np.testing.assert_allclose(display_map(np.array([-2.0, 0.0, 1.0, 4.0])), [0, 0, 0.25, 1])


def test_bad_explain_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(NeuroFMError, match="not a `neurofm explain-table` output folder"):
        read_explain(tmp_path)
    folder = make_explain_folder(tmp_path / "explain_infarct")
    next((folder / "maps").rglob("scratch_gradcam.nii.gz")).unlink()
    with pytest.raises(NeuroFMError, match=r"scratch_gradcam\.nii\.gz does not exist"):
        read_explain(folder)
    assert explain_page([]) is None


@pytest.mark.slow  # explain-table on one tiny case (maps, ROAD, randomisation, CAManim), report
def test_explain_table_then_report_command(tiny_benchmark: Path, tmp_path: Path) -> None:
    from test_explain_cli import make_run, run

    model = make_run(tmp_path / "run", "meningioma")
    table = tmp_path / "explain_meningioma"
    args = ["explain-table", "--model", f"scratch={model}", "--data"]
    args += [str(tiny_benchmark / "meningioma"), "--splits", "test", "--cases", "1"]
    args += ["--method", "hirescam", "--animate", "1", "--samples", "2", "--out", str(table)]
    assert run(*args) == 0
    manifest = json.loads((table / MANIFEST).read_text())
    [entry] = manifest["cases"]
    case_dir = tiny_benchmark / "meningioma" / "test" / entry["case"]
    ref = nib.load(str(case_dir / "label.nii.gz"))
    assert list(entry["maps"]) == ["scratch hirescam"]
    for rel in [*entry["maps"].values(), entry["reference"], *entry["images"].values()]:
        img = nib.load(str(table / rel))  # every referenced file exists, on the case's grid
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    results = write_results_folder(tmp_path / "results", n_per_site=4, tasks=("meningioma",))
    out = tmp_path / "report"
    cmd = ["report", str(results), "--out", str(out), "--n-boot", "100", "--explain", str(table)]
    assert run(*cmd) == 0
    html = (out / "explain.html").read_text()
    assert "<td>scratch</td><td>hirescam</td>" in html
    [meta] = _case_index(html)
    assert (out / meta["script"]).is_file() and meta["case"] == entry["case"]
    assert (out / "explain" / table.name / manifest["animations"][0]["src"]).is_file()


def _warm(pixels: np.ndarray) -> float:
    """Share of orange-to-yellow pixels (niivue's "warm" map): red high, blue low."""
    p = pixels.astype(np.int16)
    return float(((p[..., 0] > 200) & (p[..., 2] < 80) & (p[..., 1] > 90)).mean())


@pytest.mark.browser
def test_explanations_page_in_a_browser(driver: Any, tmp_path: Path) -> None:  # noqa: F811
    """Chromium opens the page from file://: table rows, GIF decoded, maps drawn in niivue."""
    results = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("meningioma",))
    page = explain_page([make_explain_folder(tmp_path / "explain_infarct")])
    out = tmp_path / "report"
    build_report(results, out, n_boot=100, extra_pages=[page] if page else [])
    driver.get((out / "explain.html").as_uri())
    state = _wait(
        driver,
        "const s = document.body.dataset.viewer; return s === 'ready' || s === 'error' ? s : ''",
    )
    assert state == "ready", driver.find_element("id", "viewer-status").text
    rows = driver.execute_script(
        "return document.querySelectorAll('table.explain tbody tr').length"
    )
    assert rows == len(ARMS) * len(METHODS)
    gif = driver.find_element("css selector", "figure img")
    assert driver.execute_script("return arguments[0].naturalWidth", gif) == 8
    toggles = driver.find_elements("css selector", "#overlay-toggles input")
    assert len(toggles) == 1 + len(ARMS) * len(METHODS)
    assert [t.is_selected() for t in toggles][:2] == [True, True]
    time.sleep(0.5)
    canvas = driver.find_element("id", "niivue-canvas")
    shot = canvas.screenshot_as_png
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-explain-canvas.png").write_bytes(shot)
    with_map = _warm(_pixels(shot))
    assert with_map > 0.001, "no heat overlay visible"
    toggles[1].click()  # the map off, the reference stays
    time.sleep(0.4)
    assert _warm(_pixels(canvas.screenshot_as_png)) < with_map / 2, "map toggle does nothing"
    assert _severe(driver) == []
