"""`neurofm study` end to end on the tiny benchmark (slow): a kill -9 mid-grid resumes to the
same rows as an uninterrupted run, and a confirmed recipe is frozen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_RECIPE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ARGS = ["--arms", "scratch,pretrained,prior,hand", "--tasks", "brain_age", "--workers", "0"]


def _study(out: Path, recipe: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "neurofm.cli", "study", "--out", str(out), "--recipe",
           str(recipe), *ARGS, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=1500)
    return proc.returncode, out + err


def _rows(folder: Path) -> pd.DataFrame:
    rows = pd.read_csv(folder / "rows.csv", dtype={"case": str})
    return rows.sort_values(["seed", "arm", "task", "site", "case", "metric"]).reset_index(
        drop=True
    )


def test_killed_study_resumes_to_the_same_rows_and_recipe_freezes(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY_RECIPE.replace("development = [0, 1]", "development = [0]"))
    code, log = _finish(_study(tmp_path / "whole", recipe))
    assert code == 0, log
    whole = _rows(tmp_path / "whole")
    assert set(whole.arm) == {"scratch", "pretrained", "prior", "hand"}
    assert {"in-domain", "out-of-domain"} == set(whole.domain)
    assert (tmp_path / "whole" / "rows.parquet").exists()
    assert (tmp_path / "whole" / "report" / "index.html").exists()

    out = tmp_path / "killed"
    proc = _study(out, recipe)
    rows_dir = out / "seeds" / "0" / "rows"
    deadline = time.time() + 1200
    while time.time() < deadline and not (rows_dir.is_dir() and any(rows_dir.iterdir())):
        assert proc.poll() is None, _finish(proc)[1]
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "rows.csv").exists()
    code, log = _finish(_study(out, recipe))
    assert code == 0, log
    pd.testing.assert_frame_equal(_rows(out), whole)

    # confirmation: the recipe's confirmation seeds only, and frozen once results exist
    confirm = tmp_path / "confirm"
    code, log = _finish(_study(confirm, recipe, "--confirm", "--seeds", "7"))
    assert code == 0, log
    edited = tmp_path / "edited.toml"
    edited.write_text(recipe.read_text().replace("n_boot = 200", "n_boot = 250"))
    before = (confirm / "rows.csv").read_bytes()
    code, log = _finish(_study(confirm, edited, "--confirm", "--seeds", "7"))
    assert code == 2 and "frozen once confirmed" in log and "Traceback" not in log
    assert (confirm / "rows.csv").read_bytes() == before
    code, log = _finish(_study(tmp_path / "dev2", recipe, "--seeds", "7"))
    assert code == 2 and "confirmation seeds" in log
