"""The diffusion classifier's pure pieces: schedule, decision rule on a toy with a known answer,
shared noise draws, reproducibility, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from neurofm.diffusion.classify import ClassifierSettings, Verdict, classify, eval_timesteps
from neurofm.diffusion.compare import budget_curve, metric_rows, spread
from neurofm.diffusion.schedule import NoiseSchedule, betas
from neurofm.errors import NeuroFMError

torch.set_num_threads(1)


def test_linear_and_cosine_schedules_match_their_formulas() -> None:
    lin = NoiseSchedule("linear", 1000).alpha_bar
    expected = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(lin.numpy(), expected, rtol=1e-10)
    cos = NoiseSchedule("cosine", 1000).alpha_bar.numpy()
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    # alpha_bar(t) = f(t + 1) / f(0) wherever the 0.999 beta clip is inactive
    np.testing.assert_allclose(cos[:900], [f(t + 1) / f(0) for t in range(900)], rtol=1e-9)
    assert np.all(np.diff(cos) < 0) and np.all(np.diff(lin.numpy()) < 0)
    assert float(betas("cosine", 1000).max()) <= 0.999


def test_q_sample_mixes_signal_and_noise_by_alpha_bar() -> None:
    s = NoiseSchedule("linear", 100)
    x0, noise = torch.full((2, 1, 2, 2, 2), 3.0), torch.full((2, 1, 2, 2, 2), -1.0)
    t = torch.tensor([0, 99])
    xt = s.q_sample(x0, t, noise)
    ab = s.alpha_bar[[0, 99]].float()
    for i in range(2):
        want = float(ab[i].sqrt() * 3.0 - (1 - ab[i]).sqrt())
        assert torch.allclose(xt[i], torch.full_like(xt[i], want))
    with pytest.raises(NeuroFMError, match="timesteps"):
        s.q_sample(x0, torch.tensor([0, 100]), noise)
    with pytest.raises(NeuroFMError, match="schedule"):
        betas("quadratic", 10)  # type: ignore[arg-type]


class ToyDenoiser:
    """Class c predicts the noise exactly for images whose clean version is ``templates[c]``
    (it inverts q_sample assuming that x0), and records every call."""

    def __init__(self, templates: Tensor, schedule: NoiseSchedule) -> None:
        self.templates, self.ab = templates, schedule.alpha_bar.float()
        self.calls: list[tuple[Tensor, Tensor, Tensor]] = []

    def __call__(self, xt: Tensor, t: Tensor, y: Tensor) -> Tensor:
        self.calls.append((xt.clone(), t.clone(), y.clone()))
        ab = self.ab[t].reshape(-1, 1, 1, 1, 1)
        return (xt - ab.sqrt() * self.templates[y]) / (1 - ab).sqrt()


def _toy() -> tuple[Tensor, NoiseSchedule, ToyDenoiser]:
    gen = torch.Generator().manual_seed(1)
    templates = torch.randn((2, 2, 4, 4, 4), generator=gen)
    schedule = NoiseSchedule("linear", 200)
    return templates, schedule, ToyDenoiser(templates, schedule)


def test_toy_with_known_answer_is_classified_correctly() -> None:
    templates, schedule, toy = _toy()
    rule = ClassifierSettings(k=3, t=4, seed=5)
    gen = torch.Generator().manual_seed(2)
    for c in (0, 1):
        x0 = templates[c] + 0.05 * torch.randn(templates[c].shape, generator=gen)
        v = classify(toy, x0, schedule, rule)
        assert (v.votes == c).all()  # every one of the K x T draws votes for the right class
        assert v.entropy == 0.0
        # Jeffreys-smoothed unanimous vote over 12 draws
        assert v.probability == pytest.approx((12 * c + 0.5) / 13)
        assert (v.mean_gap > 0) == (c == 1)
        assert v.maps is not None and v.maps.shape == (2, 4, 4, 4)
        # the explanation: the right class has the smaller error map
        assert v.maps[c].mean() < v.maps[1 - c].mean()


def test_both_classes_see_the_same_noisy_images() -> None:
    templates, schedule, toy = _toy()
    rule = ClassifierSettings(k=2, t=3, seed=0, batch=4)  # 2 timesteps per call
    classify(toy, templates[0], schedule, rule)
    seen = []
    for xt, t, y in toy.calls:
        n = len(t) // 2
        assert torch.equal(y, torch.tensor([0] * n + [1] * n))
        assert torch.equal(xt[:n], xt[n:]) and torch.equal(t[:n], t[n:])
        seen += [(int(tt), xt[i]) for i, tt in enumerate(t[:n])]
    assert len(seen) == rule.k * rule.t
    assert [s[0] for s in seen] == eval_timesteps(schedule, 3, 0.5) * 2


def test_same_seed_same_result_and_batch_size_does_not_matter() -> None:
    templates, schedule, _ = _toy()

    def wobbly(xt: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """A denoiser whose errors depend on the noise drawn (unlike the exact toy's)."""
        return torch.tanh(xt) * (0.5 + y.reshape(-1, 1, 1, 1, 1))

    x0 = templates[0]
    a = classify(wobbly, x0, schedule, ClassifierSettings(k=4, t=4, seed=3, batch=2))
    b = classify(wobbly, x0, schedule, ClassifierSettings(k=4, t=4, seed=3, batch=8))
    c = classify(wobbly, x0, schedule, ClassifierSettings(k=4, t=4, seed=4, batch=8))
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-5)
    assert a.probability == b.probability and a.maps is not None and b.maps is not None
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5)
    assert not np.allclose(a.errors, c.errors, rtol=1e-3)


def test_zero_draws_or_timesteps_are_one_line_errors() -> None:
    for k, t in ((0, 4), (4, 0)):
        with pytest.raises(NeuroFMError, match="K and T must be at least 1") as err:
            ClassifierSettings(k=k, t=t)
        assert "\n" not in str(err.value)


def test_vote_statistics_by_hand() -> None:
    # 3 draws vote class 1, 1 draw votes class 0 (errors: lower wins)
    errors = np.array([[[2.0, 1.0], [2.0, 1.0]], [[1.0, 3.0], [5.0, 1.0]]])
    v = Verdict(errors, None, [10, 20])
    assert v.vote_share.tolist() == [0.25, 0.75]
    assert v.probability == pytest.approx(3.5 / 5)
    assert v.entropy == pytest.approx(-(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75)))
    assert v.mean_gap == pytest.approx(np.mean([1.0, 1.0, -2.0, 4.0]))
    sub = v.subset(1, [1])
    assert sub.errors.shape == (1, 1, 2) and sub.timesteps == [20] and sub.probability == 0.75


def test_comparison_metrics_against_sklearn() -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 10, dtype=float)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 20), 0, 1)
    rows = metric_rows(y, {"m": p}, n_boot=50).set_index("metric")
    assert rows.loc["auroc", "value"] == pytest.approx(roc_auc_score(y, p))
    assert rows.loc["brier", "value"] == pytest.approx(brier_score_loss(y, p))
    assert rows.loc["auroc", "low"] <= rows.loc["auroc", "value"] <= rows.loc["auroc", "high"]
    assert spread(8, 2) == [2, 6] and spread(8, 8) == list(range(8)) and spread(3, 5) == [0, 1, 2]


def test_budget_curve_reads_sub_budgets_from_the_same_draws() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 6, dtype=float)
    verdicts = []
    for label in y:
        e = rng.normal(1.0, 0.1, (4, 4, 2))
        e[..., 0] += 0.05 * label  # class-1 cases denoise slightly better as class 1
        verdicts.append(Verdict(e, None, [1, 2, 3, 4]))
    curve = budget_curve(y, verdicts, [1, 4], [1, 4], n_boot=20)
    assert curve["evaluations"].tolist() == [1, 4, 4, 16]
    from sklearn.metrics import roc_auc_score

    full = curve.query("k == 4 and t == 4").iloc[0]
    assert full["auroc_gap"] == pytest.approx(roc_auc_score(y, [v.mean_gap for v in verdicts]))
    assert full["auroc_vote"] == pytest.approx(roc_auc_score(y, [v.probability for v in verdicts]))


def test_finetune_options_become_a_diffusion_recipe() -> None:
    from neurofm.diffusion.settings import DiffusionSettings, settings_from_finetune

    s = settings_from_finetune({"task": "infarct", "head": "diffusion", "steps": 7, "seed": 3})
    assert (s.steps, s.seed) == (7, 3)
    assert (s.lr, s.k, s.t) == (DiffusionSettings.lr, DiffusionSettings.k, DiffusionSettings.t)
    with pytest.raises(NeuroFMError, match=r"--pool, --encoder-lr-scale do\(es\) not apply"):
        settings_from_finetune({"task": "infarct", "pool": "max", "encoder_lr_scale": 0.1})
    # the shared options obey the finetuning recipe's own rules
    with pytest.raises(NeuroFMError, match="--batch-size must be positive"):
        DiffusionSettings(batch_size=0)
    with pytest.raises(NeuroFMError, match="class_dropout must be in"):
        DiffusionSettings(class_dropout=1.0)
