"""End-to-end Network Dissection: images/s, the share of time outside the
model's forward pass, and peak memory at two dataset sizes.

Workloads (the bundled concept dataset, generated at the sizes below):

* ResNet-18 (our definition in benchmarks/resnet18.py, random weights: the
  timing does not depend on them) at 224x224, layers ``layer3`` (256 x 14 x 14)
  and ``layer4`` (512 x 7 x 7) dissected together, exact thresholds (three
  passes).  The baseline row is the model's forward alone over the same images
  the same number of times, so the ratio is the dissection's total time over
  the forward time; ``extra_info["outside_forward"]`` is the share of the
  dissection's time spent outside the forward (the issue's target: < 15%).
* The bundled ConceptCNN at 64x64, four layers (the README's main job).
* Peak memory of the ConceptCNN dissection at 500 and 2,000 images: the
  peak resident set size of a fresh process during the run (Linux VmHWM, reset
  just before the run), and how far it rises above the RSS before the run.
  Bounded memory means it does not grow with the number of images.

Run: ``pytest benchmarks/bench_dissect.py --benchmark-only``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from interp_engine.data import BrodenDataset  # noqa: E402
from interp_engine.data.concepts import concept_dataset  # noqa: E402
from interp_engine.methods.dissection import Dissection  # noqa: E402

from resnet18 import ResNet18  # noqa: E402

N_RESNET = 128


@pytest.fixture(scope="module")
def data_224(tmp_path_factory):
    root = concept_dataset(tmp_path_factory.mktemp("c224") / "ds", num_images=N_RESNET, image_size=224)
    return BrodenDataset(root, transform="imagenet")


@pytest.fixture(scope="module")
def data_64():
    return BrodenDataset(concept_dataset(), transform="imagenet")


def _forward_only(model, ds, passes, batch_size):
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size)
    with torch.inference_mode():
        for _ in range(passes):
            for batch in loader:
                model(batch["image"])


def _timed(benchmark, d, ds) -> dict:
    """Run the dissection once under the benchmark; its total and forward times."""
    out = {}

    def run():
        t0 = time.perf_counter()
        res = d.explain(ds)
        out["total"] = time.perf_counter() - t0
        out["forward"] = res.timings["forward"]

    benchmark.pedantic(run, rounds=1, iterations=1)
    return out


@pytest.mark.parametrize("impl", ["model forward only (baseline)", "interp_engine dissection (ours)"])
def test_resnet18_layer3_layer4(benchmark, data_224, impl):
    torch.manual_seed(0)
    model = ResNet18().eval()
    benchmark.group = f"dissection: ResNet-18 layer3+layer4, {N_RESNET} images at 224x224, exact thresholds"
    benchmark.extra_info.update({"impl": impl, "workload": f"{N_RESNET} images"})
    if impl.startswith("model"):
        benchmark.pedantic(_forward_only, args=(model, data_224, 3, 32), rounds=1, iterations=1)
        return
    out = _timed(benchmark, Dissection(model, ["layer3", "layer4"], batch_size=32, progress=False), data_224)
    share = 1.0 - out["forward"] / out["total"]
    benchmark.extra_info["outside_forward"] = round(share, 4)
    benchmark.extra_info["images_per_s"] = round(3 * N_RESNET / out["total"], 2)
    benchmark.extra_info["note"] = f"{share:.1%} of the time outside the forward (3 passes)"


def test_concept_cnn_main_job(benchmark, data_64):
    from interp_engine.models import LAYER_NAMES, load_default_model

    model = load_default_model()
    benchmark.group = "dissection: bundled ConceptCNN, 4 layers, bundled dataset"
    benchmark.extra_info.update({"impl": "interp_engine dissection (ours)", "workload": f"{len(data_64)} images"})
    out = _timed(benchmark, Dissection(model, list(LAYER_NAMES), batch_size=64, progress=False), data_64)
    benchmark.extra_info["images_per_s"] = round(len(data_64) / out["total"], 1)
    benchmark.extra_info["outside_forward"] = round(1.0 - out["forward"] / out["total"], 4)


_PEAK = r"""
import json, sys
import torch
torch.set_num_threads(2)
from interp_engine.data import BrodenDataset
from interp_engine.data.concepts import concept_dataset
from interp_engine.methods.dissection import Dissection
from interp_engine.models import LAYER_NAMES, load_default_model
n = int(sys.argv[1])
ds = BrodenDataset(concept_dataset(num_images=n), transform="imagenet")
model = load_default_model()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:   # reset the peak (VmHWM) to the current RSS
    f.write("5")
Dissection(model, list(LAYER_NAMES), batch_size=64, progress=False).explain(ds)
print(json.dumps({"images": n, "peak_rss_mb": status("VmHWM:"), "rss_before_run_mb": before}))
"""


def _peak(n: int) -> dict:
    # generate the dataset first so that the measured process only dissects
    concept_dataset(num_images=n)
    out = subprocess.run([sys.executable, "-c", _PEAK, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("n", [500, 2000])
def test_peak_memory(benchmark, n):
    benchmark.group = "dissection: peak memory (RSS) of the ConceptCNN run"
    benchmark.extra_info.update({"impl": "interp_engine dissection (ours)", "workload": f"{n} images"})
    res = {}
    benchmark.pedantic(lambda: res.update(_peak(n)), rounds=1, iterations=1)
    benchmark.extra_info["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
    grow = res["peak_rss_mb"] - res["rss_before_run_mb"]
    benchmark.extra_info["run_mb"] = round(grow, 1)
    benchmark.extra_info["note"] = f"peak RSS {res['peak_rss_mb']:.0f} MB, {grow:.0f} MB above the RSS before the run"
