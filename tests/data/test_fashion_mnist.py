"""Fashion-MNIST reader (IDX format), FashionCNN and its shipped weights.

The tests on the real data run only where Debian's dataset-fashion-mnist is
installed (or INTERP_ENGINE_FASHION_MNIST points at the files)."""
import gzip
import struct

import numpy as np
import pytest

from interp_engine.data import fashion_mnist as fm

torch = pytest.importorskip("torch")

from interp_engine.models import fashion_cnn as fc  # noqa: E402
import _scripts  # noqa: E402,F401  (scripts/ on sys.path)
from train_fashion_cnn import evaluate, train_fashion_cnn  # noqa: E402

#: test accuracy of the shipped float16 weights, as printed by train_fashion (docs/models.md)
MEASURED_TEST_ACCURACY = 0.9115

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr, code=None, ndim=None, dims=None):
    """An IDX file's bytes written by hand (struct, big-endian), with optional corruption."""
    arr = np.asarray(arr)
    code = _CODES[arr.dtype.type] if code is None else code
    dims = arr.shape if dims is None else dims
    ndim = len(dims) if ndim is None else ndim
    header = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def have_fashion_mnist():
    root = fm.fashion_mnist_root()
    return all((root / f"{n}.gz").is_file() or (root / n).is_file()
               for pair in fm.FASHION_MNIST_FILES.values() for n in pair)


needs_data = pytest.mark.skipif(not have_fashion_mnist(),
                                reason="Fashion-MNIST files not installed (apt-get install dataset-fashion-mnist "
                                       "or set INTERP_ENGINE_FASHION_MNIST)")


# ---------------------------------------------------------------- read_idx

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (5, 28, 28)), (np.uint8, (7,)), (np.uint8, (0, 3)),
                                         (np.int16, (3, 4)), (np.int32, (6,)), (np.float32, (2, 3, 4)),
                                         (np.float64, (4,)), (np.int8, (2, 2, 2, 2))])
def test_read_idx_roundtrip(tmp_path, rng, gz, dtype, shape):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.normal(size=shape).astype(dtype)
    p = write(tmp_path / "a.idx", idx_bytes(arr), gz)
    out = fm.read_idx(p)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == shape
    np.testing.assert_array_equal(out, arr)
    out[...] = 0  # writable, a copy
    # the known bytes of a tiny uint8 file: 00 00 08 01 | 00 00 00 03 | 01 02 ff
    p2 = write(tmp_path / "b.idx", bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 255]), gz)
    np.testing.assert_array_equal(fm.read_idx(p2), np.array([1, 2, 255], np.uint8))


_IMG = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
MALFORMED = [
    # id, file bytes, read_idx kwargs, expected message fragments
    ("bad-magic", b"\x01\x00" + idx_bytes(_IMG)[2:], {}, ["not an IDX file", "01 00 08 03"]),
    ("text-file", b"hello world", {}, ["not an IDX file", "68 65 6c 6c"]),
    ("too-short", b"\x00\x00", {}, ["expected a 4-byte magic number", "found 2 bytes"]),
    ("empty", b"", {}, ["found 0 bytes"]),
    ("unknown-dtype", idx_bytes(_IMG, code=0x0A), {}, ["unknown IDX type code 0x0a", "0x08 (uint8)"]),
    ("dtype-not-expected", idx_bytes(_IMG.astype(np.int32)), {"dtype": np.uint8},
     ["expected IDX type uint8", "found int32"]),
    ("zero-ndim", bytes([0, 0, 8, 0]) + _IMG.tobytes(), {}, ["0 dimensions"]),
    ("ndim-not-expected", idx_bytes(_IMG), {"ndim": 1}, ["expected an IDX file with 1 dimensions, found 3"]),
    ("ndim-too-large-header-cut", bytes([0, 0, 8, 5, 0, 0, 0, 2]), {},
     ["truncated IDX header", "5 dimensions need 24 header bytes, found 8"]),
    ("truncated-payload", idx_bytes(_IMG)[:-1], {}, ["truncated", "need 24 bytes, found 23"]),
    ("extra-bytes", idx_bytes(_IMG) + b"\x00", {}, ["extra bytes", "need 24 bytes, found 25"]),
    ("dims-too-large", idx_bytes(_IMG, dims=(2, 3, 5)), {}, ["(2, 3, 5)", "need 30 bytes, found 24"]),
    ("huge-dims", idx_bytes(_IMG, dims=(2**32 - 1,) * 3), {}, [f"need {(2**32 - 1) ** 3} bytes"]),  # no int64 overflow
    ("int32-partial-item", idx_bytes(np.arange(3, dtype=np.int32))[:-2], {}, ["need 12 bytes, found 10"]),
]


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("data,kwargs,fragments", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_read_idx_malformed(tmp_path, gz, data, kwargs, fragments):
    p = write(tmp_path / "bad.idx", data, gz)
    with pytest.raises(ValueError) as info:
        fm.read_idx(p, **kwargs)
    msg = str(info.value)
    assert str(p) in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_read_idx_truncated_gzip_and_missing_file(tmp_path):
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(idx_bytes(_IMG))[:-6])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        fm.read_idx(p)
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        fm.read_idx(tmp_path / "nope.idx")


# ---------------------------------------------------------------- fashion_mnist() on synthetic files

def fake_root(tmp_path, n=(12, 5), gz=True, labels=None):
    """A directory with the four files, small synthetic splits."""
    rng = np.random.default_rng(0)
    out = {}
    for split, count in zip(("train", "test"), n):
        img = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        lab = (np.arange(count) % 10).astype(np.uint8) if labels is None else labels
        img_name, lab_name = fm.FASHION_MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        write(tmp_path / (img_name + suffix), idx_bytes(img), gz)
        write(tmp_path / (lab_name + suffix), idx_bytes(lab), gz)
        out[split] = (img, lab)
    return out


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_fashion_mnist_reads_the_four_files(tmp_path, gz):
    ref = fake_root(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = fm.fashion_mnist(split, root=tmp_path)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, ref[split][0])
        np.testing.assert_array_equal(labels, ref[split][1])


def test_fashion_mnist_root_from_environment(tmp_path, monkeypatch):
    ref = fake_root(tmp_path)
    monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(tmp_path))
    assert fm.fashion_mnist_root() == tmp_path
    np.testing.assert_array_equal(fm.fashion_mnist("test")[0], ref["test"][0])
    monkeypatch.delenv(fm.FASHION_MNIST_ENV)
    assert str(fm.fashion_mnist_root()) == "/usr/share/datasets/fashion-mnist"


def test_fashion_mnist_missing_root_and_files(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    for call in (lambda: fm.fashion_mnist("train", root=missing),
                 lambda: (monkeypatch.setenv(fm.FASHION_MNIST_ENV, str(missing)), fm.fashion_mnist("test"))):
        with pytest.raises(FileNotFoundError) as info:
            call()
        msg = str(info.value)
        assert str(missing) in msg and "apt-get install dataset-fashion-mnist" in msg
        assert "INTERP_ENGINE_FASHION_MNIST" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    fake_root(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    fm.fashion_mnist("train", root=tmp_path)  # the other split is still readable
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*dataset-fashion-mnist"):
        fm.fashion_mnist("test", root=tmp_path)


def test_fashion_mnist_inconsistent_files(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'val'"):
        fm.fashion_mnist("val", root=tmp_path)
    fake_root(tmp_path, n=(12, 5), labels=np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="has 12 images but .* has 4 labels"):
        fm.fashion_mnist("train", root=tmp_path)
    fake_root(tmp_path, n=(3, 3), labels=np.array([0, 10, 1], np.uint8))
    with pytest.raises(ValueError, match="labels must be in 0..9; found 10"):
        fm.fashion_mnist("train", root=tmp_path)
    name = fm.FASHION_MNIST_FILES["test"][0] + ".gz"
    write(tmp_path / name, idx_bytes(np.zeros((3, 28, 27), np.uint8)), True)
    with pytest.raises(ValueError, match="expected images of 28x28, found 28x27"):
        fm.fashion_mnist("test", root=tmp_path)
    write(tmp_path / name, idx_bytes(np.zeros((3, 784), np.uint8)), True)
    with pytest.raises(ValueError, match="expected an IDX file with 3 dimensions, found 2"):
        fm.fashion_mnist("test", root=tmp_path)


def test_fashion_mnist_tensor_normalization():
    img = np.array([[[0, 255], [51, 128]]], np.uint8)
    t = fm.fashion_mnist_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (1, 1, 2, 2)
    ref = (img.astype(np.float64) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(t.numpy()[:, 0], ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="uint8 of shape"):
        fm.fashion_mnist_tensor(img.astype(np.float32))
    with pytest.raises(ValueError, match=r"got torch.uint8 \(2, 2\)"):
        fm.fashion_mnist_tensor(img[0])


def test_class_names():
    assert fm.FASHION_MNIST_CLASSES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                        "Shirt", "Sneaker", "Bag", "Ankle boot")


# ---------------------------------------------------------------- FashionCNN

def test_forward_shapes_and_split():
    torch.manual_seed(0)
    model = fc.FashionCNN().eval()
    assert tuple(model._modules) == fc.LAYER_NAMES
    x = torch.randn(3, 1, 28, 28)
    feats, head = model.split()
    f = feats(x)
    assert f.shape == (3, 64, 7, 7) and (f >= 0).all()
    assert torch.equal(head(f), model(x)) and model(x).shape == (3, 10)
    assert list(head._modules) == ["pool3", "flatten", "fc1", "relu_fc", "fc2"]
    # the split shares the modules
    assert head.fc2 is model.fc2
    # every layer splits, and features + head always recompose the model
    for name in fc.LAYER_NAMES:
        a, b = model.split(name)
        assert list(a._modules) + list(b._modules) == list(fc.LAYER_NAMES)
        torch.testing.assert_close(b(a(x)), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="layer must be one of .*got 'conv9'"):
        model.split("conv9")


def test_head_is_piecewise_linear():
    model = fc.fashion_cnn(pretrained=False)
    _, head = model.split(fc.DEFAULT_LAYER)
    for name, m in head.named_modules():
        if m is not head:
            assert isinstance(m, fc.HEAD_MODULE_TYPES), (name, type(m))
    # ... and in fact linear on each activation region: within a region (same relu_fc pattern) the head is
    # exactly A f + b, with A, b read off the weights
    torch.manual_seed(1)
    f = torch.rand(4, 64, 7, 7, dtype=torch.float64)
    head = head.double()
    pooled = torch.nn.functional.adaptive_avg_pool2d(f, 3).flatten(1)
    pre = pooled @ head.fc1.weight.T + head.fc1.bias
    ref = (pre.clamp(min=0)) @ head.fc2.weight.T + head.fc2.bias
    torch.testing.assert_close(head(f), ref)


def test_pretrained_weights_load_strictly_and_are_small():
    assert fc.WEIGHTS_PATH.is_file() and fc.WEIGHTS_PATH.stat().st_size < 400_000
    blob = torch.load(str(fc.WEIGHTS_PATH), map_location="cpu", weights_only=True)
    sd = blob["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd.values())
    fresh = fc.FashionCNN()
    fresh.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model = fc.fashion_cnn()
    assert not model.training
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, sd[k].float(), rtol=0, atol=0)
    info = fc.weights_info()
    assert info["test_accuracy"] == MEASURED_TEST_ACCURACY
    assert not fc.fashion_cnn(pretrained=False).training


def test_save_load_roundtrip_and_errors(tmp_path):
    torch.manual_seed(2)
    model = fc.FashionCNN(widths=(4, 8, 16), hidden=12)
    fc.save_weights(model, tmp_path / "w.pt", half=False, extra={"note": 1})
    back = fc.load_model(tmp_path / "w.pt")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert back.widths == (4, 8, 16) and back.hidden == 12 and fc.weights_info(tmp_path / "w.pt") == {"note": 1}
    torch.save({"state_dict": {}}, str(tmp_path / "other.pt"))
    with pytest.raises(ValueError, match="not a FashionCNN weights file"):
        fc.load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        fc.load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="widths must be 3 positive ints"):
        fc.FashionCNN(widths=(4, 8))
    with pytest.raises(TypeError, match="pretrained must be a bool"):
        fc.fashion_cnn("yes")
    with pytest.raises(TypeError, match="model must be a FashionCNN"):
        fc.save_weights(torch.nn.Linear(2, 2), tmp_path / "x.pt")


# ---------------------------------------------------------------- training function (synthetic data)

def tiny_data(n=64):
    """Class k is a bright 10x4 block at one of 10 separate places (2 rows of 5), on faint noise:
    learnable in a few dozen steps."""
    labels = np.arange(n) % 10
    images = np.random.default_rng(7).integers(0, 30, (n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 13 * (k // 5), 1 + 5 * (k % 5)
        images[i, r:r + 10, c:c + 4] = 255
    return images, labels


def test_train_is_deterministic_and_extra_loss_hook_is_called():
    data = tiny_data()
    calls = []

    def extra(model, features, batch):
        calls.append((features.shape, batch["index"].clone(), batch["labels"].clone()))
        assert features.requires_grad and isinstance(model, fc.FashionCNN)
        assert batch["logits"].shape == (len(batch["index"]), 10)
        return 0.5 * features.mean()

    kw = dict(data=data, epochs=2, batch_size=32, augment=False, log=False, seed=3, threads=1)
    a = train_fashion_cnn(**kw, extra_loss=extra)
    assert len(calls) == 4 and all(c[0] == (32, 64, 7, 7) for c in calls)
    # index is the row of `data`: labels of the batch are those rows' labels
    for _, idx, lab in calls:
        np.testing.assert_array_equal(lab.numpy(), data[1][idx.numpy()])
    seen = torch.cat([c[1] for c in calls[:2]]).sort().values
    torch.testing.assert_close(seen, torch.arange(64))  # one epoch covers every row once
    b = train_fashion_cnn(**kw, extra_loss=extra)
    c = train_fashion_cnn(**kw)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)  # same seed, same weights
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())  # hook changed training
    with pytest.raises(ValueError, match="extra_loss must return a scalar tensor"):
        train_fashion_cnn(**kw, extra_loss=lambda m, f, b: f)
    with pytest.raises(TypeError, match="extra_loss must be callable"):
        train_fashion_cnn(**kw, extra_loss=3)
    with pytest.raises(ValueError, match="epochs must be a positive int; got 0"):
        train_fashion_cnn(data=data, epochs=0)


def test_train_learns_a_trivial_task():
    data = tiny_data(100)
    model = train_fashion_cnn(data=data, epochs=4, batch_size=10, log=False, augment=False, threads=1)
    assert evaluate(model, *data) == 1.0


# ---------------------------------------------------------------- the real files (skipped without them)

@needs_data
def test_real_files_shapes_and_label_counts():
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = fm.fashion_mnist(split)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, n // 10))
        assert images.min() == 0 and images.max() == 255
        if split == "train":  # the normalization constants are the train pixel statistics, to 4 decimals
            x = images.astype(np.float64) / 255
            assert abs(x.mean() - fm.FASHION_MNIST_MEAN) < 5e-5 and abs(x.std() - fm.FASHION_MNIST_STD) < 5e-5


@needs_data
def test_shipped_model_test_accuracy():
    images, labels = fm.fashion_mnist("test")
    acc = evaluate(fc.fashion_cnn(), images, labels, batch_size=2000)
    assert acc >= MEASURED_TEST_ACCURACY - 0.005, acc
