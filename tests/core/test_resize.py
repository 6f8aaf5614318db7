"""The resize area (interp_engine.engine.resize and IoUTally's resize option)
against torch, Pillow and the plain-Python formula (tests/reference_resize.py)."""
from __future__ import annotations

import pickle

import _child
import numpy as np
import pytest

import interp_engine.engine.iou as iou_mod
from interp_engine import _core
from interp_engine.engine.iou import IoUTally
from interp_engine.engine.resize import RESIZE_METHODS, resize_maps

from _params import FLOAT_DTYPES, NUMPY_FLOATS
from _torch import needs_torch, torch
from reference import iou_counts
from reference_resize import (antialias_formula, lite_masks, pil_resize, pil_resize_all, pil_width_first,
                              taps, torch_antialias, torch_bilinear, torch_capability)

# torch's antialiased kernel is reproduced bit for bit as its AVX2 build computes
# it (GCC 12 compiles its AVX-512 build to the same sequence, not verified on
# such a CPU); other builds (DEFAULT: no fused multiply-add) differ in the last bits
TORCH_AA_EXACT = torch is not None and torch_capability() == "AVX2"
FMA_TORCH = torch is not None and torch_capability() != "DEFAULT"


def shapes(seed, n, lo=1, hi=40):
    rng = np.random.default_rng(seed)
    out = [(1, 1, 1, 1), (1, 1, 3, 1), (1, 7, 1, 3), (5, 1, 2, 1), (1, 40, 1, 1), (40, 1, 1, 1), (2, 2, 1, 1),
           (40, 40, 1, 1), (1, 1, 40, 40), (7, 7, 7, 7), (17, 13, 17, 5), (4, 9, 4, 23), (39, 2, 3, 40)]
    while len(out) < n:
        out.append(tuple(int(v) for v in rng.integers(lo, hi + 1, 4)))
    return out


def assert_aa_equal(ours, x, size):
    if torch is None:  # the documented formula, exact on every platform
        np.testing.assert_array_equal(ours, antialias_formula(x, size))
        return
    ref = torch_antialias(x, size)
    if TORCH_AA_EXACT:
        np.testing.assert_array_equal(ours, ref)
    else:
        scale = max(1.0, float(np.nanmax(np.abs(x[np.isfinite(x)]), initial=0.0)))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-14 * scale)


# --------------------------------------------------------------------------- the filter
@needs_torch
def test_taps_are_torch_weights():
    # torch's weights, read back by resizing unit vectors (1 * w + 0 * ... is exact)
    for n_in in list(range(1, 26)) + [37, 40, 97]:
        eye = torch.eye(n_in, dtype=torch.float64)[:, None, None, :]
        for n_out in list(range(1, 26)) + [40, 64]:
            got = torch.nn.functional.interpolate(eye, size=(1, n_out), mode="bilinear", align_corners=False,
                                                  antialias=True)[:, 0, 0, :].numpy().T
            start, count, w = _core.resize_taps(n_in, n_out)
            mine = np.zeros((n_out, n_in))
            off = 0
            for i in range(n_out):
                mine[i, start[i]:start[i] + count[i]] = w[off:off + count[i]]
                off += count[i]
            np.testing.assert_array_equal(mine, got, err_msg=f"{n_in} -> {n_out}")
            ref = taps(n_in, n_out)
            assert [lo for lo, _ in ref] == start.tolist()
            assert np.concatenate([ws for _, ws in ref]).tolist() == w.tolist()


# --------------------------------------------------------------------------- antialias = torch antialias=True
@needs_torch
@pytest.mark.parametrize("h, w, sh, sw", shapes(0, 160))
def test_antialias_matches_torch(h, w, sh, sw):
    rng = np.random.default_rng(h * 1000003 + w * 1009 + sh * 31 + sw)
    x = rng.standard_normal((2, 3, h, w))
    assert_aa_equal(resize_maps(x, (sh, sw), "antialias"), x, (sh, sw))


def adversarial_maps(rng, h, w):
    """Plateaus (ties), huge and tiny magnitudes, integers, signed zeros, infinities."""
    t = rng.standard_normal((h, w))
    maps = [np.full((h, w), 0.1), np.full((h, w), -3.7), np.where(t > 0, 0.3, 0.7),
            rng.integers(-3, 4, (h, w)).astype(np.float64), t * 1e300, t * 1e-310,
            np.where(t > 0.5, -0.0, 0.0), np.where(t > 1.0, np.inf, t), np.where(t < -1.0, -np.inf, 2.0),
            np.where(t > 0, 6.0, t)]  # saturated (ReLU6-like) units
    return np.stack(maps)[None]


@pytest.mark.parametrize("h, w, sh, sw", shapes(1, 40, hi=24))
def test_antialias_adversarial_values(h, w, sh, sw):
    rng = np.random.default_rng(h + 41 * w + 1681 * sh + 68921 * sw)
    x = adversarial_maps(rng, h, w)
    ours = resize_maps(x, (sh, sw), "antialias")
    with np.errstate(invalid="ignore"):
        if TORCH_AA_EXACT:
            np.testing.assert_array_equal(ours, torch_antialias(x, (sh, sw)))
        np.testing.assert_array_equal(ours, antialias_formula(x, (sh, sw)))


@pytest.mark.parametrize("h, w, sh, sw", shapes(2, 25, hi=12))
def test_antialias_equals_the_documented_formula(h, w, sh, sw):
    # platform independent: the plain-Python formula with exact fused multiply-adds
    x = np.random.default_rng(h * w + sh * sw).standard_normal((1, 2, h, w))
    np.testing.assert_array_equal(resize_maps(x, (sh, sw), "antialias"), antialias_formula(x, (sh, sw)))


def test_torch_one_pixel_wide_output_bug_is_not_copied():
    x = np.random.default_rng(5).standard_normal((1, 1, 7, 4))
    ours = resize_maps(x, (3, 1), "antialias")
    np.testing.assert_array_equal(ours, antialias_formula(x, (3, 1)))
    assert not np.allclose(ours, ours[..., :1, :])
    if torch is None:
        return
    direct = torch.nn.functional.interpolate(torch.from_numpy(x), size=(3, 1), mode="bilinear",
                                             antialias=True).numpy()
    # torch 2.13 returns the first row everywhere; if it is fixed, it must agree with us
    assert (direct == direct[..., :1, :]).all() or np.allclose(direct, ours, rtol=0, atol=1e-15)
    assert not np.allclose(ours, ours[..., :1, :])


@needs_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_input_dtypes_and_layouts_are_widened_exactly(dtype):
    rng = np.random.default_rng(3)
    t = torch.from_numpy(rng.standard_normal((3, 2, 19, 11))).to(getattr(torch, dtype))
    x64 = t.double().numpy()
    for method, ref in (("antialias", lambda a, s: torch_antialias(a, s)),
                        ("pil", pil_resize_all), ("bilinear", lambda a, s: resize_maps(a, s, "bilinear"))):
        np.testing.assert_array_equal(resize_maps(t, (7, 5), method), ref(x64, (7, 5))) \
            if (method != "antialias" or TORCH_AA_EXACT) else None
        # non-contiguous views read in place: transposed, strided, negative strides
        tt = t.transpose(2, 3)
        np.testing.assert_array_equal(resize_maps(tt, (5, 7), method), resize_maps(tt.contiguous(), (5, 7), method))
        if dtype != "bfloat16":
            a = t.numpy()[:, :, ::-2, ::3]
            np.testing.assert_array_equal(resize_maps(a, (4, 6), method),
                                          resize_maps(np.ascontiguousarray(a), (4, 6), method))


# --------------------------------------------------------------------------- bilinear = torch antialias=False
@pytest.mark.parametrize("h, w, sh, sw", [(7, 7, 112, 112), (56, 56, 112, 112), (150, 90, 112, 112),
                                          (224, 224, 112, 96), (5, 130, 3, 140), (64, 64, 32, 32)])
def test_bilinear_matches_torch_and_the_tally_formula(h, w, sh, sw):
    x = np.random.default_rng(h + w).standard_normal((1, 2, h, w))
    ours = resize_maps(x, (sh, sw), "bilinear")
    for k in range(2):
        np.testing.assert_array_equal(ours[0, k], _core.iou_upsample_bilinear(x[0, k], sh, sw))
    if torch is None:
        return
    if FMA_TORCH and sh + sw > 128:
        np.testing.assert_array_equal(ours, torch_bilinear(x, (sh, sw)))
    else:
        np.testing.assert_allclose(ours, torch_bilinear(x, (sh, sw)), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- pil = Pillow mode "F" BILINEAR
@pytest.mark.parametrize("h, w, sh, sw", shapes(3, 160))
def test_pil_matches_pillow(h, w, sh, sw):
    rng = np.random.default_rng(7 * h + 11 * w + 13 * sh + 17 * sw)
    x = rng.standard_normal((1, 3, h, w)) * rng.choice([1e-3, 1.0, 1e3])
    ours = resize_maps(x, (sh, sw), "pil")
    assert ours.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(ours[0, k], pil_resize(x[0, k], (sh, sw)))
        if pil_width_first(h, w, sh, sw) is True:
            np.testing.assert_array_equal(ours[0, k], pil_resize(x[0, k], (sh, sw), one_call=True))


@pytest.mark.parametrize("h, w, sh, sw", shapes(4, 30, hi=24))
def test_pil_adversarial_values(h, w, sh, sw):
    rng = np.random.default_rng(h + 3 * w + 5 * sh + 7 * sw)
    x = adversarial_maps(rng, h, w)
    x = np.concatenate([x, np.full((1, 1, h, w), 3.4e38), np.where(rng.random((1, 1, h, w)) > 0.5, 3.4e38, -3.4e38),
                        np.full((1, 1, h, w), 3.5e38)], axis=1)  # float32 overflow on rounding and in sums
    with np.errstate(over="ignore", invalid="ignore"):
        ours = resize_maps(x, (sh, sw), "pil")
        for k in range(x.shape[1]):
            np.testing.assert_array_equal(ours[0, k], pil_resize(x[0, k], (sh, sw)))


# --------------------------------------------------------------------------- the function
def test_resize_maps_shapes_threads_and_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 20, 30))
    for method in RESIZE_METHODS:
        full = resize_maps(x, (9, 8), method)
        assert full.shape == (3, 4, 9, 8)
        np.testing.assert_array_equal(resize_maps(x[1], (9, 8), method), full[1])
        np.testing.assert_array_equal(resize_maps(x[1, 2], (9, 8), method), full[1, 2])
        for nt in (1, 2, 3):
            np.testing.assert_array_equal(resize_maps(x, (9, 8), method, num_threads=nt), full)
        assert resize_maps(x[:0], (9, 8), method).shape == (0, 4, 9, 8)
    np.testing.assert_array_equal(resize_maps(x, 5, "antialias"), resize_maps(x, (5, 5), "antialias"))
    with pytest.raises(ValueError, match="method must be one of"):
        resize_maps(x, (9, 8), "bicubic")
    with pytest.raises(ValueError, match=r"size must be a pair \(sh, sw\)"):
        resize_maps(x, (9, 8, 1))
    with pytest.raises(ValueError, match=r"size\[1\] must be >= 1"):
        resize_maps(x, (9, 0))
    with pytest.raises(TypeError, match="size.0. must be an integer"):
        resize_maps(x, (9.0, 8))
    with pytest.raises(ValueError, match=r"size\[0\] must be < 2\*\*31"):
        resize_maps(x, (2**31, 8))
    with pytest.raises(TypeError, match="maps must have a floating-point dtype"):
        resize_maps(x.astype(np.int32), (9, 8))
    with pytest.raises(ValueError, match=r"maps must have shape \(h, w\)"):
        resize_maps(x[None], (9, 8))
    with pytest.raises(ValueError, match="maps must be non-empty"):
        resize_maps(x[:, :, :0], (9, 8))
    bad = x.copy()
    bad[2, 1, 3, 4] = np.nan
    bad[2, 3, 0, 0] = np.nan
    for method in RESIZE_METHODS:
        with pytest.raises(ValueError, match=r"maps must not contain NaN \(map \[2, 1\]\)"):
            resize_maps(bad, (9, 8), method, num_threads=2)
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        resize_maps(x, (9, 8), num_threads=-1)


def test_huge_outputs_fail_before_allocating():
    one = np.zeros((1, 1))
    with pytest.raises(ValueError, match="overflows a 64-bit size"):
        resize_maps(one, (2**30, 2**30))
    with pytest.raises(MemoryError, match="MiB of memory are available"):
        resize_maps(one, (2**20, 2**20))
    with pytest.raises(MemoryError, match="MiB of memory are available"):
        resize_maps(np.zeros((2**20, 1, 1, 1)), (2**12, 2**12), "pil")


# --------------------------------------------------------------------------- IoUTally(resize=...)
def smooth_relu(rng, B, K, h, w):
    x = rng.standard_normal((B, K, h + 2, w + 2))
    x = (x[..., :-2, :] + x[..., 1:-1, :] + x[..., 2:, :]) / 3
    x = (x[..., :-2] + x[..., 1:-1] + x[..., 2:]) / 3
    return np.maximum(x, 0.0)


def tally_case(seed, B=6, K=5, h=23, w=19, sh=9, sw=8, NL=9, NC=3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    acts = smooth_relu(rng, B, K, h, w).astype(dtype)
    thr = np.quantile(acts.astype(np.float64).transpose(1, 0, 2, 3).reshape(K, -1), 0.85, axis=1)
    thr[0] = float(acts[0, 0].max())  # a unit whose threshold is one of its values (a tie)
    pl = rng.integers(0, NL, size=(B, 2, sh, sw)).astype(np.int16)
    il = rng.integers(0, NL, size=(B, 1))
    cat = rng.integers(0, NC, size=NL)
    return acts, thr, pl, il, cat, NL, NC, (sh, sw)


def aa_reference(acts, size):
    x = np.asarray(acts, np.float64)
    if TORCH_AA_EXACT:
        return torch_antialias(x, size)
    return antialias_formula(x, size)


def lite_reference(acts, thr, pl, il, cat, NL, NC, size, rule):
    masks = lite_masks(acts, thr, size)
    return iou_counts(acts, np.full(len(thr), 0.5), pl, il, None, cat, NL, NC, size, rule,
                      upsample=lambda a, s: masks.astype(np.float64))


def assert_counts(t, ref):
    I, L, A = ref
    np.testing.assert_array_equal(t.intersection, I)
    np.testing.assert_array_equal(t.label_pixels, L)
    np.testing.assert_array_equal(t.unit_pixels, A)


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("dtype", NUMPY_FLOATS)
@pytest.mark.parametrize("shape", [(23, 19, 9, 8), (16, 16, 8, 8), (8, 8, 8, 8), (5, 6, 13, 11), (30, 4, 7, 9)])
def test_tally_antialias_counts_equal_torch_reference(rule, dtype, shape):
    h, w, sh, sw = shape
    acts, thr, pl, il, cat, NL, NC, size = tally_case(h * w + sh, h=h, w=w, sh=sh, sw=sw, dtype=dtype)
    t = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, unit_rule=rule, resize="antialias")
    t.update(acts, thr, pl, il)
    assert_counts(t, iou_counts(acts, thr, pl, il, None, cat, NL, NC, size, rule, upsample=aa_reference))


@pytest.mark.parametrize("rule", ["annotated", "lite"])
@pytest.mark.parametrize("shape", [(23, 19, 9, 8), (64, 64, 32, 32), (8, 8, 8, 8), (5, 6, 13, 11), (30, 4, 7, 9)])
def test_tally_pil_counts_equal_lite_reference(rule, shape):
    h, w, sh, sw = shape
    acts, thr, pl, il, cat, NL, NC, size = tally_case(h + w * sh, B=4, h=h, w=w, sh=sh, sw=sw)
    t = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, unit_rule=rule, resize="pil")
    t.update(acts, thr, pl, il)
    assert_counts(t, lite_reference(acts, thr, pl, il, cat, NL, NC, size, rule))


def test_pil_binarization_compares_in_float32_as_lite():
    # Lite's `mask > threshold[unit_id]` compares float32 values with the float64
    # threshold in float32 (NumPy 1.x): a constant map of float32(0.1) does not
    # exceed T = 0.1000000001 there (float32(T) == float32(0.1)), though it
    # does in float64
    v = float(np.float32(0.1))
    acts = np.full((1, 2, 6, 6), v)
    thr = np.array([0.1000000001, 0.0999])
    assert v > thr[0] and np.float32(v) == np.float32(thr[0])
    t = IoUTally(2, 2, [0, 0], 1, output_size=(3, 3), resize="pil")
    t.update(acts, thr, np.ones((1, 1, 3, 3), np.int64))
    assert t.unit_pixels[:, 0].tolist() == [0, 9]
    np.testing.assert_array_equal(t.unit_pixels[:, 0], lite_masks(acts, thr, (3, 3)).sum(axis=(0, 2, 3)))
    t = IoUTally(2, 2, [0, 0], 1, output_size=(3, 3), resize="antialias")
    t.update(acts, thr, np.ones((1, 1, 3, 3), np.int64))
    assert t.unit_pixels[:, 0].tolist() == [9, 9]


def test_tally_chunks_failed_updates_and_nan(monkeypatch):
    monkeypatch.setattr(iou_mod, "_RESIZE_CHUNK_BYTES", 1)  # one image per chunk
    acts, thr, pl, il, cat, NL, NC, size = tally_case(11)
    for method in ("antialias", "pil"):
        t = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, resize=method)
        t.update(acts, thr, pl, il)
        one = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, resize=method)
        monkeypatch.setattr(iou_mod, "_RESIZE_CHUNK_BYTES", 1 << 25)
        one.update(acts, thr, pl, il)
        monkeypatch.setattr(iou_mod, "_RESIZE_CHUNK_BYTES", 1)
        assert_counts(t, (one.intersection, one.label_pixels, one.unit_pixels))
        assert t.images == one.images == acts.shape[0]
        before = (t.intersection, t.label_pixels, t.unit_pixels, t.images)
        bad = acts.copy()
        bad[4, 3, 2, 1] = np.nan
        with pytest.raises(ValueError, match=r"activations must not contain NaN \(image 4, unit 3\)"):
            t.update(bad, thr, pl, il)
        badl = pl.copy()
        badl[5, 0, 0, 0] = NL  # found by the tally of the last chunk
        with pytest.raises(ValueError):
            t.update(acts, thr, badl, il)
        after = (t.intersection, t.label_pixels, t.unit_pixels, t.images)
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)
        t.update(acts[:0], thr, pl[:0], il[:0])  # B = 0: no-op
        assert t.images == acts.shape[0]


def test_tally_resize_is_recorded_merged_and_pickled():
    acts, thr, pl, il, cat, NL, NC, size = tally_case(3)
    tallies = {}
    for method in RESIZE_METHODS:
        t = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, resize=method)
        t.update(acts, thr, pl, il)
        assert t.resize == method and f"resize={method!r}" in repr(t)
        st = t.state_dict()
        assert st["resize"] == method
        back = IoUTally.from_state_dict(st)
        assert back.resize == method
        np.testing.assert_array_equal(back.intersection, t.intersection)
        assert pickle.loads(pickle.dumps(t)).resize == method
        tallies[method] = t
    # a state written before the option existed is the bilinear resize
    st = tallies["bilinear"].state_dict()
    del st["resize"], st["digest"]  # (nor the digest, which came later too)
    assert IoUTally.from_state_dict(st).resize == "bilinear"
    with pytest.raises(ValueError, match="resize must be one of"):
        IoUTally.from_state_dict({**tallies["pil"].state_dict(), "resize": "nearest"})
    with pytest.raises(ValueError, match="other must use the same resize"):
        tallies["pil"].merge(tallies["antialias"])
    a = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, resize="pil")
    a.update(acts[:3], thr, pl[:3], il[:3])
    b = IoUTally(acts.shape[1], NL, cat, NC, output_size=size, resize="pil")
    b.update(acts[3:], thr, pl[3:], il[3:])
    assert_counts(a.merge(b), (tallies["pil"].intersection, tallies["pil"].label_pixels,
                               tallies["pil"].unit_pixels))
    with pytest.raises(ValueError, match="resize must be one of"):
        IoUTally(2, 3, [0, 0, 1], 2, output_size=(4, 4), resize="area")


def test_modes_differ_only_when_shrinking():
    # upsampled and same-size layers: the three resizes give the same counts on
    # smooth data; a downsampled layer: antialias and pil smooth, bilinear subsamples
    rng = np.random.default_rng(8)
    for (h, w), same in (((4, 4), True), ((8, 8), True), ((32, 32), False)):
        acts = smooth_relu(rng, 8, 6, h, w).astype(np.float32)
        thr = np.quantile(acts.transpose(1, 0, 2, 3).reshape(6, -1), 0.9, axis=1)
        pl = rng.integers(0, 5, (8, 1, 8, 8))
        ious = {}
        for method in RESIZE_METHODS:
            t = IoUTally(6, 5, [0, 0, 0, 1, 1], 2, output_size=(8, 8), resize=method)
            t.update(acts, thr, pl)
            ious[method] = t.iou()
        np.testing.assert_array_equal(ious["antialias"], ious["pil"])
        assert np.array_equal(ious["bilinear"], ious["antialias"]) == same


def test_kernel_variants_give_the_same_values(monkeypatch):
    # the AVX2+FMA variants (all the CPU has) and the portable ones
    # (INTERP_ENGINE_ISA=generic); bilinear runs the IoU tally's row kernels
    rng = np.random.default_rng(9)
    for h, w, sh, sw in shapes(6, 30):
        x = adversarial_maps(rng, h, w)
        with np.errstate(invalid="ignore", over="ignore"):
            for method in ("bilinear", "antialias", "pil"):
                monkeypatch.delenv("INTERP_ENGINE_ISA", raising=False)
                fast = resize_maps(x, (sh, sw), method)
                monkeypatch.setenv("INTERP_ENGINE_ISA", "generic")
                np.testing.assert_array_equal(resize_maps(x, (sh, sw), method), fast)
                thr = np.array([np.median(m[np.isfinite(m)]) if np.isfinite(m).any() else 0.0 for m in x[0]])
                slow = _core.resize_above(x, "f64", thr, sh, sw, method, 0, "x", False, 0)
                monkeypatch.delenv("INTERP_ENGINE_ISA")
                np.testing.assert_array_equal(_core.resize_above(x, "f64", thr, sh, sw, method, 0, "x", False, 0),
                                              slow)


def test_maps_that_cannot_fire_are_skipped_exactly():
    # antialias skips maps whose maximum is below T by more than the rounding
    # bound; the binary maps still equal `resize > T` everywhere, here with T
    # just above, at and just below each map's largest resized value
    rng = np.random.default_rng(10)
    for h, w, sh, sw in [(9, 7, 4, 3), (3, 3, 11, 12), (40, 40, 5, 5), (6, 6, 6, 6)]:
        x = np.concatenate([np.full((1, 2, h, w), 0.3), rng.standard_normal((1, 4, h, w))], axis=1)
        up = resize_maps(x, (sh, sw), "antialias")
        peak = up.max(axis=(2, 3))[0]
        for thr in (peak, np.nextafter(peak, np.inf), np.nextafter(peak, -np.inf), x.max(axis=(2, 3))[0]):
            got = _core.resize_above(x, "f64", thr, sh, sw, "antialias", 0, "x", False, 0)
            np.testing.assert_array_equal(got, (up > thr[None, :, None, None]).astype(np.float32))


@needs_torch
def test_cli_resize_flag(tmp_path, capsys):
    from interp_engine import cli
    from interp_engine.data import concept_dataset
    from interp_engine.methods.dissection import DissectionResult

    root = concept_dataset(tmp_path / "ds", seed=3, num_images=20)
    for extra, expected in (([], "bilinear"), (["--unit-rule", "lite"], "pil"),
                            (["--unit-rule", "lite", "--resize", "antialias"], "antialias")):
        out = tmp_path / f"out-{expected}-{len(extra)}"
        rc = cli.main(["dissect", "--dataset", str(root), "--out", str(out), "--layer", "conv1", "--quiet",
                       "--top-k", "1", *extra])
        assert rc == 0, capsys.readouterr().err
        assert DissectionResult.load(out / "result.npz").config["resize"] == expected
    with pytest.raises(SystemExit) as exc:
        cli.main(["dissect", "--resize", "nearest"])
    assert exc.value.code == 2 and "--resize" in capsys.readouterr().err


def test_tally_resize_is_interruptible(tmp_path):
    # Ctrl-C during a long update (maps read in place through zero strides, so
    # the batch takes no memory): KeyboardInterrupt soon, counts unchanged

    code = """
import os, signal, threading, time
import numpy as np
from interp_engine.engine.iou import IoUTally
acts = np.broadcast_to(np.float32(1.0), (4000, 64, 128, 128))
labels = np.ones((4000, 1, 64, 64), np.int8)
t = IoUTally(64, 2, [0, 0], 1, output_size=(64, 64), resize="antialias", num_threads=2)
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    t.update(acts, np.full(64, 0.5), labels)
    print("finished", time.perf_counter() - t0)
except KeyboardInterrupt:
    print("interrupted", time.perf_counter() - t0, t.images, int(t.unit_pixels.sum()))
"""
    res = _child.run_code(code, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    word, elapsed, *rest = res.stdout.split()
    assert word == "interrupted" and rest == ["0", "0"], res.stdout
    assert float(elapsed) < 5.0, res.stdout


def test_the_tally_interpolation_is_the_identity_at_scale_one():
    # why tallying the binary maps at identity scale is exact: the on-the-fly
    # interpolation returns its finite input unchanged when in == out
    rng = np.random.default_rng(12)
    for h, w in [(1, 1), (1, 7), (9, 1), (32, 32), (112, 96)]:
        for a in (rng.standard_normal((h, w)) * 1e3, (rng.random((h, w)) > 0.7).astype(np.float64)):
            np.testing.assert_array_equal(_core.iou_upsample_bilinear(a, h, w), a)
