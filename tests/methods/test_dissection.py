"""Network Dissection end to end (interp_engine.methods.dissection) against a
slow per-image, per-unit numpy reference."""
from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from interp_engine.methods.dissection import (Dissection, DissectionResult, dissect,  # noqa: E402
                                              random_rotation, rotation_experiment)
from reference import iou_counts, iou_from_counts  # noqa: E402

CATS = ["color", "part", "scene"]
# label numbers: 1-3 colours, 4-5 parts, 6-7 scenes; label 8 belongs to no selected category
NAMES = ["-", "red", "green", "blue", "wheel", "door", "beach", "forest", "orphan"]
LABEL_CAT = np.array([0, 0, 0, 0, 1, 1, 2, 2, -1])


class MemoryBroden(torch.utils.data.Dataset):
    """An in-memory dataset with the BrodenDataset interface."""

    def __init__(self, n=23, size=16, seed=0):
        rng = np.random.default_rng(seed)
        self.label_names = NAMES
        self.label_category = LABEL_CAT
        self.categories = CATS
        self.num_categories = 3
        self.pixel_size = (size // 2, size // 2)
        s = size // 2
        self.images = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        pix = np.zeros((n, 2, s, s), np.int32)
        for i in range(n):
            for _ in range(rng.integers(0, 3)):
                y, x = rng.integers(0, s, 2)
                hh, ww = rng.integers(1, s // 2 + 1, 2)
                pix[i, 0, y:y + hh, x:x + ww] = rng.integers(1, 4)
            if rng.random() < 0.6:
                y, x = rng.integers(0, s, 2)
                pix[i, 1, y:, x:] = rng.integers(4, 6)
            # make colour pixels drive the input so that units can detect them
            up = np.kron(pix[i, 0] == 1, np.ones((2, 2)))
            self.images[i, 0] += 3.0 * up
        self.pixel_labels = pix
        scene = rng.integers(0, 3, n)  # 0 = none
        self.image_labels = np.where(scene == 0, 0, scene + 5).astype(np.int32)[:, None]
        self.image_categories = np.stack([(pix[:, 0] != 0).any(axis=(1, 2)), (pix[:, 1] != 0).any(axis=(1, 2)),
                                          scene != 0], axis=1)

    def label_category_for_tally(self):
        return np.where(self.label_category < 0, 0, self.label_category)

    def __len__(self):
        return self.images.shape[0]

    def load_image(self, i):
        im = self.images[i].transpose(1, 2, 0)
        return ((im - im.min()) / (np.ptp(im) + 1e-9) * 255).astype(np.uint8)

    def __getitem__(self, i):
        return {"image": torch.from_numpy(self.images[i]), "pixel_labels": torch.from_numpy(self.pixel_labels[i]),
                "image_labels": torch.from_numpy(self.image_labels[i]),
                "image_categories": torch.from_numpy(self.image_categories[i]), "index": i}


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 5, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(5),
        torch.nn.ReLU(),
        torch.nn.Conv2d(5, 4, 3, stride=2, padding=1),
    ).eval()


def explain(model, layers, data, **settings):
    """``Dissection(model, layers, **settings).explain(data)`` (the deprecated
    ``dissect`` shorthand has its own test)."""
    return Dissection(model, layers, **settings).explain(data)


def reference_layer(model, layer_index, ds, q=0.005, unit_rule="annotated", acts_fn=None):
    """Per image, per unit, in numpy: activations computed by running the
    submodules by hand, thresholds by np.quantile, counts by the IoU reference."""
    x = torch.from_numpy(ds.images)
    with torch.no_grad():
        for i, m in enumerate(model):
            x = m(x)
            if i == layer_index:
                break
    acts = x.numpy().astype(np.float64)
    if acts_fn is not None:
        acts = acts_fn(acts)
    K = acts.shape[1]
    vals = acts.transpose(1, 0, 2, 3).reshape(K, -1)
    thr = np.array([np.quantile(vals[k], 1 - q) for k in range(K)])
    counts = iou_counts(acts, thr, ds.pixel_labels, ds.image_labels, ds.image_categories,
                        ds.label_category_for_tally(), len(NAMES), 3, ds.pixel_size, unit_rule=unit_rule)
    return acts, thr, counts


@pytest.fixture(scope="module")
def ds():
    return MemoryBroden()


@pytest.mark.parametrize("unit_rule", ["annotated", "lite"])
@pytest.mark.parametrize("batch_size", [4, 23])
def test_matches_slow_reference(ds, unit_rule, batch_size):
    model = make_model()
    res = explain(model, ["2", "4"], ds, quantile=0.05, unit_rule=unit_rule, batch_size=batch_size,
                  resize="bilinear", progress=False)
    for name, idx in (("2", 2), ("4", 4)):
        _, thr, (I, L, A) = reference_layer(model, idx, ds, q=0.05, unit_rule=unit_rule)
        r = res[name]
        np.testing.assert_array_equal(r.thresholds, thr)
        np.testing.assert_array_equal(r.intersection, I)
        np.testing.assert_array_equal(r.label_pixels, L)
        np.testing.assert_array_equal(r.unit_pixels, A)
        np.testing.assert_array_equal(r.iou, iou_from_counts(I, L, A, ds.label_category_for_tally()))


def test_approx_thresholds_are_the_sketch(ds):
    model = make_model()
    res = explain(model, "4", ds, quantile=0.05, thresholds="approx", progress=False)
    acts, thr, _ = reference_layer(model, 4, ds, q=0.05)
    r = res["4"]
    # the sketch keeps every value at this size, so its estimate is within one order statistic
    vals = np.sort(acts.transpose(1, 0, 2, 3).reshape(acts.shape[1], -1), axis=1)
    for k in range(acts.shape[1]):
        frac_below = np.mean(vals[k] < r.thresholds[k])
        assert abs(frac_below - 0.95) <= 2.0 / vals.shape[1] + 1e-4
    I, L, A = iou_counts(acts, r.thresholds, ds.pixel_labels, ds.image_labels, ds.image_categories,
                         ds.label_category_for_tally(), len(NAMES), 3, ds.pixel_size)
    np.testing.assert_array_equal(r.intersection, I)


def test_labels_and_summary_follow_the_definitions(ds):
    r = explain(make_model(), "4", ds, quantile=0.05, progress=False)["4"]
    iou = r.iou
    for u in range(r.num_units):
        best = {}
        for c in range(3):
            labs = [lab for lab in range(1, len(NAMES)) if LABEL_CAT[lab] == c]
            vals = [iou[u, lab] for lab in labs]
            best[c] = (labs[int(np.argmax(vals))], max(vals))
            assert r.category_best_label[u, c] == best[c][0]
            assert r.category_best_iou[u, c] == best[c][1]
        c_star = max(range(3), key=lambda c: (best[c][1], -c))
        assert r.best_category[u] == c_star
        assert r.best_label[u] == best[c_star][0]
        assert r.best_iou[u] == best[c_star][1]
    assert r.best_label.max() < 8  # the orphan label is never a unit's label
    s = r.summary()
    det = r.best_iou >= 0.04
    assert s["detectors"] == int(det.sum())
    assert s["unique_detectors"] == len(set(r.best_label[det].tolist()))
    assert sum(v["detectors"] for v in s["per_category"].values()) == s["detectors"]
    rows = r.table()
    assert [row["iou"] for row in rows] == sorted((row["iou"] for row in rows), reverse=True)


def test_top_images_are_the_largest_maxima(ds):
    model = make_model()
    r = explain(model, "4", ds, quantile=0.05, top_k=5, batch_size=6, progress=False)["4"]
    acts, _, _ = reference_layer(model, 4, ds, q=0.05)
    mx = acts.max(axis=(2, 3))  # (N, K)
    for k in range(acts.shape[1]):
        order = sorted(range(len(ds)), key=lambda i: (-np.float32(mx[i, k]), i))[:5]
        assert r.top_images[k].tolist() == order
        np.testing.assert_allclose(r.top_maps[k], acts[order, k].astype(np.float32))


def test_more_top_images_than_dataset(ds):
    r = explain(make_model(), "4", ds, quantile=0.05, top_k=30, progress=False)["4"]
    assert (r.top_images[:, len(ds):] == -1).all()
    assert sorted(r.top_images[0, :len(ds)].tolist()) == list(range(len(ds)))


def test_csv_in_netdissect_lite_columns(ds, tmp_path):
    r = explain(make_model(), "4", ds, quantile=0.05, progress=False)["4"]
    path = r.to_csv(tmp_path / "tally.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    header = ["unit", "category", "label", "score"]
    for c in CATS:
        header += [f"{c}-label", f"{c}-truth", f"{c}-activation", f"{c}-intersect", f"{c}-iou"]
    assert list(rows[0].keys()) == header
    assert len(rows) == r.num_units
    for row in rows:
        u = int(row["unit"]) - 1
        assert row["label"] == NAMES[r.best_label[u]]
        assert float(row["score"]) == r.best_iou[u]
        for c, cat in enumerate(CATS):
            lab = r.category_best_label[u, c]
            assert row[f"{cat}-label"] == NAMES[lab]
            assert int(row[f"{cat}-truth"]) == r.label_pixels[lab]
            assert int(row[f"{cat}-activation"]) == r.unit_pixels[u, c]
            assert int(row[f"{cat}-intersect"]) == r.intersection[u, lab]
            i_ = r.intersection[u, lab]
            den = r.unit_pixels[u, c] + r.label_pixels[lab] - i_
            assert float(row[f"{cat}-iou"]) == (i_ / den if den else 0.0)
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_save_load_roundtrip(ds, tmp_path):
    res = explain(make_model(), ["2", "4"], ds, quantile=0.05, progress=False, rotations=[3])
    path = res.save(tmp_path / "result.npz")
    back = DissectionResult.load(path)
    assert list(back) == list(res)
    for name in res:
        a, b = res[name], back[name]
        for attr in ("thresholds", "iou", "intersection", "label_pixels", "unit_pixels", "top_images",
                     "top_values", "top_maps", "label_category"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        assert (a.layer, a.label_names, a.categories, a.basis) == (b.layer, b.label_names, b.categories, b.basis)
    assert back.config == res.config
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(Exception):
        DissectionResult.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        DissectionResult.load(tmp_path / "missing.npz")


def test_rotation_equals_a_rotated_model(ds):
    model = make_model()
    res = explain(model, "4", ds, quantile=0.05, rotations=[7], progress=False)
    q = random_rotation(5, 7).numpy()
    assert np.allclose(q @ q.T, np.eye(5))
    _, thr, (I, L, A) = reference_layer(model, 4, ds, q=0.05,
                                        acts_fn=lambda a: np.einsum("bkhw,jk->bjhw", a, q))
    r = res["4@rotation7"]
    assert r.basis == "rotation7"
    np.testing.assert_allclose(r.thresholds, thr, rtol=1e-12, atol=1e-12)
    # counts may differ only where a value sits within rounding of its threshold: compare IoU closely
    assert np.abs(r.intersection - I).sum() <= 0.001 * max(1, I.sum())
    exp = res.rotation_summary("4", 7)
    assert exp["unique_units"] == res["4"].summary()["unique_detectors"]
    assert exp["unique_rotated"] == r.summary()["unique_detectors"]
    assert exp["rotated"] is r and res.rotation_summary("4") == exp  # the layer's only rotation


def test_rotation_summary_names_the_missing_rotation(ds):
    res = explain(make_model(), "4", ds, quantile=0.05, rotations=[1, 2], progress=False)
    with pytest.raises(ValueError, match=r"seed must name one of the rotations of layer '4'.*\['1', '2'\]"):
        res.rotation_summary("4")
    with pytest.raises(ValueError, match=r"seed: this result has no layer '4@rotation3'"):
        res.rotation_summary("4", 3)
    with pytest.raises(TypeError, match="seed"):
        res.rotation_summary("4", "1")
    with pytest.raises(KeyError, match="no layer '5'"):
        res.rotation_summary("5", 1)


# ----------------------------------------------------------------------------- the deprecated verbs
def _same_result(a, b):
    assert list(a) == list(b)
    for name in a:
        for attr in ("thresholds", "iou", "intersection", "label_pixels", "unit_pixels", "top_images",
                     "top_values", "top_maps"):
            np.testing.assert_array_equal(getattr(a[name], attr), getattr(b[name], attr))


def test_run_is_a_deprecated_alias_of_explain(ds):
    kw = dict(quantile=0.05, rotations=[2], progress=False)
    with pytest.warns(DeprecationWarning, match=r"Dissection.run is deprecated; use Dissection.explain"):
        old = Dissection(make_model(), "4", **kw).run(ds)
    _same_result(old, explain(make_model(), "4", ds, **kw))


def test_dissect_is_a_deprecated_alias(ds):
    kw = dict(quantile=0.05, progress=False)
    with pytest.warns(DeprecationWarning, match=r"dissect is deprecated; use Dissection\(model, layers"):
        old = dissect(make_model(), ["2", "4"], ds, **kw)
    _same_result(old, explain(make_model(), ["2", "4"], ds, **kw))


def test_rotation_experiment_is_a_deprecated_alias(ds):
    kw = dict(quantile=0.05, progress=False)
    with pytest.warns(DeprecationWarning, match=r"rotation_experiment is deprecated; use .*rotations=\[seed\]"):
        old = rotation_experiment(make_model(), "4", ds, seed=7, **kw)
    new = explain(make_model(), ["4"], ds, rotations=[7], **kw).rotation_summary("4", 7)
    assert set(old) == set(new)
    for k in ("unique_units", "unique_rotated", "detectors_units", "detectors_rotated"):
        assert old[k] == new[k]
    for k in ("units", "rotated"):
        np.testing.assert_array_equal(old[k].iou, new[k].iou)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="seed"):
        rotation_experiment(make_model(), "4", "/nonexistent", seed="x")


def test_activation_cache_runs_model_once(ds, tmp_path):
    model = make_model()
    calls = []
    model[0].register_forward_hook(lambda *a: calls.append(1))
    res = explain(model, "4", ds, quantile=0.05, activation_cache=True, batch_size=8, progress=False)
    assert len(calls) == 3  # one pass over 23 images in batches of 8
    model._forward_hooks.clear()
    model[0]._forward_hooks.clear()
    _, thr, (I, L, A) = reference_layer(model, 4, ds, q=0.05,
                                        acts_fn=lambda a: a.astype(np.float16).astype(np.float64))
    np.testing.assert_array_equal(res["4"].thresholds, thr)
    np.testing.assert_array_equal(res["4"].intersection, I)
    np.testing.assert_array_equal(res["4"].unit_pixels, A)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("where", [("quantiles", 3), ("exact", 2), ("iou", 4)])
@pytest.mark.parametrize("cache", [False, True])
def test_checkpoint_resume_gives_the_same_result(ds, tmp_path, where, cache):
    model = make_model()
    kw = dict(quantile=0.05, batch_size=3, checkpoint_every=2, progress=False, activation_cache=cache)
    full = explain(model, ["2", "4"], ds, **kw)
    ck = tmp_path / "ck"
    d = Dissection(model, ["2", "4"], checkpoint_dir=ck, **kw)

    def boom(pass_name, b):
        if (pass_name, b) == where:
            raise _Interrupt()

    d._after_batch = boom
    with pytest.raises(_Interrupt):
        d.explain(ds)
    assert (ck / "dissection_checkpoint.npz").is_file()
    resumed = Dissection(model, ["2", "4"], checkpoint_dir=ck, **kw)
    seen = []
    resumed._after_batch = lambda p, b: seen.append((p, b))
    res = resumed.explain(ds)
    # resumed from the last checkpoint of that pass (the exact pass included), not from its start
    assert (where[0], 0) not in seen
    for name in ("2", "4"):
        for attr in ("thresholds", "intersection", "label_pixels", "unit_pixels", "top_images", "top_maps"):
            np.testing.assert_array_equal(getattr(res[name], attr), getattr(full[name], attr))
    with pytest.raises(ValueError, match="other arguments"):
        Dissection(model, ["2", "4"], checkpoint_dir=ck, **dict(kw, quantile=0.1)).explain(ds)


def test_model_left_as_it_was(ds):
    model = make_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain(model, "4", ds, quantile=0.05, progress=False)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm stats untouched: the run is in eval mode
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_arguments(ds):
    model = make_model()
    with pytest.raises(ValueError, match="close matches|unknown|4"):
        Dissection(model, "44")
    with pytest.raises(ValueError, match="quantile"):
        Dissection(model, "4", quantile=0.0)
    with pytest.raises(ValueError, match="thresholds"):
        Dissection(model, "4", thresholds="exactly")
    with pytest.raises(ValueError, match="unit_rule"):
        Dissection(model, "4", unit_rule="other")
    with pytest.raises(ValueError, match="layers"):
        Dissection(model, [])
    with pytest.raises(ValueError, match="repeat"):
        Dissection(model, ["4", "4"])
    with pytest.raises(TypeError, match="nn.Module"):
        Dissection(object(), "4")
    with pytest.raises(ValueError, match="batch_size"):
        Dissection(model, "4", batch_size=0)
    with pytest.raises(TypeError, match="Broden"):
        Dissection(model, "4").explain([1, 2, 3])
    with pytest.raises(ValueError, match="rotations"):
        Dissection(model, "4", rotations=[-1])


def test_html_report(ds, tmp_path):
    from interp_engine.report import overlay_mask, write_report

    res = explain(make_model(), ["2", "4"], ds, quantile=0.05, top_k=3, progress=False)
    index = write_report(res, ds, tmp_path / "report", thumb_size=32)
    text = index.read_text()
    assert 'href="2.html"' in text and 'href="4.html"' in text
    page = (tmp_path / "report" / "4.html").read_text()
    r = res["4"]
    # units appear in IoU order, each with its strip of top images
    pos = [page.index(f'id="unit{u}"') for u in r.unit_order()]
    assert pos == sorted(pos)
    for u in range(r.num_units):
        assert (tmp_path / "report" / "images" / f"4_unit{u:04d}.png").is_file()
    assert (tmp_path / "report" / "4_tally.csv").is_file()
    assert "<script" not in page and "http" not in page  # self-contained, opens offline
    # the overlay keeps exactly the pixels above the threshold at full brightness
    img = np.full((8, 8, 3), 200, np.uint8)
    m = np.zeros((2, 2))
    m[0, 0] = 1.0
    up = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size=(8, 8), mode="bilinear",
                                         align_corners=False)[0, 0].numpy()
    ov = overlay_mask(img, m, 0.5)
    inside = up > 0.5
    assert (ov[~inside] == 50).all()
    assert ((ov[inside] == 200) | (ov[inside] == [255, 220, 0])).all()
    with pytest.raises(ValueError, match="uint8"):
        overlay_mask(img.astype(np.float32), m, 0.5)


def test_end_to_end_on_broden_files_matches_slow_reference(tmp_path):
    """Write a tiny Broden-format directory, dissect it through the reader,
    and compare with a reference that reads the files itself (PIL, R + 256*G)
    and counts per image and per unit."""
    from PIL import Image

    from interp_engine.data import BrodenDataset
    from interp_engine.data.writer import write_broden

    mem = MemoryBroden(n=14, seed=3)
    imgs = [mem.load_image(i) for i in range(len(mem))]
    cats = ["color", "part", "scene"]
    pix = {"color": [m[0] if (m[0] != 0).any() else None for m in mem.pixel_labels],
           "part": [m[1] if (m[1] != 0).any() else None for m in mem.pixel_labels]}
    scene = {"scene": [[int(s)] if s else [] for s in mem.image_labels[:, 0]]}
    names = NAMES[:8]
    lcats = [None] + ["color"] * 3 + ["part"] * 2 + ["scene"] * 2
    root = write_broden(tmp_path / "broden", imgs, label_names=names, label_categories=lcats, categories=cats,
                        pixel_labels=pix, image_labels=scene)
    ds = BrodenDataset(root, transform="netdissect")
    model = make_model()
    res = explain(model, "4", ds, quantile=0.1, batch_size=5, progress=False)["4"]

    # the reference: read index.csv and the files by hand
    with open(root / "index.csv") as f:
        rows = list(csv.DictReader(f))
    mean = np.array([124.6901, 118.6897, 109.5388], np.float32)
    x = []
    P = np.zeros((len(rows), 2) + tuple(ds.pixel_size), np.int64)
    S = np.zeros((len(rows), 1), np.int64)
    annotated = np.zeros((len(rows), 3), bool)
    for i, row in enumerate(rows):
        with Image.open(root / "images" / row["image"]) as im:
            rgb = np.asarray(im.convert("RGB"), np.float32)
        x.append(((rgb - mean) / np.float32(255 * 0.224)).transpose(2, 0, 1))
        for c, cat in enumerate(["color", "part"]):
            if row[cat]:
                with Image.open(root / "images" / row[cat]) as im:
                    lab = np.asarray(im.convert("RGB")).astype(np.int64)
                P[i, c] = lab[..., 0] + 256 * lab[..., 1]
                annotated[i, c] = True
        if row["scene"]:
            S[i, 0] = int(row["scene"])
            annotated[i, 2] = True
    with torch.no_grad():
        # NCHW-contiguous as the DataLoader gives it: a stack of transposed arrays keeps their
        # channels-last layout, and torch 2.13 convolves that with other rounding
        acts = model[:5](torch.tensor(np.ascontiguousarray(np.stack(x)), dtype=torch.float32)).numpy().astype(np.float64)
    K = acts.shape[1]
    vals = acts.transpose(1, 0, 2, 3).reshape(K, -1)
    thr = np.array([np.quantile(vals[k], 0.9) for k in range(K)])
    cat_of = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    I, L, A = iou_counts(acts, thr, P, S, annotated, cat_of, 8, 3, ds.pixel_size)
    np.testing.assert_array_equal(res.thresholds, thr)
    np.testing.assert_array_equal(res.intersection, I)
    np.testing.assert_array_equal(res.label_pixels, L)
    np.testing.assert_array_equal(res.unit_pixels, A)
    assert I.sum() > 0 and (L[1:] > 0).all()


@pytest.mark.skipif(not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser")),
                    reason="needs Debian's chromium for the headless rendering check")
def test_report_renders_in_headless_chromium(ds, tmp_path):
    """The report opens offline in a real browser: a screenshot of a layer page
    is drawn with the bar charts and the unit strips (not a blank page)."""
    import shutil
    import subprocess

    from PIL import Image

    from interp_engine.report import write_report

    res = explain(make_model(), "4", ds, quantile=0.05, top_k=3, progress=False)
    write_report(res, ds, tmp_path / "report", thumb_size=48)
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    subprocess.explain([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=900,1200",
                    (tmp_path / "report" / "4.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    # the blue bars of the charts and the dimmed thumbnails are drawn
    blue = (np.abs(img - np.array([0x4a, 0x7b, 0xd0])).sum(axis=2) < 30).sum()
    dark = (img.sum(axis=2) < 200).sum()
    assert blue > 100 and dark > 500, (blue, dark)


# ----------------------------------------------------------------------------- checkpoint keys (issue 14, item 6)
@pytest.fixture(scope="module")
def broden_dir(tmp_path_factory):
    from interp_engine.data import concept_dataset

    return concept_dataset(tmp_path_factory.mktemp("dis_ck") / "ds", seed=3, num_images=24)


def _bundled(scale=1.0):
    from interp_engine.models import load_default_model

    m = load_default_model()
    if scale != 1.0:
        with torch.no_grad():
            m.conv4[0].weight.mul_(scale)
    return m


def _refused(model, layers, dataset, ck, match, **kw):
    kw = dict(dict(quantile=0.05, thresholds="approx", batch_size=8, progress=False, top_k=2), **kw)
    with pytest.raises(ValueError, match=match) as exc:
        Dissection(model, layers, checkpoint_dir=ck, **kw).explain(dataset)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_checkpoint_of_another_model_data_or_setting_is_refused(broden_dir, tmp_path):
    from interp_engine.data import BrodenDataset

    ck = tmp_path / "ck"
    kw = dict(quantile=0.05, thresholds="approx", batch_size=8, progress=False, top_k=2)
    ds = BrodenDataset(broden_dir, transform="unit")
    first = Dissection(_bundled(), ["conv3", "conv4"], checkpoint_dir=ck, **kw).explain(ds)
    # the same run resumes from the finished checkpoint: the model does not run again
    again = Dissection(_bundled(), ["conv3", "conv4"], checkpoint_dir=ck, **kw)
    res = again.explain(BrodenDataset(broden_dir, transform="unit"))
    assert res.timings["forward"] == 0.0 and again.resumed["finished"] == ["quantiles", "iou"]
    np.testing.assert_array_equal(res["conv4"].intersection, first["conv4"].intersection)
    # other weights (one layer scaled by 1.001), other buffers
    _refused(_bundled(1.001), ["conv3", "conv4"], ds, ck, r"the model's parameters and buffers \(weights\)")
    m = _bundled()
    m.conv1[1].running_mean.add_(1e-6)
    _refused(m, ["conv3", "conv4"], ds, ck, r"model\.parameters")
    # another architecture with the same parameter names: its module tree differs
    m = _bundled()
    m.conv1[2] = torch.nn.LeakyReLU()
    _refused(m, ["conv3", "conv4"], ds, ck, r"the model's module tree")
    # another transform, other rows, other categories
    _refused(_bundled(), ["conv3", "conv4"], BrodenDataset(broden_dir, transform="imagenet"), ck,
             r"the transform \[data\.transform\.name\] \(was unit, now imagenet\)")
    _refused(_bundled(), ["conv3", "conv4"], BrodenDataset(broden_dir, transform="unit", max_images=20), ck,
             r"the dataset's selected rows")
    _refused(_bundled(), ["conv3", "conv4"], BrodenDataset(broden_dir, transform="unit", split="train"), ck,
             r"data\.split \(was null, now train\)")
    _refused(_bundled(), ["conv3", "conv4"], BrodenDataset(broden_dir, transform="unit", categories=["color"]), ck,
             r"categories")
    # other layers and settings
    _refused(_bundled(), ["conv4"], ds, ck, r"the layers \[layers\]")
    for setting, match in ((dict(top_k=3), "top_k"), (dict(unit_rule="lite"), "unit_rule"),
                           (dict(rotations=[1]), "rotations"), (dict(thresholds="exact"), "thresholds"),
                           (dict(batch_size=4), "batch_size"), (dict(quantile=0.1), "quantile"),
                           (dict(seed=1), "seed"), (dict(activation_cache=True), "activation_cache")):
        _refused(_bundled(), ["conv3", "conv4"], ds, ck, match, **setting)
    # what does not change the result does not refuse: where the data lives, threads, progress, workers
    moved = tmp_path / "moved"
    import shutil

    shutil.copytree(broden_dir, moved)
    res = Dissection(_bundled(), ["conv3", "conv4"], checkpoint_dir=ck, num_threads=1, **kw).explain(
        BrodenDataset(moved, transform="unit"))
    np.testing.assert_array_equal(res["conv3"].unit_pixels, first["conv3"].unit_pixels)


def _scale_transform(scale):
    def transform(img):
        return torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1) * scale
    return transform


def test_callable_transforms_are_told_apart_by_their_output(broden_dir, tmp_path):
    from interp_engine._fingerprint import transform_fingerprint
    from interp_engine.data import BrodenDataset

    ck = tmp_path / "ck"
    kw = dict(quantile=0.05, thresholds="approx", batch_size=8, progress=False, top_k=2)
    ds = BrodenDataset(broden_dir, transform=_scale_transform(1 / 255))
    Dissection(_bundled(), "conv4", checkpoint_dir=ck, **kw).explain(ds)
    # the same function rebuilt (another object, same output) resumes; other constants are refused
    Dissection(_bundled(), "conv4", checkpoint_dir=ck, **kw).explain(
        BrodenDataset(broden_dir, transform=_scale_transform(1 / 255)))
    msg = _refused(_bundled(), "conv4", BrodenDataset(broden_dir, transform=_scale_transform(2 / 255)), ck,
                   r"the transform's output \[data\.transform\.probe\]")
    assert "data.transform.name" not in msg  # one name for both: the output tells them apart
    fp = transform_fingerprint(_scale_transform(1.0), [np.zeros((4, 4, 3), np.uint8)])
    assert fp["name"].endswith("_scale_transform.<locals>.transform") and len(fp["probe"]) == 32
    noisy = transform_fingerprint(lambda img: torch.rand(3, 2, 2), [np.zeros((4, 4, 3), np.uint8)])
    assert noisy["probe"] == "nondeterministic"


def test_model_fingerprint_covers_every_tensor_and_dtype():
    from interp_engine._fingerprint import model_fingerprint

    m = make_model()
    a = model_fingerprint(m)
    assert a == model_fingerprint(make_model())  # deterministic, copy-independent
    assert a["tensors"] == len(list(m.parameters())) + len(list(m.buffers()))
    assert a["bytes"] == sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        with torch.no_grad():
            flat = t.view(-1)
            old = flat[-1].clone()
            flat[-1] = old + 1
            assert model_fingerprint(m)["parameters"] != a["parameters"], name
            flat[-1] = old
    assert model_fingerprint(m) == a
    # dtypes numpy does not have, 0-d buffers, complex, empty
    n = torch.nn.Module()
    n.register_buffer("b", torch.ones(3, dtype=torch.bfloat16))
    n.register_buffer("z", torch.zeros((), dtype=torch.int64))
    n.register_buffer("c", torch.ones(2, dtype=torch.complex64))
    n.register_buffer("e", torch.zeros(0))
    f1 = model_fingerprint(n)
    n.b[1] = 2
    assert model_fingerprint(n)["parameters"] != f1["parameters"]
    n.b[1] = 1
    n.z.fill_(1)
    assert model_fingerprint(n)["parameters"] != f1["parameters"]


def test_activation_cache_is_keyed_and_checked(ds, tmp_path):
    """Two models share one cache_dir without sharing files; a checkpoint
    whose cache was overwritten or damaged is refused, not used."""
    kw = dict(quantile=0.05, batch_size=6, progress=False, activation_cache=True)
    cache = tmp_path / "cache"
    a = explain(make_model(0), "4", ds, cache_dir=cache, **kw)
    b = explain(make_model(1), "4", ds, cache_dir=cache, **kw)
    assert len(list(cache.glob("run-*"))) == 2
    np.testing.assert_array_equal(a["4"].intersection, explain(make_model(0), "4", ds, **kw)["4"].intersection)
    assert not np.array_equal(a["4"].thresholds, b["4"].thresholds)
    # interrupt a checkpointed run after its first pass, then damage its cache
    ck = tmp_path / "ck"
    d = Dissection(make_model(0), "4", checkpoint_dir=ck, **kw)

    def stop(pass_name, b):
        if pass_name != "quantiles":
            raise _Interrupt()

    d._after_batch = stop
    with pytest.raises(_Interrupt):
        d.explain(ds)
    (run_dir,) = list((ck / "activations").glob("run-*"))
    key_file = run_dir / "cache_key.json"
    good = key_file.read_text()
    key_file.write_text(good.replace('"key": "', '"key": "0'))
    with pytest.raises(ValueError, match="does not belong to this run"):
        Dissection(make_model(0), "4", checkpoint_dir=ck, **kw).explain(ds)
    key_file.write_text(good)
    arr = np.load(run_dir / "4.npy")
    np.save(run_dir / "4.npy", arr[:-1])
    with pytest.raises(ValueError, match="shape"):
        Dissection(make_model(0), "4", checkpoint_dir=ck, **kw).explain(ds)
    np.save(run_dir / "4.npy", arr)
    res = Dissection(make_model(0), "4", checkpoint_dir=ck, **kw).explain(ds)
    np.testing.assert_array_equal(res["4"].intersection, a["4"].intersection)


# ----------------------------------------------------------------------------- interrupts (issue 14, item 15)
@pytest.mark.parametrize("pass_name", ["quantiles", "iou"])
def test_keyboard_interrupt_between_batches_saves_progress(ds, tmp_path, pass_name):
    model = make_model()
    kw = dict(quantile=0.05, batch_size=3, checkpoint_every=1000, checkpoint_interval=3600.0, progress=False)
    full = explain(model, ["2", "4"], ds, **kw)
    ck = tmp_path / "ck"
    d = Dissection(model, ["2", "4"], checkpoint_dir=ck, **kw)

    def ctrl_c(p, b):
        if (p, b) == (pass_name, 4):
            raise KeyboardInterrupt

    d._after_batch = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        d.explain(ds)
    # neither the interval (an hour) nor the batch count (1000) was due: the interrupt saved it
    assert d.last_checkpoint["pass"] == pass_name and d.last_checkpoint["next_batch"] == 5
    resumed = Dissection(model, ["2", "4"], checkpoint_dir=ck, **kw)
    seen = []
    resumed._after_batch = lambda p, b: seen.append((p, b))
    res = resumed.explain(ds)
    assert (pass_name, 4) not in seen and (pass_name, 5) in seen
    for name in ("2", "4"):
        for attr in ("thresholds", "intersection", "label_pixels", "unit_pixels", "top_images", "top_maps"):
            np.testing.assert_array_equal(getattr(res[name], attr), getattr(full[name], attr))


def test_interval_checkpoints(ds, tmp_path):
    ck = tmp_path / "ck"
    d = Dissection(make_model(), "4", quantile=0.05, batch_size=3, checkpoint_every=1000, checkpoint_interval=0,
                   checkpoint_dir=ck, progress=False)
    saved = []

    def look(p, b):
        ck_ = d.last_checkpoint
        if ck_ is not None and (not saved or saved[-1] != (ck_["pass"], ck_["next_batch"])):
            saved.append((ck_["pass"], ck_["next_batch"]))

    d._after_batch = look
    d.explain(ds)
    # interval 0: a checkpoint after every batch of every pass, the exact pass included (seen after the next
    # batch), and at the end of each pass (8 batches of 3 images)
    assert saved == [("quantiles", b) for b in range(1, 9)] + [("exact", b) for b in range(1, 9)] + \
        [("iou", b) for b in range(1, 8)]
    with pytest.raises(ValueError, match="checkpoint_interval"):
        Dissection(make_model(), "4", checkpoint_interval=-1)
    with pytest.raises(ValueError, match="checkpoint_interval"):
        Dissection(make_model(), "4", checkpoint_interval=float("nan"))


def test_ctrl_c_inside_a_batch_waits_for_the_batch(ds, tmp_path, monkeypatch):
    """SIGINT while a batch is being added: the batch is added whole, then the
    run stops and saves progress including it."""
    import signal

    from interp_engine.methods.dissection import state as dmod

    model = make_model()
    kw = dict(quantile=0.05, batch_size=3, checkpoint_every=1000, checkpoint_interval=3600.0, progress=False)
    full = explain(model, "4", ds, **kw)
    consume = dmod._RunState.consume
    calls = []

    def consume_with_signal(self, pass_name, batch, acts):
        calls.append(pass_name)
        if pass_name == "iou" and calls.count("iou") == 3:
            signal.raise_signal(signal.SIGINT)  # arrives before the batch is counted
        return consume(self, pass_name, batch, acts)

    monkeypatch.setattr(dmod._RunState, "consume", consume_with_signal)
    ck = tmp_path / "ck"
    d = Dissection(model, "4", checkpoint_dir=ck, **kw)
    with pytest.raises(KeyboardInterrupt):
        d.explain(ds)
    assert d.last_checkpoint["pass"] == "iou" and d.last_checkpoint["next_batch"] == 3
    monkeypatch.setattr(dmod._RunState, "consume", consume)
    res = Dissection(model, "4", checkpoint_dir=ck, **kw).explain(ds)
    np.testing.assert_array_equal(res["4"].intersection, full["4"].intersection)
    np.testing.assert_array_equal(res["4"].unit_pixels, full["4"].unit_pixels)


# ----------------------------------------------------------------------------- units without a label (item 10)
def _layer_result(iou, threshold=0.04):
    from interp_engine.methods.dissection import LayerResult

    K, L = iou.shape
    return LayerResult(layer="x", label_names=NAMES, label_category=LABEL_CAT, categories=CATS,
                       thresholds=np.zeros(K), iou=iou, intersection=(iou > 0).astype(np.int64),
                       label_pixels=np.arange(L, dtype=np.int64), unit_pixels=np.ones((K, 3), np.int64),
                       top_images=np.full((K, 1), -1), top_values=np.zeros((K, 1)),
                       top_maps=np.zeros((K, 1, 2, 2), np.float32), iou_threshold=threshold)


def test_a_unit_with_iou_0_everywhere_has_no_label(tmp_path):
    iou = np.zeros((3, len(NAMES)))
    iou[1, 5] = 0.2   # unit 1: door (part)
    iou[2, 2] = 0.01  # unit 2: green (color), below the detector threshold
    for thr in (0.04, 0.0):  # even with iou_threshold 0, a unit without a label is no detector
        r = _layer_result(iou, thr)
        assert r.best_label.tolist() == [-1, 5, 2] and r.best_category.tolist() == [-1, 1, 0]
        assert r.best_iou.tolist() == [0.0, 0.2, 0.01]
        assert r.category_best_label.tolist() == [[-1, -1, -1], [-1, 5, -1], [2, -1, -1]]
        assert r.detectors.tolist() == [False, True, thr == 0.0]
        s = r.summary()
        assert s["unlabelled"] == 1 and s["detectors"] == (2 if thr == 0.0 else 1)
        assert "-" not in s["per_label"] and s["unique_detectors"] == s["detectors"]
    rows = {row["unit"]: row for row in r.table()}
    assert rows[0]["label"] == "-" and rows[0]["category"] == "-" and rows[0]["color-label"] == "-"
    assert "red" not in r.format_table()
    path = r.to_csv(tmp_path / "tally.csv")
    with open(path) as f:
        by_unit = {int(row["unit"]): row for row in csv.DictReader(f)}
    assert by_unit[1]["label"] == "-" and by_unit[1]["category"] == "-" and by_unit[1]["color-truth"] == "0"
    assert by_unit[2]["label"] == "door" and by_unit[2]["color-label"] == "-"
    assert by_unit[3]["color-label"] == "green" and int(by_unit[3]["color-truth"]) == 2


def test_tally_csv_bytes_are_netdissect_lites(tmp_path):
    """LayerResult.to_csv writes NetDissect-Lite's tally.csv through the
    package's CSV writer: the bytes are pinned (they are those the writer of
    release 0.x wrote: CRLF rows, floats as repr, "-" and 0 for no label)."""
    iou = np.zeros((3, len(NAMES)))
    iou[1, 5], iou[2, 2], iou[0, 7] = 0.2, 0.1 / 3, 0.5
    K, L = iou.shape
    from interp_engine.methods.dissection import LayerResult

    r = LayerResult(layer="x", label_names=NAMES, label_category=LABEL_CAT, categories=CATS,
                    thresholds=np.zeros(K), iou=iou, intersection=(iou > 0).astype(np.int64) * 3,
                    label_pixels=np.arange(L, dtype=np.int64) * 7,
                    unit_pixels=np.arange(9, dtype=np.int64).reshape(3, 3) + 5,
                    top_images=np.full((K, 1), -1), top_values=np.zeros((K, 1)),
                    top_maps=np.zeros((K, 1, 2, 2), np.float32))
    path = r.to_csv(tmp_path / "tally.csv")
    assert path == tmp_path / "tally.csv" and not list(tmp_path.glob("*.tmp"))
    assert path.read_bytes() == (
        b"unit,category,label,score,color-label,color-truth,color-activation,color-intersect,color-iou,"
        b"part-label,part-truth,part-activation,part-intersect,part-iou,scene-label,scene-truth,"
        b"scene-activation,scene-intersect,scene-iou\r\n"
        b"1,scene,forest,0.5,-,0,5,0,0.0,-,0,6,0,0.0,forest,49,7,3,0.5\r\n"
        b"2,part,door,0.2,-,0,8,0,0.0,door,35,9,3,0.2,-,0,10,0,0.0\r\n"
        b"3,color,green,0.03333333333333333,green,14,11,3,0.03333333333333333,-,0,12,0,0.0,-,0,13,0,0.0\r\n")
    assert [row["unit"] for row in r.tally_table()] == [1, 2, 3]


def test_results_have_the_result_protocol(ds, tmp_path):
    """table(), to_csv(), save()/load() and a one-line repr without arrays,
    for a run's DissectionResult and each LayerResult."""
    from interp_engine.methods._result import MAX_REPR, Result
    from interp_engine.methods.dissection import LayerResult

    res = explain(make_model(), ["2", "4"], ds, quantile=0.05, rotations=[1], progress=False)
    assert isinstance(res, Result) and all(isinstance(res[k], Result) for k in res)
    det = {k: int(res[k].detectors.sum()) for k in res}
    assert repr(res) == (f"DissectionResult(layers=['2', '4', '2@rotation1', '4@rotation1'], 20 units, "
                         f"{sum(det.values())} detectors)")
    assert repr(res["4"]) == f"LayerResult(layer='4', 5 units, {det['4']} detectors)"
    assert repr(res["4@rotation1"]) == \
        f"LayerResult(layer='4', basis='rotation1', 5 units, {det['4@rotation1']} detectors)"
    for obj in [res] + [res[k] for k in res]:
        assert len(repr(obj)) <= MAX_REPR and "\n" not in repr(obj) and "array" not in repr(obj)
        assert str(obj) == repr(obj)
    rows = res.table()
    assert len(rows) == 20 and rows[0]["layer"] == "2"
    assert [dict(r, layer=None) for r in rows if r["layer"] == "4"] == [dict(r, layer=None) for r in res["4"].table()]
    path = res.to_csv(tmp_path / "units.csv")
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == ["layer", "unit", "label", "category", "iou", "threshold", "detector", "color-label",
                             "color-iou", "part-label", "part-iou", "scene-label", "scene-iou"]
    assert [(r["layer"], int(r["unit"]), float(r["iou"])) for r in back] == \
        [(r["layer"], r["unit"], r["iou"]) for r in rows]
    assert DissectionResult.load(res.save(tmp_path / "r.npz")).table() == rows
    assert LayerResult.load(res["4"].save(tmp_path / "l.npz")).table() == res["4"].table()
    # an empty result still has a header
    empty = DissectionResult({})
    assert repr(empty) == "DissectionResult(layers=[], 0 units, 0 detectors)" and empty.table() == []
    assert empty.to_csv(tmp_path / "empty.csv").read_text().startswith("layer,unit,label")


def test_repr_of_a_big_result_is_short():
    """The repr of a result with many units and large maps stays one short line
    (it was the dataclass repr of every array: 81 KB for the bundled model)."""
    from interp_engine.methods._result import MAX_REPR

    iou = np.zeros((512, len(NAMES)))
    iou[:, 1] = 0.3
    r = _layer_result(iou)
    r.top_maps = np.zeros((512, 10, 7, 7), np.float32)
    res = DissectionResult({f"layer{i}.block{i}.conv{i}": r for i in range(40)})
    assert repr(r) == "LayerResult(layer='x', 512 units, 512 detectors)"
    assert len(repr(res)) <= MAX_REPR and repr(res).endswith("...)")


def test_report_shows_units_without_a_label(ds, tmp_path):
    from interp_engine.methods.dissection import DissectionResult
    from interp_engine.report import write_report
    from interp_engine.report.html import UNIT_NUMBERING

    iou = np.zeros((2, len(NAMES)))
    iou[1, 1] = 0.5
    res = DissectionResult({"x": _layer_result(iou)})
    write_report(res, ds, tmp_path / "r")
    page = (tmp_path / "r" / "x.html").read_text()
    unit0 = page[page.index('id="unit0"'):]
    assert "(none)" in unit0.split("</h3>")[0] and "red" not in unit0.split("</h3>")[0]
    assert "1 units have no label" in page and UNIT_NUMBERING in page


# --------------------------------------------------------------------------- resize (maps larger than the labels)
def _reference_resized(model, layer_index, ds, q, unit_rule, resize):
    """The slow reference for a layer whose maps are larger than the label maps:
    "pil" binarizes as NetDissect-Lite (reference_resize.lite_masks), "antialias"
    resizes as torch's antialias=True, then > threshold and counts."""
    from reference_resize import antialias_formula, lite_masks, torch_antialias, torch_capability

    acts, thr, _ = reference_layer(model, layer_index, ds, q=q)
    args = (ds.pixel_labels, ds.image_labels, ds.image_categories, ds.label_category_for_tally(), len(NAMES), 3,
            ds.pixel_size)
    if resize == "pil":
        masks = lite_masks(acts, thr, ds.pixel_size).astype(np.float64)
        return thr, iou_counts(acts, np.full(len(thr), 0.5), *args, unit_rule=unit_rule,
                               upsample=lambda a, s: masks)
    up = torch_antialias if torch_capability() == "AVX2" else antialias_formula
    return thr, iou_counts(acts, thr, *args, unit_rule=unit_rule, upsample=up)


@pytest.mark.parametrize("unit_rule, resize", [("lite", None), ("lite", "antialias"), ("annotated", "antialias"),
                                               ("annotated", "pil")])
def test_downsampled_layer_counts_equal_a_reference_resizing_as_asked(ds, unit_rule, resize):
    # layer "1" (ReLU of the first conv) is 16 x 16; the label maps are 8 x 8.
    # The Lite mode (unit_rule="lite") resizes as NetDissect-Lite (Pillow) unless told otherwise.
    model = make_model()
    d = Dissection(model, "1", quantile=0.05, unit_rule=unit_rule, resize=resize, batch_size=7, progress=False)
    expected = resize or ("pil" if unit_rule == "lite" else "bilinear")
    assert d.resize == expected
    r = d.explain(ds)["1"]
    thr, (I, L, A) = _reference_resized(model, 1, ds, 0.05, unit_rule, expected)
    np.testing.assert_array_equal(r.thresholds, thr)
    np.testing.assert_array_equal(r.intersection, I)
    np.testing.assert_array_equal(r.label_pixels, L)
    np.testing.assert_array_equal(r.unit_pixels, A)
    # and the resize matters here: the default bilinear resize gives other counts
    b = explain(model, "1", ds, quantile=0.05, unit_rule=unit_rule, resize="bilinear", progress=False)["1"]
    assert not np.array_equal(b.intersection, r.intersection)


def test_resize_is_checked_and_part_of_the_checkpoint(ds, tmp_path):
    with pytest.raises(ValueError, match="resize must be one of"):
        Dissection(make_model(), "1", resize="nearest")
    explain(make_model(), "1", ds, quantile=0.05, resize="pil", checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="resize"):
        explain(make_model(), "1", ds, quantile=0.05, resize="antialias", checkpoint_dir=tmp_path, progress=False)


def test_bundled_conv1_in_lite_mode_equals_a_pillow_reference(tmp_path):
    """The bundled model's conv1 (16 x 64 x 64) against label maps of 32 x 32:
    the Lite mode's counts equal NetDissect-Lite's binarization (Pillow)."""
    from reference_resize import lite_masks

    from interp_engine.data import BrodenDataset
    from interp_engine.data.concepts import concept_dataset
    from interp_engine.models import load_default_model

    root = concept_dataset(tmp_path / "ds", seed=1, num_images=120)
    bds = BrodenDataset(root, transform="unit")
    model = load_default_model()
    r = explain(model, "conv1", bds, unit_rule="lite", batch_size=40, progress=False)["conv1"]
    items = [bds[i] for i in range(len(bds))]
    feats = []
    hook = model.conv1.register_forward_hook(lambda m, i, o: feats.append(o.detach()))
    try:
        with torch.no_grad():
            model(torch.stack([it["image"] for it in items]))
    finally:
        hook.remove()
    acts = feats[0].numpy().astype(np.float64)
    assert acts.shape[2:] == (64, 64) and tuple(bds.pixel_size) == (32, 32)
    K = acts.shape[1]
    thr = np.array([np.quantile(acts[:, k].ravel(), 1 - 0.005) for k in range(K)])
    np.testing.assert_array_equal(r.thresholds, thr)
    masks = lite_masks(acts, thr, bds.pixel_size).astype(np.float64)
    pl = np.stack([it["pixel_labels"].numpy() for it in items])
    il = np.stack([it["image_labels"].numpy() for it in items])
    I, L, A = iou_counts(acts, np.full(K, 0.5), pl, il, None, bds.label_category_for_tally(),
                         len(bds.label_names), bds.num_categories, bds.pixel_size, unit_rule="lite",
                         upsample=lambda a, s: masks)
    np.testing.assert_array_equal(r.intersection, I)
    np.testing.assert_array_equal(r.label_pixels, L)
    np.testing.assert_array_equal(r.unit_pixels, A)


def test_resume_with_empty_top_image_slots(ds, tmp_path):
    """A checkpoint taken before every unit has top_k images (empty slots,
    value -inf) resumes without a warning and gives the uninterrupted result
    (the sorted-order check once subtracted -inf from -inf)."""
    kw = dict(quantile=0.05, batch_size=3, top_k=10, progress=False)
    full = explain(make_model(), "4", ds, **kw)
    ck = tmp_path / "ck"
    d = Dissection(make_model(), "4", checkpoint_dir=ck, checkpoint_every=1, **kw)

    def stop(pass_name, b):
        if (pass_name, b) == ("quantiles", 1):  # 6 images seen: 4 of 10 slots empty
            raise KeyboardInterrupt
    d._after_batch = stop
    with pytest.raises(KeyboardInterrupt):
        d.explain(ds)
    resumed = Dissection(make_model(), "4", checkpoint_dir=ck, **kw)
    res = resumed.explain(ds)
    assert resumed.resumed["position"]["quantiles"] == 2
    _same_result(res, full)
