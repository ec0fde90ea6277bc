"""`neurofm bench train` writes a throughput JSON with a data-wait fraction in [0, 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.throughput.train import TrainBenchSettings, run_train_bench, write_result


def test_train_bench_json(tiny_prepared: Path, tmp_path: Path) -> None:
    s = TrainBenchSettings(batch_size=2, workers=0, steps=3, warmup=2, threads=1)
    result = run_train_bench(s, data=tiny_prepared, work=tmp_path)
    out = write_result(result, tmp_path / "train.json")
    doc = json.loads(out.read_text())
    assert doc["steps_timed"] == 3
    assert doc["patches_per_s"] > 0
    assert 0.0 <= doc["data_wait_fraction"] < 1.0
    assert doc["meets_target"] == (doc["data_wait_fraction"] < 0.10)


def test_nothing_to_time_is_refused(capsys, tmp_path: Path) -> None:
    """--steps 0 used to write patches_per_s 0.0 after a full warm-up run."""
    with pytest.raises(NeuroFMError, match="--steps: must be at least 1"):
        TrainBenchSettings(steps=0)
    with pytest.raises(SystemExit) as info:
        main(["bench", "train", "--steps", "0", "--out", str(tmp_path / "t.json")])
    assert info.value.code == 2 and "\n" not in capsys.readouterr().err.strip()
    assert not (tmp_path / "t.json").exists()
