"""Prior, hand-feature and random-features baselines on cases whose answers are known."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from neurofm.baselines import BASELINES, fit_baseline
from neurofm.baselines import features as F
from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.evaluate import evaluate_predictions
from neurofm.metrics.classification import auroc

SHAPE = (12, 10, 8)
RAS = np.diag([2.0, 2.0, 3.0, 1.0])
# x flipped and y/z swapped: a file whose voxel order is not RAS+, to check masks come back
# on the file's own grid
LPS_LIKE = np.array([[-2.0, 0, 0, 30], [0, 0, 3.0, -5], [0, 2.0, 0, 7], [0, 0, 0, 1]])
INPUTS = {
    "infarct": ("dwi_b1000", "flair", "adc", "swi"),
    "brain_age": ("t1", "t2"),
    "meningioma": ("dwi_b1000", "flair", "swi"),
}


def cli(*args: object) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def write_split(
    split: Path,
    task: str,
    cases: Mapping[str, Mapping[str, np.ndarray]],
    targets: Mapping[str, float] | None = None,
    affine: np.ndarray = RAS,
) -> Path:
    """A raw task split: ``<split>/<case>/<seq>.nii.gz`` (+ ``label.nii.gz``) and labels.csv.

    Sequences a case does not give are filled with a uniform head (value 100, 1-voxel border 0).
    """
    column = {"infarct": ",label", "brain_age": ",age"}.get(task, "")
    lines = [f"case,site{column}"]
    for case, arrays in cases.items():
        folder = split / case
        folder.mkdir(parents=True)
        for seq in INPUTS[task]:
            data = arrays.get(seq, _uniform_head())
            nib.save(
                nib.Nifti1Image(data.astype(np.float32), affine), str(folder / f"{seq}.nii.gz")
            )
        if "label" in arrays:
            mask = arrays["label"].astype(np.uint8)
            nib.save(nib.Nifti1Image(mask, affine), str(folder / "label.nii.gz"))
        value = f",{targets[case]:g}" if targets is not None else ""
        lines.append(f"{case},source{value}")
    (split / "labels.csv").write_text("\n".join(lines) + "\n")
    return split


def _uniform_head() -> np.ndarray:
    a = np.zeros(SHAPE)
    a[1:-1, 1:-1, 1:-1] = 100.0
    return a


def _noisy_head(rng: np.random.Generator) -> np.ndarray:
    a = _uniform_head()
    a[1:-1, 1:-1, 1:-1] += rng.normal(0, 5, (SHAPE[0] - 2, SHAPE[1] - 2, SHAPE[2] - 2))
    return a


def _infarct_case(rng: np.random.Generator, lesion: bool) -> dict[str, np.ndarray]:
    dwi, adc = _noisy_head(rng), _noisy_head(rng) * 8
    if lesion:  # bright on DWI, dark on ADC
        dwi[4:6, 4:6, 3:5] *= 2.0
        adc[4:6, 4:6, 3:5] *= 0.5
    return {"dwi_b1000": dwi, "adc": adc}


def _t1_with_dark_voxels(n_dark: int) -> np.ndarray:
    """T1 head of 10*8*6 = 480 voxels at 100, ``n_dark`` of them (< 240) at 10."""
    t1 = _uniform_head()
    head = np.argwhere(t1 > 0)
    for i, j, k in head[:n_dark]:
        t1[i, j, k] = 10.0
    return t1


def _cube_case(rng: np.random.Generator, start: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """DWI with a bright 3x3x2 cube at ``start`` and one isolated bright voxel elsewhere."""
    dwi = _noisy_head(rng)
    label = np.zeros(SHAPE)
    sl = tuple(slice(s, s + n) for s, n in zip(start, (3, 3, 2), strict=True))
    dwi[sl] = 200.0
    label[sl] = 1
    far = (10, 8, 6) if start[0] < 5 else (1, 1, 1)
    dwi[far] = 200.0  # bright, but not the largest component
    return {"dwi_b1000": dwi, "label": label}


# ---------------------------------------------------------------- pure features


def test_infarct_score_matches_an_independent_computation(rng: np.random.Generator) -> None:
    case = _infarct_case(rng, lesion=True)
    dwi, adc = case["dwi_b1000"], case["adc"]
    head = (dwi > 0) & (adc > 0)
    zd = (dwi[head] - dwi[head].mean()) / dwi[head].std()
    za = (adc[head] - adc[head].mean()) / adc[head].std()
    assert F.infarct_score(dwi, adc) == pytest.approx(np.percentile(zd - za, 99.9))
    assert F.infarct_score(dwi, adc) > F.infarct_score(*_infarct_case(rng, False).values())


def test_dark_t1_fraction_is_exact() -> None:
    assert F.dark_t1_fraction(_t1_with_dark_voxels(48)) == pytest.approx(48 / 480)
    assert F.dark_t1_fraction(_uniform_head()) == 0.0


def test_largest_component_drops_the_smaller_blob() -> None:
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[0:2, 0:2, 0:2] = True  # 8 voxels
    mask[4, 4, 4] = True  # 1 voxel
    kept = F.largest_component(mask)
    assert kept.sum() == 8 and not kept[4, 4, 4]
    assert not F.largest_component(np.zeros((3, 3, 3), dtype=bool)).any()


# ---------------------------------------------------------------- hand baselines


def test_hand_infarct_separates_and_matches_sklearn(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    labels = [1, 0, 1, 0, 0]
    train = write_split(
        tmp_path / "train", "infarct",
        {f"c{i}": _infarct_case(rng, bool(y)) for i, y in enumerate(labels)},
        {f"c{i}": y for i, y in enumerate(labels)},
    )  # fmt: skip
    test_labels = {"t0": 0, "t1": 1, "t2": 0, "t3": 1}
    test = write_split(
        tmp_path / "test", "infarct",
        {c: _infarct_case(rng, bool(y)) for c, y in test_labels.items()}, test_labels,
    )  # fmt: skip
    fitted = fit_baseline("hand", "infarct", train)
    # independent fit: sklearn on the standardised feature, mapped back to the raw feature
    x = np.asarray(
        [F.infarct_score(*_load(train / f"c{i}", ("dwi_b1000", "adc"))) for i in range(5)]
    )
    clf = LogisticRegression().fit(((x - x.mean()) / x.std()).reshape(-1, 1), labels)
    assert fitted.params["slope"] == pytest.approx(clf.coef_[0, 0] / x.std())
    assert fitted.params["slope"] > 0
    fitted.predict_split(test, tmp_path / "pred")
    rows = evaluate_predictions("infarct", tmp_path / "pred", test, "hand").rows
    probs = [float((tmp_path / "pred" / f"{c}.txt").read_text()) for c in test_labels]
    assert auroc(list(test_labels.values()), probs) == 1.0
    assert set(rows["case"]) == set(test_labels)


def _load(folder: Path, seqs: tuple[str, ...]) -> list[np.ndarray]:
    return [np.asarray(nib.load(str(folder / f"{s}.nii.gz")).dataobj) for s in seqs]


def test_hand_brain_age_is_the_training_line(tmp_path: Path) -> None:
    # fractions 0.1 and 0.3 at ages 30 and 70: age = 10 + 200 * fraction
    train = write_split(
        tmp_path / "train", "brain_age",
        {"a": {"t1": _t1_with_dark_voxels(48)}, "b": {"t1": _t1_with_dark_voxels(144)}},
        {"a": 30.0, "b": 70.0},
    )  # fmt: skip
    test = write_split(
        tmp_path / "test", "brain_age", {"x": {"t1": _t1_with_dark_voxels(96)}}, {"x": 52.0}
    )
    fitted = fit_baseline("hand", "brain_age", train)
    assert fitted.params == pytest.approx({"intercept": 10.0, "slope": 200.0})
    fitted.predict_split(test, tmp_path / "pred")
    assert float((tmp_path / "pred" / "x.txt").read_text()) == pytest.approx(50.0)
    rows = evaluate_predictions("brain_age", tmp_path / "pred", test).rows.set_index("metric")
    assert rows.loc["pred", "value"] == pytest.approx(50.0)
    assert rows.loc["abs_error", "value"] == pytest.approx(2.0)


def test_hand_meningioma_recovers_a_bright_cube_on_the_file_grid(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    starts = [(2, 2, 2), (6, 4, 3), (3, 5, 4)]
    train = write_split(
        tmp_path / "train",
        "meningioma",
        {f"c{i}": _cube_case(rng, s) for i, s in enumerate(starts)},
    )
    test = write_split(
        tmp_path / "test", "meningioma", {"x": _cube_case(rng, (7, 2, 1))}, affine=LPS_LIKE
    )
    fitted = fit_baseline("hand", "meningioma", train)
    assert 0.5 < fitted.params["threshold"] < 4.0
    fitted.predict_split(test, tmp_path / "pred")
    pred = nib.load(str(tmp_path / "pred" / "x.nii.gz"))
    ref = nib.load(str(test / "x" / "label.nii.gz"))
    assert pred.shape == ref.shape and np.allclose(pred.affine, LPS_LIKE)
    assert np.array_equal(np.asarray(pred.dataobj), np.asarray(ref.dataobj))  # isolated voxel gone
    rows = evaluate_predictions("meningioma", tmp_path / "pred", test).rows
    assert rows.set_index("metric").loc["dice", "value"] == 1.0


# ---------------------------------------------------------------- prior


def test_prior_writes_mean_prevalence_and_empty_mask(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    inf = {"a": 1, "b": 0, "c": 0}
    train = write_split(tmp_path / "inf", "infarct", {c: {} for c in inf}, inf)
    fit_baseline("prior", "infarct", train).predict_split(train, tmp_path / "p_inf")
    assert float((tmp_path / "p_inf" / "b.txt").read_text()) == pytest.approx(1 / 3, abs=1e-6)

    ages = {"a": 20.0, "b": 50.0, "c": 71.0}
    train = write_split(tmp_path / "age", "brain_age", {c: {} for c in ages}, ages)
    fitted = fit_baseline("prior", "brain_age", train, cases=["a", "c"])
    assert fitted.train_cases == ("a", "c")
    fitted.predict_split(train, tmp_path / "p_age")
    assert float((tmp_path / "p_age" / "b.txt").read_text()) == pytest.approx(45.5)

    train = write_split(tmp_path / "men", "meningioma", {"a": _cube_case(rng, (2, 2, 2))})
    test = write_split(tmp_path / "men_t", "meningioma", {"x": _cube_case(rng, (2, 2, 2))},
                       affine=LPS_LIKE)  # fmt: skip
    fit_baseline("prior", "meningioma", train).predict_split(test / "x", tmp_path / "p_men")
    img = nib.load(str(tmp_path / "p_men" / "x.nii.gz"))
    assert img.shape == SHAPE and np.allclose(img.affine, LPS_LIKE)
    assert not np.asarray(img.dataobj).any()
    rows = evaluate_predictions("meningioma", tmp_path / "p_men", test).rows
    assert rows.set_index("metric").loc["dice", "value"] == 0.0  # empty vs a cube


# ---------------------------------------------------------------- CLI and bad input


def test_cli_writes_predictions_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ages = {"a": 20.0, "b": 50.0}
    split = write_split(tmp_path / "s", "brain_age", {c: {} for c in ages}, ages)
    out = tmp_path / "out"
    args = ["baseline", "prior", "--task", "brain_age", "--train", split, "--input", split]
    assert cli(*args, "--output", out) == 0
    assert sorted(p.name for p in out.glob("*.txt")) == ["a.txt", "b.txt"]
    (out / "a.txt").write_text("99\n")
    assert cli(*args, "--output", out) == 2
    assert (out / "a.txt").read_text() == "99\n"
    assert cli(*args, "--output", out, "--overwrite") == 0
    assert float((out / "a.txt").read_text()) == pytest.approx(35.0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_baseline", "unknown baseline 'oracle'"),
        ("random_baseline", "neurofm random-init"),
        ("unknown_task", "unknown task 'tumour'"),
        ("empty_train", "no case folders"),
        ("missing_sequence", "missing required sequence(s) ['adc']"),
        ("one_class", "needs positive and negative training cases"),
        ("black_case", "no voxel > 0"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    case: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    good = write_split(
        tmp_path / "good", "infarct",
        {"a": _infarct_case(rng, True), "b": _infarct_case(rng, False)}, {"a": 1, "b": 0},
    )  # fmt: skip
    name, task, train, test = "hand", "infarct", good, good
    if case == "unknown_baseline":
        name = "oracle"
    elif case == "random_baseline":
        name = "random"
    elif case == "unknown_task":
        task = "tumour"
    elif case == "empty_train":
        train = tmp_path / "empty"
        train.mkdir()
        (train / "labels.csv").write_text("case,site,label\n")
    elif case == "missing_sequence":
        (good / "b" / "adc.nii.gz").unlink()
    elif case == "one_class":
        train = write_split(tmp_path / "one", "infarct", {"a": {}, "b": {}}, {"a": 0, "b": 0})
    elif case == "black_case":  # the second test case is all zeros: nothing may be written
        test = write_split(
            tmp_path / "t", "infarct",
            {"a": _infarct_case(rng, True), "z": {"dwi_b1000": np.zeros(SHAPE)}}, {"a": 1, "z": 0},
        )  # fmt: skip
    out = tmp_path / "out"
    args = [name, "--task", task, "--train", train, "--input", test, "--output", out]
    assert cli("baseline", *args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(NeuroFMError):
        fitted = fit_baseline(name, task, train)
        fitted.predict_split(test, out)


def test_unknown_training_case_subset_is_refused(tmp_path: Path) -> None:
    split = write_split(tmp_path / "s", "brain_age", {"a": {}}, {"a": 40.0})
    with pytest.raises(NeuroFMError, match="'zz' is not in this split"):
        fit_baseline("prior", "brain_age", split, cases=["zz"])


# ---------------------------------------------------------------- the tiny benchmark, end to end


@pytest.mark.parametrize("task", ["infarct", "brain_age", "meningioma"])
def test_every_baseline_runs_on_the_tiny_benchmark(
    task: str, tiny_benchmark: Path, tmp_path: Path
) -> None:
    split = tiny_benchmark / task / "test_sitea"
    for name in BASELINES:
        out = tmp_path / name
        args = ["--task", task, "--train", tiny_benchmark / task / "train", "--input", split]
        assert cli("baseline", name, *args, "--output", out) == 0
        ev = evaluate_predictions(task, out, split, name)
        assert not ev.missing and np.isfinite(ev.rows["value"]).all()


# ---------------------------------------------------------------- random features


FAST = ["--steps", "3", "--batch-size", "2", "--workers", "0", "--threads", "1"]


def test_random_features_probe_freezes_the_scratch_init(
    tiny_prepared: Path, tmp_path: Path
) -> None:
    """The random init equals the scratch arm's initial weights, and the probe keeps them."""
    import torch
    from safetensors.torch import load_file

    from neurofm.baselines.random_features import random_features_settings
    from neurofm.train.settings import FinetuneSettings

    torch.set_num_threads(1)
    common = ["--task", "brain_age", "--seed", "3", "--input-size", "32", *FAST[2:]]
    # 0 steps: what the scratch run saves is its initialisation (plus the closed-form head)
    assert cli("finetune", tiny_prepared, *common, "--steps", "0", "--out", tmp_path / "s") == 0
    init = tmp_path / "init"
    assert (
        cli("random-init", tiny_prepared, "--task", "brain_age", "--seed", "3", "--out", init) == 0
    )
    assert cli("random-init", tiny_prepared, "--task", "brain_age", "--out", init) == 2  # exists
    start = load_file(str(init / "model.safetensors"))
    scratch = load_file(str(tmp_path / "s" / "model.safetensors"))
    encoder = [k for k in start if k.startswith("encoder.")]
    assert encoder and all(torch.equal(start[k], scratch[k]) for k in encoder)
    assert start["encoder.stem.conv.weight"].shape[1] == 2  # t1 and t2 keep own random kernels

    probe = tmp_path / "probe"
    args = ["--init", init, "--mode", "probe", "--out", probe, "--steps", "3"]
    assert cli("finetune", tiny_prepared, *common, *args) == 0
    last = load_file(str(probe / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(start[k], last[k]) for k in encoder), "probe must freeze the encoder"
    head = [k for k in last if k.startswith("head.")]
    assert head and any(not torch.equal(start[k], last[k]) for k in head)

    scratch_settings = FinetuneSettings(task="infarct", head="mil", seed=5, steps=40)
    fs = random_features_settings(scratch_settings, tmp_path / "init2", tiny_prepared)
    assert (fs.init, fs.mode) == (str(tmp_path / "init2"), "probe")
    assert (fs.head, fs.seed, fs.steps, fs.task) == ("mil", 5, 40, "infarct")
    with pytest.raises(NeuroFMError, match="needs a scratch arm|need a scratch arm"):
        random_features_settings(fs, tmp_path / "init3", tiny_prepared)
