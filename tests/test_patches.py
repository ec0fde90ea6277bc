"""Patch sampling, augmentation and the loader's failure behaviour."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_augment,
    augment_profile,
    bias_field,
    sample_augment,
    simulate_low_resolution,
)
from neurofm.data.batch_buffers import BufferPool
from neurofm.data.cache import PreparedDataset, unpack_case, write_case, write_manifest
from neurofm.data.patches import PatchDataset, ThreadLoader, centre_start, make_loader
from neurofm.data.preprocess import PreprocessParams, preprocess
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import Volume

torch.set_num_threads(1)


def _write_subset(root: Path, rng, specs, task: str | None) -> PreparedDataset:
    """specs: (case id, channels, shape, with mask, label, age)."""
    cases = []
    for cid, chans, shape, with_mask, label, age in specs:
        data = np.zeros((len(chans), *shape), np.float32)
        data[:, 1:-1, 1:-1, 1:-1] = rng.gamma(5.0, 20.0, (len(chans), *(n - 2 for n in shape)))
        mask = None
        if with_mask:
            mask = np.zeros(shape, np.uint8)
            mask[2:5, 3:6, 2:4] = 1
        pre = preprocess(
            Volume(data, np.eye(4), list(chans)),
            PreprocessParams(spacing=None, margin_mm=1),
            mask=mask,
        )
        cases.append(
            write_case(root / cid, pre, case_id=cid, fingerprint=cid, label=label, age=age)
        )
    write_manifest(root, cases, {}, task)
    return PreparedDataset(root)


@pytest.fixture
def men(tmp_path: Path, rng) -> PreparedDataset:
    specs = [
        ("c1", ["dwi_b1000", "flair", "swi"], (20, 22, 18), True, None, None),
        ("c2", ["t2s", "flair", "dwi_b1000"], (26, 18, 20), True, None, None),
        ("c3", ["dwi_b1000", "flair", "t2s", "swi"], (14, 16, 12), True, None, None),
    ]
    return _write_subset(tmp_path / "men", rng, specs, "meningioma")


def _locate(full: np.ndarray, pads, patch: np.ndarray) -> tuple[int, int, int]:
    """Where in the (padded) volume does ``patch`` come from? Anchored on its brightest voxel."""
    k = patch.shape[1:]
    at = np.unravel_index(int(np.argmax(patch[0])), k)
    for loc in np.argwhere(full[0] == patch[(0, *at)]):
        start = tuple(int(a) - int(b) for a, b in zip(loc, at, strict=True))
        ref = np.stack(
            [
                np.pad(full[c], [(n, n) for n in k], constant_values=pads[c])
                for c in range(len(full))
            ]
        )[:, *(slice(s + n, s + 2 * n) for s, n in zip(start, k, strict=True))]
        if np.array_equal(ref, patch):
            return start  # type: ignore[return-value]
    raise AssertionError("patch is not a window of the volume")


def test_patches_are_windows_with_task_channel_order(men: PreparedDataset) -> None:
    ds = PatchDataset(men, 12, samples_per_epoch=12, seed=3)
    assert ds.channels == [
        ["dwi_b1000", "flair", "swi"],
        ["dwi_b1000", "flair", "t2s"],
        ["dwi_b1000", "flair", "swi"],
    ]
    for i in range(len(ds)):
        s = ds[i]
        case = men.case(s["case"])
        chans = s["channels"].split(",")
        assert s["image"].shape == (3, 12, 12, 12) and s["image"].dtype == torch.float32
        assert s["mask"].shape == (1, 12, 12, 12) and "target" not in s
        full = men.read(case.case_id, chans)
        pads = [case.pad_values[case.channels.index(c)] for c in chans]
        start = _locate(full, pads, s["image"].numpy())
        expect = men.read_mask_patch(case.case_id, start, (12, 12, 12))
        np.testing.assert_array_equal(s["mask"][0].numpy(), expect)
        # patches lie inside the volume wherever the volume is large enough
        for n, st in zip(case.shape, start, strict=True):
            assert (0 <= st <= n - 12) if n >= 12 else (n - 12 <= st <= 0)


def test_foreground_oversampling(men: PreparedDataset) -> None:
    def fg_rate(prob: float) -> float:
        ds = PatchDataset(men, 8, foreground_prob=prob, samples_per_epoch=60, seed=0)
        return float(np.mean([ds[i]["mask"].sum() > 0 for i in range(len(ds))]))

    assert fg_rate(1.0) == 1.0
    assert fg_rate(0.0) < 0.8
    with pytest.raises(NeuroFMError, match="no cases to sample from"):
        PatchDataset(men, 8, cases=[])


def test_whole_volume_matches_centre_crop(men: PreparedDataset) -> None:
    ds = PatchDataset(men, (16, 16, 16), whole_volume=True)
    for i, case in enumerate(men.cases):
        s = ds[i]
        full = men.read(case.case_id, ds.channels[i])
        starts = [centre_start(n, 16) for n in case.shape]
        ref = np.stack([np.pad(c, 16, constant_values=np.nan) for c in full])[
            :, *(slice(a + 16, a + 32) for a in starts)
        ]
        img = s["image"].numpy()
        inside = ~np.isnan(ref)
        np.testing.assert_array_equal(img[inside], ref[inside])
        assert inside.sum() == np.prod([min(n, 16) for n in case.shape]) * 3
    assert centre_start(5, 8) == -1 and centre_start(9, 4) == 2


def test_random_channels_and_targets(tmp_path: Path, rng) -> None:
    specs = [
        ("s1", ["t1", "t2", "flair"], (12, 12, 12), False, None, None),
        ("s2", ["t2"], (12, 12, 12), False, None, None),
        ("s3", ["t1", "adc"], (12, 12, 12), False, None, None),
    ]
    pre = _write_subset(tmp_path / "pre", rng, specs, None)
    with pytest.warns(UserWarning, match="1 of 3 cases have fewer than 2 sequences"):
        ds = PatchDataset(pre, 8, n_random_channels=2, samples_per_epoch=30)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        chans = s["channels"].split(",")
        assert len(set(chans)) == 2 and set(chans) <= set(pre.case(s["case"]).channels)
        seen.add(s["channels"])
    assert len(seen) >= 4  # both orders and several pairs are drawn
    with pytest.raises(NeuroFMError, match="give channels, task or n_random_channels"):
        PatchDataset(pre, 8)
    with pytest.raises(NeuroFMError, match="foreground oversampling needs masks"):
        PatchDataset(pre, 8, n_random_channels=1, foreground_prob=0.5)
    with pytest.raises(NeuroFMError, match=r"s2: prepared case lacks sequence\(s\) \['t1'\]"):
        PatchDataset(pre, 8, channels=["t1"])
    specs = [("a", ["t1", "t2"], (10, 10, 10), False, None, 33.0)]
    age = _write_subset(tmp_path / "age", rng, specs, "brain_age")
    s = PatchDataset(age, 10, whole_volume=True)[0]
    assert s["target"].tolist() == [33.0] and "mask" not in s
    specs = [
        ("a", ["t1", "t2"], (10, 10, 10), False, None, 33.0),
        ("b", ["t1", "t2"], (10, 10, 10), False, None, None),
    ]
    mixed = _write_subset(tmp_path / "mixed", rng, specs, "brain_age")
    with pytest.raises(NeuroFMError, match="b: case has no age while other cases"):
        PatchDataset(mixed, 10)


def test_augmentation_moves_image_and_mask_together() -> None:
    g = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 24)] * 3, indexing="ij"))
    blob = ((g - torch.tensor([0.3, -0.2, 0.1])[:, None, None, None]) ** 2).sum(0) < 0.2
    image = torch.stack([blob.float() * 4 - 1, g[0]])
    mask = blob.float()[None]
    cfg = AugmentConfig(flip_prob=0.5, affine_prob=1.0, gamma_prob=0, noise_prob=0, bias_prob=0)
    rng = np.random.default_rng(0)
    for _ in range(4):
        p = sample_augment(cfg, rng, 2)
        assert p.has_affine
        img, m = apply_augment(image, mask, p)
        assert m is not None and set(m.unique().tolist()) <= {0.0, 1.0}
        agree = ((img[0] > 1.0) == (m[0] > 0.5)).float().mean()
        assert agree > 0.97
        assert m.sum() > 0.6 * mask.sum()
    flip_only = AugmentParams(flip_axes=(0, 2))
    img, m = apply_augment(image, mask, flip_only)
    assert torch.equal(img, torch.flip(image, (1, 3))) and m is not None
    assert torch.equal(m, torch.flip(mask, (1, 3)))
    same, _ = apply_augment(image, None, AugmentParams())
    assert torch.equal(same, image)


def test_intensity_augmentations() -> None:
    rng = np.random.default_rng(1)
    cfg = AugmentConfig()
    assert sample_augment(cfg, np.random.default_rng(5), 3) == sample_augment(
        cfg, np.random.default_rng(5), 3
    )
    x = torch.from_numpy(rng.normal(size=(2, 16, 16, 16)).astype(np.float32))
    out, _ = apply_augment(x, None, AugmentParams(gamma=(1.3, 0.7)))
    for c in range(2):  # gamma keeps each channel's mean and std (z-scored input stays z-scored)
        assert out[c].mean().item() == pytest.approx(x[c].mean().item(), abs=1e-4)
        assert out[c].std().item() == pytest.approx(x[c].std().item(), rel=1e-3)
        assert not torch.allclose(out[c], x[c])
    noisy, _ = apply_augment(x, None, AugmentParams(noise_std=0.5, noise_seed=7))
    assert (noisy - x).std().item() == pytest.approx(0.5, rel=0.05)
    again, _ = apply_augment(x, None, AugmentParams(noise_std=0.5, noise_seed=7))
    assert torch.equal(noisy, again)
    assert torch.allclose(bias_field((8, 9, 10), 3, (0.0,) * 20), torch.ones(8, 9, 10))
    coeffs = tuple(rng.uniform(-0.3, 0.3, 20))
    f = bias_field((20, 20, 20), 3, coeffs)
    assert f.min() > 0 and not torch.allclose(f, torch.ones_like(f))
    assert (f[1:] / f[:-1]).log().abs().max() < 0.25  # smooth: < 25 % change per voxel


def test_augment_profiles_switch_off_what_they_name() -> None:
    assert augment_profile("none") is None
    assert augment_profile("full") == AugmentConfig()

    def drawn(name: str) -> list[AugmentParams]:
        cfg = augment_profile(name)
        assert cfg is not None
        rng = np.random.default_rng(3)
        return [sample_augment(cfg, rng, 2) for _ in range(200)]

    geometric = drawn("geometric")
    assert any(p.flip_axes for p in geometric) and any(p.has_affine for p in geometric)
    assert all(not p.gamma and p.noise_std == 0 and not p.bias_coefficients for p in geometric)
    assert all(p.lowres == (1.0, 1.0, 1.0) for p in geometric)

    def thick(ps: list[AugmentParams]) -> int:
        return sum(p.lowres != (1.0, 1.0, 1.0) for p in ps)

    assert 0 < thick(drawn("full")) < thick(drawn("strong"))


def test_low_resolution_simulation_blurs_along_the_thick_axis_only() -> None:
    # a volume that alternates along z: 2x thicker slices average neighbouring pairs away
    z = torch.arange(16, dtype=torch.float32) % 2
    x = z.view(1, 1, 1, 16).expand(2, 8, 8, 16).contiguous()
    thick = simulate_low_resolution(x, (1.0, 1.0, 2.0))
    assert thick.shape == x.shape
    torch.testing.assert_close(thick, torch.full_like(x, 0.5))
    # along x nothing varies, so thicker "slices" in x change nothing
    torch.testing.assert_close(simulate_low_resolution(x, (2.0, 1.0, 1.0)), x)
    assert simulate_low_resolution(x, (1.0, 1.0, 1.0)) is x
    # as a sampled augmentation: drawn only with its probability, applied to the image only
    mask = (x[:1] > 0.5).float()
    out, m = apply_augment(x, mask, AugmentParams(lowres=(1.0, 1.0, 2.0)))
    torch.testing.assert_close(out, thick)
    assert m is not None and torch.equal(m, mask)
    never = AugmentConfig(lowres_prob=0.0)
    assert sample_augment(never, np.random.default_rng(0), 1).lowres == (1.0, 1.0, 1.0)
    always = sample_augment(AugmentConfig(lowres_prob=1.0), np.random.default_rng(0), 1)
    assert all(1.0 <= f <= 2.5 for f in always.lowres) and always.lowres != (1.0, 1.0, 1.0)


def test_loader_is_seeded_and_batches(men: PreparedDataset) -> None:
    def batches(seed: int, workers: int) -> list[torch.Tensor]:
        ds = PatchDataset(men, 8, samples_per_epoch=8, augment=AugmentConfig())
        return [b["image"] for b in make_loader(ds, 4, workers=workers, seed=seed)]

    a, b, c = batches(1, 0), batches(1, 0), batches(2, 0)
    assert len(a) == 2 and a[0].shape == (4, 3, 8, 8, 8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    w1, w2 = batches(1, 2), batches(1, 2)
    assert all(torch.equal(x, y) for x, y in zip(w1, w2, strict=True))


class _DyingDataset(PatchDataset):
    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        if self.cases[self.case_index(index)].case_id == "c2":
            os._exit(3)
        return super().__getitem__(index)


class _HangingDataset(PatchDataset):
    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        if self.cases[self.case_index(index)].case_id == "c3":
            time.sleep(4)  # longer than the timeout, short enough for a quick worker shutdown
        return super().__getitem__(index)


def test_dead_worker_names_the_case(men: PreparedDataset) -> None:
    loader = make_loader(_DyingDataset(men, 8), 1, workers=2, shuffle=False)
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"exited unexpectedly.*reading case\(s\) c2"):
        list(loader)
    assert time.time() - t0 < 15


def test_hung_worker_times_out_naming_the_case(men: PreparedDataset) -> None:
    loader = make_loader(_HangingDataset(men, 8), 1, workers=1, shuffle=False, timeout=1)
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"timed out.*reading case\(s\) c3"):
        list(loader)
    assert time.time() - t0 < 15


def test_corrupt_chunk_in_worker_is_a_neurofm_error(men: PreparedDataset) -> None:
    path = men.root / "c2" / "image.b2nd"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    loader = make_loader(PatchDataset(men, 8), 1, workers=2, shuffle=False)
    t0 = time.time()
    with pytest.raises(NeuroFMError, match=r"c2/image\.b2nd: corrupt or unreadable cache file"):
        list(loader)
    assert time.time() - t0 < 15


# --- unpacked copies and the thread loader ---------------------------------------------------


def _unpack_all(data: PreparedDataset) -> None:
    for case in data.cases:
        assert unpack_case(data.root / case.case_id)
        assert not unpack_case(data.root / case.case_id)  # present: left as it is


def test_unpacked_reads_equal_the_blosc2_reads(men: PreparedDataset) -> None:
    _unpack_all(men)
    packed, plain = PreparedDataset(men.root, unpacked=False), PreparedDataset(men.root)
    for case in men.cases:
        d = men.root / case.case_id
        assert (d / "image.npy").is_file() and (d / "mask.npy").is_file()
        assert not list(d.glob("*.tmp-*"))
        assert plain._file(case, "image").suffix == ".npy"
        assert packed._file(case, "image").suffix == ".b2nd"
        chans = list(case.channels)
        for start in [(0, 0, 0), (-3, 2, -5), (5, 4, 3), (100, 0, 0)]:  # inside, padded, outside
            for channels in (chans, chans[::-1][:2]):
                a = packed.read_patch(case.case_id, start, (8, 9, 7), channels)
                b = plain.read_patch(case.case_id, start, (8, 9, 7), channels)
                assert np.array_equal(a, b)
            assert np.array_equal(
                packed.read_mask_patch(case.case_id, start, (8, 9, 7)),
                plain.read_mask_patch(case.case_id, start, (8, 9, 7)),
            )


def test_truncated_npy_is_named_and_stale_temp_files_are_removed(men: PreparedDataset) -> None:
    d = men.root / "c2"
    (d / "image.npy.tmp-999").write_bytes(b"half")
    unpack_case(d)
    assert not (d / "image.npy.tmp-999").exists()
    raw = (d / "image.npy").read_bytes()
    (d / "image.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NeuroFMError, match=r"c2/image\.npy: corrupt or unreadable cache file"):
        PreparedDataset(men.root).read_patch("c2", (0, 0, 0), (4, 4, 4))
    PreparedDataset(men.root, unpacked=False).read_patch("c2", (0, 0, 0), (4, 4, 4))


def _thread_batches(ds: PatchDataset, threads: int, seed: int = 1, passes: int = 2):
    loader = make_loader(ds, 3, workers=threads, seed=seed, backend="threads")
    return [[b["image"] for b in loader] for _ in range(passes)]


def test_thread_loader_stream_does_not_depend_on_thread_count(men: PreparedDataset) -> None:
    _unpack_all(men)
    ds = PatchDataset(men, 8, samples_per_epoch=7, augment=AugmentConfig())
    one, three = _thread_batches(ds, 1), _thread_batches(ds, 3)
    assert [len(p) for p in one] == [3, 3]  # 7 samples: batches of 3, 3 and 1
    assert one[0][0].shape == (3, 3, 8, 8, 8) and one[0][2].shape[0] == 1
    for p1, p3 in zip(one, three, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(p1, p3, strict=True))
    assert not torch.equal(one[0][0], one[1][0])  # a new pass draws new samples
    assert not torch.equal(one[0][0], _thread_batches(ds, 2, seed=2)[0][0])
    packed = PatchDataset(PreparedDataset(men.root, unpacked=False), 8, samples_per_epoch=7)
    unpacked = PatchDataset(men, 8, samples_per_epoch=7)
    for a, b in zip(_thread_batches(packed, 2), _thread_batches(unpacked, 2), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_thread_batches_are_the_samples_drawn_one_by_one(tmp_path: Path, rng) -> None:
    specs = [
        ("a1", ["t1", "t2"], (12, 14, 10), False, 0.0, 40.0),
        ("a2", ["t1", "t2"], (16, 12, 12), False, 1.0, 70.0),
    ]
    data = _write_subset(tmp_path / "ba", rng, specs, "brain_age")
    for augment in (None, AugmentConfig()):
        ds = PatchDataset(data, 8, samples_per_epoch=5, augment=augment)
        loader = make_loader(ds, 2, workers=2, seed=3, backend="threads", shuffle=False)
        batches = list(loader)
        assert [b["image"].shape[0] for b in batches] == [2, 2, 1]
        for pos in range(5):
            one = ds.sample(pos, np.random.default_rng([3, 0, pos]))
            batch = batches[pos // 2]
            assert torch.equal(batch["image"][pos % 2], one["image"])
            assert torch.equal(batch["target"][pos % 2], one["target"])
            assert batch["case"][pos % 2] == one["case"]
    with pytest.raises(ValueError, match="out must be float32"):
        data.read_patch("a1", (0, 0, 0), (4, 4, 4), out=np.empty((2, 4, 4, 3), np.float32))


def test_thread_loader_drop_last_and_sampler(men: PreparedDataset) -> None:
    ds = PatchDataset(men, 8, samples_per_epoch=7)
    loader = make_loader(ds, 3, workers=2, backend="threads", drop_last=True)
    assert len(loader) == 2 and [b["image"].shape[0] for b in loader] == [3, 3]
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    shard = make_loader(ds, 2, workers=2, backend="threads", sampler=sampler)
    cases = [c for b in shard for c in b["case"]]
    assert cases == [ds.cases[ds.case_index(i)].case_id for i in list(sampler)]


class _SlowSample(PatchDataset):
    def sample(self, index: int, rng: np.random.Generator, out=None):  # type: ignore[no-untyped-def]
        if self.cases[self.case_index(index)].case_id == "c3":
            time.sleep(3)
        return super().sample(index, rng, out)


def test_thread_loader_errors_name_the_case(men: PreparedDataset) -> None:
    slow = make_loader(
        _SlowSample(men, 8), 1, workers=1, shuffle=False, timeout=0.5, backend="threads"
    )
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"over 0.5 s.*reading case\(s\) c3"):
        list(slow)
    assert time.time() - t0 < 15
    path = men.root / "c2" / "image.b2nd"
    path.write_bytes(path.read_bytes()[:100])
    fresh = PreparedDataset(men.root)  # men's open mappings predate the truncation (SIGBUS)
    bad = make_loader(PatchDataset(fresh, 8), 1, workers=2, shuffle=False, backend="threads")
    with pytest.raises(NeuroFMError, match=r"c2/image\.b2nd: corrupt or unreadable cache file"):
        list(bad)
    with pytest.raises(ValueError, match="loader backend"):
        make_loader(PatchDataset(men, 8), 1, backend="fibres")  # type: ignore[arg-type]


def test_thread_loader_reuses_batch_memory_only_once_let_go(men: PreparedDataset) -> None:
    _unpack_all(men)
    ds = PatchDataset(men, 8, samples_per_epoch=24, augment=AugmentConfig())
    kept = make_loader(ds, 2, workers=2, seed=5, backend="threads")
    reference = [b["image"] for b in list(kept)]  # every batch held: nothing can be reused
    assert isinstance(kept, ThreadLoader) and kept._buffers.reused == 0
    streamed = make_loader(ds, 2, workers=2, seed=5, backend="threads")
    assert isinstance(streamed, ThreadLoader)
    for i, b in enumerate(streamed):  # the usual consumer: one batch at a time
        assert torch.equal(b["image"], reference[i]), i
        if i == 2:
            view, view_was = b["image"][1], b["image"][1].clone()
        if i == 4:
            array, array_was = b["image"].numpy(), b["image"].numpy().copy()
    assert streamed._buffers.reused > 0
    # a view or a numpy array kept from an old batch still holds its values
    assert torch.equal(view, view_was) and np.array_equal(array, array_was)


def test_buffer_pool_hands_out_only_buffers_nothing_refers_to() -> None:
    pool = BufferPool(4)
    a = pool.take((2, 3))
    assert pool.take((2, 3)) is not a
    held = {"image": a}
    del a
    assert all(pool.take((2, 3)) is not held["image"] for _ in range(3))
    view = pool.take((3, 3))[0]
    assert all(pool.take((3, 3)).data_ptr() != view.data_ptr() for _ in range(2))
    del held, view
    before = pool.reused
    pool.take((2, 3)), pool.take((3, 3))
    assert pool.reused == before + 2
