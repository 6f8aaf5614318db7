"""Edit a saved .npz result or vector file in place of a damaged one (for the tests of refusals)."""
import json

import numpy as np


def rewrite_npz(src, dst, change):
    """Copy the .npz ``src`` (arrays plus a JSON ``header``) to ``dst`` with
    ``change(arrays, header)`` applied to its contents (in place); returns ``dst``."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("header")))
    change(arrays, header)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(dst, **arrays)
    return dst
