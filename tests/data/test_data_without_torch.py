"""``interp_engine.data`` without torch: the writer, the generator, the
Fashion-MNIST reader and the parsing of a Broden directory's tables import and
run; the Broden reader (a torch Dataset) loads on first access and then says
that it needs torch.  Run in a child process in which ``import torch`` fails,
so it checks the no-torch environment whether or not torch is installed here."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import interp_engine

_BLOCK = textwrap.dedent('''
    import sys
    from importlib.machinery import PathFinder

    class _NoTorch:
        """The path finder, blind to torch (as where it is not installed); every look-up is recorded."""
        tried = []

        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                self.tried.append(name)
                return None
            return PathFinder.find_spec(name, path, target)

    blocker = _NoTorch()
    sys.meta_path[:] = [blocker if f is PathFinder else f for f in sys.meta_path]
''')


def _run(code, tmp_path):
    src = str(Path(interp_engine.__file__).resolve().parents[1])
    res = subprocess.run([sys.executable, "-c", _BLOCK + textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": src}, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_data_imports_and_writes_a_broden_directory_without_torch(tmp_path):
    out = _run('''
        import numpy as np
        import interp_engine  # looks torch up once, for the top level's __all__
        base = len(blocker.tried)
        import interp_engine.data as data
        from interp_engine.data import _broden_index

        root = data.write_broden("ds", np.zeros((2, 4, 4, 3), np.uint8), label_names=["-", "red"],
                                 label_categories=[None, "color"], categories=["color"],
                                 pixel_labels={"color": [np.ones((2, 2), np.int32), None]})
        assert data.read_manifest(root) is not None
        index = _broden_index._BrodenIndex()
        index._read_categories(str(root / "category.csv"))
        assert index._all_categories == ["color"], index._all_categories
        assert blocker.tried[base:] == [] and "torch" not in sys.modules, blocker.tried
        try:
            data.BrodenDataset
        except ImportError as exc:
            assert "needs PyTorch" in str(exc), exc
        else:
            raise AssertionError("BrodenDataset loaded without torch")
        print("ok", blocker.tried[base:])
    ''', tmp_path)
    assert out.split()[0] == "ok" and "'torch'" in out, out  # the reader, and only it, looked torch up
