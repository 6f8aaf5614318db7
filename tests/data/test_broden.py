"""Broden-format reader: a tiny Broden directory written here, read back field
by field; label_category rule; selection; transforms; DataLoader workers; one
test per malformed-file error (message names the file and the row)."""
import csv
import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

from interp_engine.data import BrodenDataset, broden_loader, decode_label_png  # noqa: E402

IH, IW, SH, SW = 8, 10, 4, 5

# number, name, category field, syns (one with a quoted comma)
LABELS = [
    (1, "sky", "object(5)", ""),
    (2, "wheel", "object(3);part(3)", ""),          # tie -> part (later in category.csv)
    (3, "door", "object(4);part(1)", ""),           # -> object
    (5, "street", "scene(2)", ""),
    (6, "bedroom", "scene(1)", ""),
    (7, "striped", "texture(2)", ""),
    (8, "dotted", "texture(1)", ""),
    (9, "red", "color(3)", "crimson;scarlet"),      # color: in category.csv, not in index.csv
    (260, "handle", "part(2);object(1)", ""),
    (300, "window", "part(7)", "pane, glass;window"),  # R 44, G 1
]
NUM_LABELS = 301
OBJECT_LABELS = [0, 1, 3]
PART_LABELS = [0, 2, 260, 300]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_label_png(path, labels, rng):
    labels = np.asarray(labels, dtype=np.int64)
    rgb = np.stack([labels % 256, labels // 256, rng.integers(0, 256, labels.shape)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)


def make_broden(root, seed=0):
    """Write the tiny dataset; return what was written, for comparison."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images", "a"), exist_ok=True)
    _write_csv(os.path.join(root, "category.csv"), ["name", "first", "last", "count", "frequency"],
               [["color", 9, 9, 1, 3], ["object", 1, 3, 3, 5], ["part", 2, 300, 4, 5],
                ["scene", 5, 6, 2, 3], ["texture", 7, 8, 2, 3]])
    _write_csv(os.path.join(root, "label.csv"), ["number", "name", "category", "frequency", "coverage", "syns"],
               [[n, name, cat, 1, 0.5, syns] for n, name, cat, syns in LABELS])
    _write_csv(os.path.join(root, "c_part.csv"), ["code", "number", "name", "frequency", "coverage"],
               [[0, 0, "-", 0, 0.0], [1, 2, "wheel", 1, 0.1], [2, 260, "handle", 1, 0.1],
                [3, 300, "window", 1, 0.2]])
    truth = {"images": [], "object": [], "part": [], "scene": [], "texture": []}
    # (split, object maps, part maps, scene, texture, image kind)
    specs = [
        ("train", 1, 2, [5], [7, 8], "rgb"),
        ("val", 1, 0, [6, 5], [], "rgba"),
        ("train", 0, 1, [], [8], "gray_small"),
        ("val", 0, 0, [], [], "rgb"),
    ]
    rows = []
    for i, (split, n_obj, n_part, scene, texture, kind) in enumerate(specs):
        img_name = f"a/img{i}.png"
        if kind == "gray_small":
            gray = rng.integers(0, 256, (5, 4), dtype=np.uint8)
            Image.fromarray(gray, "L").save(os.path.join(root, "images", img_name))
            expected = np.asarray(Image.fromarray(gray, "L").convert("RGB").resize((IW, IH), Image.BILINEAR))
        elif kind == "rgba":
            rgba = rng.integers(0, 256, (IH, IW, 4), dtype=np.uint8)
            Image.fromarray(rgba, "RGBA").save(os.path.join(root, "images", img_name))
            expected = rgba[:, :, :3]
        else:
            rgb = rng.integers(0, 256, (IH, IW, 3), dtype=np.uint8)
            rgb[0, 0] = (255, 0, 128)
            Image.fromarray(rgb, "RGB").save(os.path.join(root, "images", img_name))
            expected = rgb
        truth["images"].append(expected)
        cells = {}
        for cat, n, pool in (("object", n_obj, OBJECT_LABELS), ("part", n_part, PART_LABELS)):
            maps, names = [], []
            for j in range(n):
                lab = rng.choice(pool, size=(SH, SW))
                name = f"a/img{i}_{cat}{j}.png"
                _write_label_png(os.path.join(root, "images", name), lab, rng)
                maps.append(lab)
                names.append(name)
            truth[cat].append(maps)
            cells[cat] = ";".join(names)
        truth["scene"].append(scene)
        truth["texture"].append(texture)
        rows.append([img_name, split, IH, IW, SH, SW, cells["object"], cells["part"],
                     ";".join(map(str, scene)), ";".join(map(str, texture)), "ignored"])
    _write_csv(os.path.join(root, "index.csv"),
               ["image", "split", "ih", "iw", "sh", "sw", "object", "part", "scene", "texture", "extra"], rows)
    truth["splits"] = [s[0] for s in specs]
    return truth


@pytest.fixture
def broden(tmp_path):
    root = tmp_path / "broden"
    truth = make_broden(str(root))
    return str(root), truth


def _expected_maps(truth, i):
    P = np.zeros((3, SH, SW), np.int32)  # object: 1 slot, part: 2 slots
    for j, m in enumerate(truth["object"][i]):
        P[j] = m
    for j, m in enumerate(truth["part"][i]):
        P[1 + j] = m
    return P


def _expected_image_labels(truth, i):
    out = np.zeros(4, np.int32)          # scene: 2 slots, texture: 2 slots
    out[:len(truth["scene"][i])] = truth["scene"][i]
    out[2:2 + len(truth["texture"][i])] = truth["texture"][i]
    return out


# --------------------------------------------------------------------------- reading
def test_metadata(broden):
    root, _ = broden
    ds = BrodenDataset(root, transform=None)
    assert len(ds) == 4
    assert ds.categories == ["object", "part", "scene", "texture"]     # category.csv order; no color, no extra
    assert ds.num_categories == 4
    assert ds.pixel_categories == ["object", "part"]
    assert ds.image_level_categories == ["scene", "texture"]
    assert ds.num_pixel_maps == 3 and ds.num_image_labels == 4
    assert ds.pixel_size == (SH, SW) and ds.image_size == (IH, IW)
    assert ds.num_labels == NUM_LABELS
    assert len(ds.label_names) == NUM_LABELS
    assert ds.label_names[0] == "-" and ds.label_names[300] == "window" and ds.label_names[260] == "handle"
    assert ds.label_names[4] == ""                                      # gap in the numbers
    assert ds.image_paths == [os.path.join(root, "images", f"a/img{i}.png") for i in range(4)]
    assert all(os.path.isabs(p) for p in ds.image_paths)
    assert ds.splits == ["train", "val", "train", "val"]
    assert [ds.row_number(i) for i in range(4)] == [2, 3, 4, 5]


def test_label_category_rule(broden):
    root, _ = broden
    ds = BrodenDataset(root)
    cat = ds.label_category
    assert cat.dtype == np.int64 and cat.shape == (NUM_LABELS,)
    o, p, s, t = 0, 1, 2, 3
    expected = np.full(NUM_LABELS, -1)
    expected[[0, 1, 2, 3, 5, 6, 7, 8, 260, 300]] = [0, o, p, o, s, s, t, t, p, p]   # 2: tie 3-3 -> part
    np.testing.assert_array_equal(cat, expected)                                    # 9 (color only), gaps: -1
    tally = ds.label_category_for_tally()
    np.testing.assert_array_equal(tally, np.where(expected < 0, 0, expected))
    assert tally.min() >= 0 and tally.max() < ds.num_categories
    # c_part.csv is read; the others come from label_category
    np.testing.assert_array_equal(ds.category_labels["part"], [2, 260, 300])
    np.testing.assert_array_equal(ds.category_labels["object"], [1, 3])
    np.testing.assert_array_equal(ds.category_labels["scene"], [5, 6])
    np.testing.assert_array_equal(ds.category_labels["texture"], [7, 8])


def test_label_category_tie_reversed_order(tmp_path):
    # the same tie with part listed before object in category.csv goes to object
    root = str(tmp_path / "b")
    make_broden(root)
    with open(os.path.join(root, "category.csv"), "w", newline="") as f:
        f.write("name,first,last,count,frequency\npart,0,0,0,0\nobject,0,0,0,0\nscene,0,0,0,0\n"
                "texture,0,0,0,0\n")
    ds = BrodenDataset(root)
    assert ds.categories == ["part", "object", "scene", "texture"]
    assert ds.label_category[2] == 1        # wheel: object(3);part(3) -> the later one, object
    assert ds.label_category[3] == 1 and ds.label_category[300] == 0
    # with only "object" selected, labels listed only under part have none
    ds = BrodenDataset(root, categories=["object"])
    assert ds.label_category[2] == 0 and ds.label_category[300] == -1 and ds.label_category[0] == 0


def test_getitem_matches_written(broden):
    root, truth = broden
    ds = BrodenDataset(root, transform=None)
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"image", "pixel_labels", "image_labels", "image_categories", "index"}
        assert item["index"] == i
        img = item["image"]
        assert img.dtype == torch.float32 and tuple(img.shape) == (3, IH, IW)
        np.testing.assert_array_equal(img.numpy(), truth["images"][i].transpose(2, 0, 1).astype(np.float32))
        np.testing.assert_array_equal(ds.load_image(i), truth["images"][i])
        assert ds.load_image(i).dtype == np.uint8
        P = _expected_maps(truth, i)
        pl = item["pixel_labels"]
        assert pl.dtype == torch.int32 and tuple(pl.shape) == (3, SH, SW)
        np.testing.assert_array_equal(pl.numpy(), P)
        np.testing.assert_array_equal(ds.load_label_maps(i), P)
        il = item["image_labels"]
        assert il.dtype == torch.int32 and tuple(il.shape) == (4,)
        np.testing.assert_array_equal(il.numpy(), _expected_image_labels(truth, i))
        ic = item["image_categories"]
        assert ic.dtype == torch.bool
        expected_ic = [len(truth["object"][i]) > 0, len(truth["part"][i]) > 0,
                       len(truth["scene"][i]) > 0, len(truth["texture"][i]) > 0]
        assert ic.tolist() == expected_ic
    # label 300 really is there (G matters)
    assert (ds.load_label_maps(0)[1:] == 300).any() or (ds.load_label_maps(2)[1:] == 300).any()
    assert ds[-1]["index"] == 3
    with pytest.raises(IndexError):
        ds[4]


def test_grayscale_image_converted_and_resized(broden):
    root, _ = broden
    ds = BrodenDataset(root, transform=None)
    img = ds.load_image(2)                          # written as a 4x5 grayscale PNG
    assert img.shape == (IH, IW, 3)
    np.testing.assert_array_equal(img[:, :, 0], img[:, :, 1])
    np.testing.assert_array_equal(img[:, :, 0], img[:, :, 2])


def test_decode_label_png(tmp_path):
    lab = np.array([[0, 1, 255], [256, 300, 65535]])
    path = str(tmp_path / "l.png")
    _write_label_png(path, lab, np.random.default_rng(0))
    out = decode_label_png(path)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, lab)
    # RGBA: alpha ignored; B ignored
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 44, 1, 200, 7
    Image.fromarray(rgba, "RGBA").save(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(decode_label_png(str(tmp_path / "a.png")), np.full((2, 3), 300))
    Image.fromarray(np.zeros((2, 2), np.uint8), "L").save(str(tmp_path / "g.png"))
    with pytest.raises(ValueError, match=r"g\.png.*RGB.*'L'"):
        decode_label_png(str(tmp_path / "g.png"))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        decode_label_png(str(tmp_path / "nope.png"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png"):
        decode_label_png(str(tmp_path / "bad.png"))


def test_category_selection(broden):
    root, truth = broden
    ds = BrodenDataset(root, categories=["texture", "part"], transform=None)
    assert ds.categories == ["part", "texture"]      # category.csv order
    assert ds.pixel_categories == ["part"] and ds.image_level_categories == ["texture"]
    assert ds.num_pixel_maps == 2 and ds.num_image_labels == 2
    item = ds[0]
    np.testing.assert_array_equal(item["pixel_labels"].numpy(), np.stack(truth["part"][0]))
    assert item["image_labels"].tolist() == [7, 8]
    assert item["image_categories"].tolist() == [True, True]
    assert ds[1]["image_categories"].tolist() == [False, False]
    assert ds.label_category[1] == -1 and ds.label_category[7] == 1 and ds.label_category[2] == 0
    with pytest.raises(ValueError, match=r"'color'.*available.*\['object', 'part', 'scene', 'texture'\]"):
        BrodenDataset(root, categories=["color"])
    with pytest.raises(ValueError, match="extra"):
        BrodenDataset(root, categories=["extra"])


def test_split_and_max_images(broden):
    root, truth = broden
    ds = BrodenDataset(root, split="val", transform=None)
    assert len(ds) == 2 and ds.splits == ["val", "val"]
    assert [ds.row_number(i) for i in range(2)] == [3, 5]
    np.testing.assert_array_equal(ds.load_image(0), truth["images"][1])
    assert ds[0]["image_labels"].tolist() == [6, 5, 0, 0]
    # P and S are decided over all rows, so train and val give the same shapes
    assert ds.num_pixel_maps == 3 and ds.num_image_labels == 4
    assert len(BrodenDataset(root, split="train")) == 2
    assert len(BrodenDataset(root, split="test")) == 0
    ds = BrodenDataset(root, split="train", max_images=1)
    assert len(ds) == 1 and ds.row_number(0) == 2
    assert len(BrodenDataset(root, max_images=3)) == 3


def test_transforms(broden):
    root, truth = broden
    raw = truth["images"][0].astype(np.float64)
    nd = BrodenDataset(root, transform="netdissect")[0]["image"].numpy()
    mean = np.array([124.6901, 118.6897, 109.5388])
    expected = ((raw - mean) / (255 * 0.224)).transpose(2, 0, 1)
    np.testing.assert_allclose(nd, expected, rtol=1e-6, atol=1e-6)
    # pixel (0, 0) was written as (255, 0, 128)
    np.testing.assert_allclose(nd[:, 0, 0], [(255 - 124.6901) / 57.12, (0 - 118.6897) / 57.12,
                                             (128 - 109.5388) / 57.12], rtol=1e-6)
    im = BrodenDataset(root, transform="imagenet")[0]["image"].numpy()
    expected = ((raw / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    np.testing.assert_allclose(im, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(im[:, 0, 0], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224,
                                             (128 / 255 - 0.406) / 0.225], rtol=1e-6)
    seen = []

    def custom(img):
        seen.append((img.dtype, img.shape))
        return torch.ones(3, 2, 2)

    item = BrodenDataset(root, transform=custom)[2]
    assert seen == [(np.uint8, (IH, IW, 3))]
    assert torch.equal(item["image"], torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="transform"):
        BrodenDataset(root, transform="caffe")
    with pytest.raises(TypeError, match="transform"):
        BrodenDataset(root, transform=3)
    with pytest.raises(TypeError, match="transform must return"):
        BrodenDataset(root, transform=lambda img: img)[0]


def test_loader_workers_same_batches(broden):
    root, truth = broden
    ds = BrodenDataset(root)
    b0 = list(broden_loader(ds, batch_size=3, num_workers=0))
    b2 = list(broden_loader(ds, batch_size=3, num_workers=2))
    assert [len(b["index"]) for b in b0] == [3, 1]
    assert len(b0) == len(b2)
    for x, y in zip(b0, b2):
        assert set(x) == set(y)
        for k in x:
            assert x[k].dtype == y[k].dtype
            assert torch.equal(x[k], y[k]), k
    first = b0[0]
    assert tuple(first["image"].shape) == (3, 3, IH, IW)
    assert tuple(first["pixel_labels"].shape) == (3, 3, SH, SW) and first["pixel_labels"].dtype == torch.int32
    assert tuple(first["image_labels"].shape) == (3, 4)
    assert tuple(first["image_categories"].shape) == (3, 4)
    assert first["index"].tolist() == [0, 1, 2]
    for j in range(3):
        np.testing.assert_array_equal(first["pixel_labels"][j].numpy(), _expected_maps(truth, j))
    order = [int(i) for b in broden_loader(ds, batch_size=2, shuffle=True, seed=1) for i in b["index"]]
    assert sorted(order) == [0, 1, 2, 3]
    assert order == [int(i) for b in broden_loader(ds, batch_size=2, shuffle=True, seed=1) for i in b["index"]]
    with pytest.raises(ValueError, match="batch_size"):
        broden_loader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        broden_loader(ds, num_workers=-1)


def test_iou_tally_accepts_the_metadata(broden):
    import interp_engine as ie

    root, _ = broden
    ds = BrodenDataset(root)
    tally = ie.IoUTally(2, ds.num_labels, ds.label_category_for_tally(), ds.num_categories,
                        output_size=ds.pixel_size)
    batch = next(iter(broden_loader(ds, batch_size=4)))
    acts = torch.zeros(4, 2, 2, 3)
    acts[:, 0] = 1.0                                  # unit 0 fires everywhere, unit 1 never
    tally.update(acts, np.array([0.5, 0.5]), pixel_labels=batch["pixel_labels"],
                 image_labels=batch["image_labels"], image_categories=batch["image_categories"])
    pl = batch["pixel_labels"].numpy()
    assert tally.intersection[0, 300] == int((pl == 300).sum())
    assert tally.intersection[0, 5] == 2 * SH * SW                   # street: images 0 and 1
    assert tally.intersection[1].sum() == 0


# --------------------------------------------------------------------------- malformed files
def _rewrite(path, fn):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = fn(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _set_cell(path, row, column, value):
    def fn(rows):
        rows[row - 1][rows[0].index(column)] = value
        return rows
    _rewrite(path, fn)


def _names(exc_info, *parts):
    msg = str(exc_info.value)
    for p in parts:
        assert p in msg, (p, msg)


@pytest.mark.parametrize("name", ["index.csv", "label.csv", "category.csv"])
def test_missing_csv(broden, name):
    root, _ = broden
    os.remove(os.path.join(root, name))
    with pytest.raises(FileNotFoundError) as e:
        BrodenDataset(root)
    _names(e, os.path.join(root, name))


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        BrodenDataset(str(tmp_path / "nowhere"))


def test_missing_image(broden):
    root, _ = broden
    os.remove(os.path.join(root, "images", "a", "img1.png"))
    ds = BrodenDataset(root)
    ds[0]
    with pytest.raises(FileNotFoundError) as e:
        ds[1]
    _names(e, "index.csv", "row 3", "'image'", "a/img1.png")
    with pytest.raises(FileNotFoundError) as e:
        BrodenDataset(root, check_files=True)
    _names(e, "index.csv", "row 3", "a/img1.png")


def test_missing_label_png(broden):
    root, _ = broden
    os.remove(os.path.join(root, "images", "a", "img0_part1.png"))
    ds = BrodenDataset(root)
    with pytest.raises(FileNotFoundError) as e:
        ds.load_label_maps(0)
    _names(e, "index.csv", "row 2", "'part'", "a/img0_part1.png")
    with pytest.raises(FileNotFoundError) as e:
        BrodenDataset(root, check_files=True)
    _names(e, "row 2", "a/img0_part1.png")


@pytest.mark.parametrize("name,column", [("index.csv", "sh"), ("index.csv", "image"), ("label.csv", "category"),
                                         ("label.csv", "number"), ("category.csv", "name"),
                                         ("c_part.csv", "number")])
def test_missing_column(broden, name, column):
    root, _ = broden

    def drop(rows):
        k = rows[0].index(column)
        return [r[:k] + r[k + 1:] for r in rows]
    _rewrite(os.path.join(root, name), drop)
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)
    _names(e, name, "row 1", f"'{column}'")


# one malformed cell each: (file, row, column, value, parts the message must name)
_BAD_CELLS = [
    ("index.csv", 4, "ih", "8.0", ["row 4", "column 'ih'"]),
    ("index.csv", 4, "sw", "five", ["row 4", "column 'sw'"]),
    ("index.csv", 4, "iw", "0", ["row 4", "column 'iw'"]),
    ("index.csv", 4, "sh", "", ["row 4", "column 'sh'"]),
    ("index.csv", 5, "sh", "7", ["row 5", "row 2"]),                      # sizes must agree
    ("index.csv", 3, "scene", "5;abc", ["row 3", "column 'scene'", "not an integer"]),
    ("index.csv", 3, "scene", "2.5", ["row 3", "column 'scene'", "not an integer"]),
    ("index.csv", 4, "part", "12", ["row 4", "column 'part'", "row 2"]),  # pixel cell with an integer
    ("index.csv", 4, "texture", "301", ["row 4", "column 'texture'", "301"]),
    ("index.csv", 4, "texture", "5;-3", ["row 4", "column 'texture'", "-3", "301"]),
    ("label.csv", 6, "number", "3", ["row 6", "duplicate label number 3", "row 4"]),
    ("label.csv", 3, "number", "two", ["row 3", "column 'number'", "'two'"]),
] + [("label.csv", 5, "category", v, ["row 5", "column 'category'"])
     for v in ["object", "object(12", "object(x)", "(3)", "object(1);part"]]


@pytest.mark.parametrize("name,row,column,value,parts", _BAD_CELLS)
def test_malformed_cell_names_file_row_and_column(broden, name, row, column, value, parts):
    root, _ = broden
    _set_cell(os.path.join(root, name), row, column, value)
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)
    _names(e, name, *parts)


def test_sizes_must_agree_only_in_selected_rows(broden):
    root, _ = broden
    _set_cell(os.path.join(root, "index.csv"), 5, "sh", "7")
    assert len(BrodenDataset(root, split="train")) == 2    # row 5 (val) not selected


def test_png_label_out_of_range(broden):
    root, _ = broden
    _write_label_png(os.path.join(root, "images", "a", "img1_object0.png"), np.full((SH, SW), 301),
                     np.random.default_rng(0))
    ds = BrodenDataset(root)
    with pytest.raises(ValueError) as e:
        ds[1]
    _names(e, "index.csv", "row 3", "'object'", "img1_object0.png", "301")


def test_png_wrong_size(broden):
    root, _ = broden
    _write_label_png(os.path.join(root, "images", "a", "img2_part0.png"), np.ones((SH + 1, SW)),
                     np.random.default_rng(0))
    ds = BrodenDataset(root)
    with pytest.raises(ValueError) as e:
        ds.load_label_maps(2)
    _names(e, "index.csv", "row 4", "img2_part0.png", str((SH + 1, SW)), str((SH, SW)))


def test_png_grayscale_in_dataset(broden):
    root, _ = broden
    Image.fromarray(np.ones((SH, SW), np.uint8), "L").save(os.path.join(root, "images", "a", "img1_object0.png"))
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)[1]
    _names(e, "index.csv", "row 3", "img1_object0.png", "'L'")


def test_c_file_unknown_number(broden):
    root, _ = broden
    _set_cell(os.path.join(root, "c_part.csv"), 3, "number", "4")
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)
    _names(e, "c_part.csv", "row 3", "4", "label.csv")
    # not read when part is not selected
    assert BrodenDataset(root, categories=["object"]).categories == ["object"]


def test_row_with_wrong_field_count(broden):
    root, _ = broden
    _rewrite(os.path.join(root, "index.csv"), lambda rows: rows[:2] + [rows[2][:-2]] + rows[3:])
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)
    _names(e, "index.csv", "row 3", "expected 11 fields")


def test_duplicate_category(broden):
    root, _ = broden
    with open(os.path.join(root, "category.csv"), "a") as f:
        f.write("part,0,0,0,0\n")
    with pytest.raises(ValueError) as e:
        BrodenDataset(root)
    _names(e, "category.csv", "row 7", "duplicate category 'part'")


def test_quoted_syns_with_commas(broden):
    root, _ = broden
    with open(os.path.join(root, "label.csv")) as f:
        text = f.read()
    assert re.search(r'"pane, glass;window"', text)    # the writer quoted it; the reader copes
    assert BrodenDataset(root).label_names[300] == "window"


def test_corrupt_image(broden):
    root, _ = broden
    with open(os.path.join(root, "images", "a", "img3.png"), "wb") as f:
        f.write(b"\x89PNG broken")
    ds = BrodenDataset(root)
    ds[2]
    with pytest.raises(ValueError) as e:
        ds[3]
    _names(e, "index.csv", "row 5", "img3.png", "could not be decoded")


def test_with_fields_skips_reading_files(broden):
    root, _ = broden
    ds = BrodenDataset(root)
    full = ds[1]
    no_img = ds.with_fields(image=False)[1]
    assert "image" not in no_img and torch.equal(no_img["pixel_labels"], full["pixel_labels"])
    no_lab = ds.with_fields(pixel_labels=False)
    assert "pixel_labels" not in no_lab[1] and torch.equal(no_lab[1]["image"], full["image"])
    assert "image" in ds[1]  # the original is unchanged
    # the files are not read at all
    view = ds.with_fields(image=False, pixel_labels=False)

    def boom(i):
        raise AssertionError("read a file")

    view.load_image = view.load_label_maps = boom
    assert set(view[1]) == {"image_labels", "image_categories", "index"}
    batch = next(iter(broden_loader(view, batch_size=2)))
    assert set(batch) == {"image_labels", "image_categories", "index"}


# --------------------------------------------------------------------------- issue 14: "0" cells, file checks
def test_image_level_cell_holding_only_0_does_not_annotate(broden):
    """Label 0 means "no label": a cell "0" of an image-level category leaves
    the category unannotated in that image (as an empty cell does); "0;7"
    annotates it with label 7."""
    root, _ = broden
    _set_cell(os.path.join(root, "index.csv"), 4, "scene", "0")      # image 2
    _set_cell(os.path.join(root, "index.csv"), 5, "texture", "0;7")  # image 3
    ds = BrodenDataset(root, transform=None)
    assert ds[2]["image_categories"].tolist() == [False, True, False, True]  # object, part (a PNG), scene, texture
    assert ds[2]["image_labels"].tolist()[:2] == [0, 0]
    assert ds[3]["image_categories"].tolist() == [False, False, False, True]
    assert ds[3]["image_labels"].tolist()[2:] == [0, 7]
    # the IoU tally's own derivation (image_categories=None) agrees: label 0 marks nothing
    from interp_engine import IoUTally

    cats = ds.label_category_for_tally()
    acts = np.ones((1, 2, 2, 2), np.float32)
    counts = []
    for ic in (None, np.array([[False, False, False, False]])):
        t = IoUTally(2, ds.num_labels, cats, 4, output_size=ds.pixel_size)
        t.update(acts, np.zeros(2), pixel_labels=np.zeros((1, 3) + ds.pixel_size, np.int32),
                 image_labels=np.array([[0, 0, 0, 0]], np.int32), image_categories=ic)
        counts.append(t.unit_pixels.copy())
    np.testing.assert_array_equal(counts[0], counts[1])
    assert counts[0].sum() == 0


def test_verify_files_finds_missing_empty_truncated_and_wrong_files(broden, tmp_path):
    root, _ = broden
    ds = BrodenDataset(root)
    ds.verify_files()
    ds.verify_files(num_threads=1)
    img = os.path.join(root, "images", "a", "img3.png")
    png = os.path.join(root, "images", "a", "img0_part1.png")
    from pathlib import Path

    good_img, good_png = Path(img).read_bytes(), Path(png).read_bytes()

    def bad(path, data, exc, *parts):
        with open(path, "wb") as f:
            f.write(data)
        with pytest.raises(exc) as e:
            BrodenDataset(root, check_files=True)
        _names(e, *parts)
        with open(path, "wb") as f:
            f.write(good_img if path == img else good_png)

    bad(img, b"", ValueError, "row 5", "'image'", "img3.png", "empty")
    bad(img, good_img[:-30], ValueError, "row 5", "img3.png", "truncated")
    bad(img, good_img[:20], ValueError, "row 5", "no IHDR")
    bad(img, b"GIF89a not really", ValueError, "row 5", "not an image Pillow can read")
    bad(png, good_png[:-1], ValueError, "row 2", "'part'", "img0_part1.png", "truncated")
    bad(png, b"\xff\xd8\xff\xe0 jpeg", ValueError, "row 2", "not a PNG")
    # a label PNG of another size or a grayscale one: found from its header, before decoding
    Image.fromarray(np.zeros((SH + 1, SW), np.uint8), "L").convert("RGB").save(png)
    with pytest.raises(ValueError, match=r"has size \(h, w\) = \(%d, %d\)" % (SH + 1, SW)):
        BrodenDataset(root, check_files=True)
    Image.fromarray(np.zeros((SH, SW), np.uint8), "L").save(png)
    with pytest.raises(ValueError, match="grayscale"):
        BrodenDataset(root, check_files=True)
    with open(png, "wb") as f:
        f.write(good_png)
    # JPEG images: the end-of-image marker is looked for
    jpg = os.path.join(root, "images", "a", "img3.jpg")
    Image.fromarray(np.zeros((IH, IW, 3), np.uint8)).save(jpg, format="JPEG")
    _set_cell(os.path.join(root, "index.csv"), 5, "image", "a/img3.jpg")
    BrodenDataset(root, check_files=True)
    Path(jpg).write_bytes(Path(jpg).read_bytes()[:-2])
    with pytest.raises(ValueError, match="end-of-image marker"):
        BrodenDataset(root, check_files=True)
    with pytest.raises(ValueError, match="num_threads"):
        ds.verify_files(num_threads=0)


def test_fingerprint_follows_what_a_run_reads(broden):
    root, _ = broden
    a = BrodenDataset(root).fingerprint()
    assert a == BrodenDataset(root).fingerprint()
    assert BrodenDataset(root, max_images=3).fingerprint()["rows"] != a["rows"]
    assert BrodenDataset(root, categories=["object"]).fingerprint()["labels"] != a["labels"]
    assert BrodenDataset(root, transform="imagenet").fingerprint()["transform"] == {"name": "imagenet"}
    _set_cell(os.path.join(root, "index.csv"), 2, "scene", "6")
    assert BrodenDataset(root).fingerprint()["rows"] != a["rows"]
