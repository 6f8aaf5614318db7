"""Pickles of the quantile accumulators written before the split of
``interp_engine/engine/quantiles.py`` (issue 15) load after it, and pickles
written now name the classes by the same public path,
``interp_engine.engine.quantiles``: a pickle read or written by either side
is the same.

The two pickles below were made by the code before the split (protocol 4,
zlib, base64) from::

    x = ((np.arange(300, dtype=np.float64).reshape(50, 2, 3) * 7919) % 301) / 10.0
    cq = ChannelQuantiles(2, k=64, seed=3); cq.update(x)
    plan = cq.exact_pass([0.25, 0.5]); plan.update(x[:20])
"""
import base64
import io
import pickle
import zlib

import numpy as np

from interp_engine import ChannelQuantiles, ExactQuantilePass
from interp_engine.engine import quantiles

_SKETCH_PICKLE = (
    "eNqFl11oHFUUx3c3SZvaJKZfaTdN06RJm48mmzvfX4lZjE+uFuqTgrDOx53ukmQSd2dbKwjxwdbCvHWsVt9Kn0VYfeiDr4KQguCD"
    "+CAULAGhD1pLURR1dud/Qir9mIc93Ln/3znn3plz9s5G50dv9GXaVzRcDUJeWy/z4Fw14AWYtxt2EFZXeD2O+pcqdhDwlbPbt67G"
    "U+/H78WT0e7zvFavrgVxKRf1BI3VsptK660b2eW4VIw665x7cakj6q4vV9fLgZ2IM1G3W+Hucr2xGkcDCbd+sVB212q8sNpYCat2"
    "rWZfjKOeco27a0E9rDXcMIkZdbWVcbQ78FLJ1cTVB/FS1okvx6/Fk6VsKVfKXYorfVGXF15c5y0o19DjKx+m8x1Rdj4+c+bMy/8m"
    "V/unlAlj58rSyGd3v/ip95trD1evzg3lJm/O3X7zyvwPZ7vvzN6/PPb5jYGv4kQW9VHS5eVg7UKyjmzUVQ35aj2u9Fb6W6lU9iOR"
    "V2eyyehwlPN3RK8cfUzsF9/ak9m+Pr3euk4UUysWpdbVNDA+UPTb10zx9mZyvaIUU+rOYjo/ls5vsZSTTHCHoJtKuU3ifl1MdSPw"
    "KyAecb3QTSOeCt0C/I8ingCdAf/9GJ+GHxk64k7AslS3Qdx+6CdSm1eg+x7rO4b8wGVM2G5wk7DgmvMYH4cfAevQwfVgfgr5SdAt"
    "IJ8R6OYwJq4fulPYDxnxiBuEjiGeAV0O3ATiydDNgxvCfjDkpYHbBW4SVoKOuGHoZ7FvOrjnMD+O/MBlFmCPgCvA6rB/LqbcScST"
    "sQ4L3CB0c1iHijgZ2FPIT8SYuCH4m0F+GuY7MR6DTkK8eegPwc4iHnH3FlNuHPEk5GVCfxi2AEvv70NwJ+FHwL5Z0OVxfxr7Rtw/"
    "i2l+J5CfiHgW5veDOw0/Gua/BTeGeRHroPfiIO7PYB0K7m+BG0d+Au6bsAOwU9g3FXF/R72MID64LdqX58FNI54K3QLsKOKh/0jU"
    "f/aBOw1/tO4hWKpnWncX8kJd5iXo5mGHYWeho/dvDyzWfR3cFtXzYXAFxKO6/APrPol4qEvJApcHR/WsgstgnuqZ+i5xR6Gjvqth"
    "3An/1Hdpv6guD0I3izHtyy/ou+OIR/VsQjcADnWZp/p6AA512aS+a2Ge6nkalri/Uc+jyE9EPKpL6rvo13nK8xY49Osm1bMB7iB0"
    "VM/Ur38GR/VMfZf69QB01HcV+PkNdYm+uwFuk973PnDTGOP5bSxgPAr/qMu8Af0+WNRlk/ruC+ConqnvEncA8Scwpjx/RF0OYx5c"
    "np5fNyz6dVPBeB5xRxCP6lnHfA8s1TP1XerX9Pyo71Kf74elvgtuk/5vjyI/Bh2trwPjCfjH+vLUd49hvThPNDXc3w1uEvlR3yXu"
    "OOLPYqzD7kUc6rvg8vT8juA++nWTuL+w36cQD+cJn/rPILg5+Kf3N4vxRLF9fNu7ws/zlXK9+i5/zIktOTpmL7WPbNVnHdmW+q+h"
    "cZBt++9y1xpB+DjPyUB8EtWxWg2ewEwkzKMnw1uLYOx3nsLQaYve8jazpxacK9dDO+RPIAcT8v5LX99cu3H3413fffnJPfnBg5RM"
    "zuzlZ60t87+rTXZeqHr8KVAW4uxOaJdXPcfrYRyN+EwVVN/1fEUVHWbLuqwySXNURRIEprheHPX6Vb7ilVOiHr8eJp7wSWKKhswF"
    "7hu27nFVYqK18/vE9B1XVwRRE3TNMWRds5ZNT9EdSZZUTdcVVxRFq/XlYnLRlSXB1lRFc1xB1i36jDF90WeezlVBNgzFVz2r/S1g"
    "Oo7BfMNwGJe47Ovc2vHamUzXJV/hguowjTPRs9r7aioac2xD953ktuD6rpW8FCZTmap7TNN8V1OZI1nJUzclRbB933Y8NTk/Kapu"
    "bT9W0zE0VXc8x2Me0w1Rtbafmylzz5eY62h64tHRuNV6MKZmM8PxJc65YBuar1v0fWOqiijIzLa1ZMdFx7atR798TNsWDdc3PGY7"
    "iiSLbhztbe1uWKlx20s+/jINp/AfidYV9g==")

_PLAN_PICKLE = (
    "eNqVVs1vG0UUt906pCVRW0FDU0prSIWSljg7uzv7GVGLiAuWIsoBcUCy5rNexV47u2tKkBBFKJSoywFlWgm48SGkHiokxL8AFyIQ"
    "F4RUpB4Qf0CFuMJ4dxYcN03LHPzTm5n3e7958/aNrxy8/v1kKRvp6SBMWNRvsfBSELK6gvUBCpOgw2KRHnvxTUSSi2riZRTHYlss"
    "vCveFvPpBO9FXZSI9Mxulntd0kfeYFEc9ELRLKdT4aDbIm0UhqwTi2YlLa+LdEZO9jfqLdKLWL076CQBiiK0IdKpVsRIL4yTaEAS"
    "GTutZjslZUjzLduiWdoUK2UsropXxHyz3KxsivZ0WqXJRp8NXSrcEVsf5KsH0vKyWF1dfelvObKfZikReGvlaJ6Sny7keOeCkNPp"
    "RExQB0UyRDoZrwX9VojCoXGAoL5o0nQqXmMJaUvdgzAR7an2kaGY9rFRKTNpJRgR0D65Z/gbedxSgVn4o4peRt03xPy/+v8bGcGR"
    "Ql+bkbV40N3Lv1l5PxM5eKDI2qe/f/3b9Hc3/upuL52qzH+xtPP61vIvFyfvLN69Onfrs5lvs5jHx2K21sLe5ezqq53eZRbdV8Os"
    "jPDJx8PxWCM/w0Jj54fheFzhfCOLUB30+w/FM9fg2QCN3D6b814Bigczqei+PDKrtcMqmycUHlI4O5rlSbbe2v9oQ6qychnH0jjV"
    "/qd7aKqpIIwDylpx8Jb8lPejKw51eAwPjdJN5HR7ED27Ocz5C5pUkaf5uLqukyrtTyk80zCyUVPrNWU/rfAZta/ABVUG5xSeV9f5"
    "nLKXFGrKX+E3Wr7vj2IeqHgzivcJZZ9Q9qzCJxX/KYWn1b5C35zCs2r/OYXnlY5C16LyX1R2XdkFLinU8jI8GDMW7vNlL6trWN5V"
    "KEOnrB39z5YwnTk+sCF4si78u1/ern6+dbP31Ts/fxj++Oerk8+/d3vn2vVbKx9d+/Wm0crrggaXWCyfgRoG3CbEdQEB3NQQpgDp"
    "gAHDZTaxLAuKdJoHrENbuUcsXqtXSqX8FfEsF1m2zTgypBOhwFdPhmeYXIcYyEWbW4Zl+KPvh8cxcSDQbeDY2DUd21/3gIMsl2IA"
    "TNsBktTPe7hnUd2UQlwONUeDhpxXDd3jOteowyxgui7kFvVld/cwxJhBXScIGZJK80dbvWciihzCTJNyWzpCf7xTe5YFGHMczWSE"
    "QYda/lhblAEs22UWkwlDGtTv2ZD3TY9CoBmYM43ZGFuY+VmnkdMMUhNyF+vchQbxs67hOXLSNnQMbNvBOjT9rMV5JiAGJq5mQ4Yp"
    "NrFfdCwp0+W2qwPNsagJqOsXDcgDECPXRNBhyIUAm/5oP/EgMIhLdJsSSBxsIrXqMWJTA7tM0+W5CXL8Ybl5BtOxzJduOBbTuIP9"
    "ono9xLkLHHk4eY0IIOLvKk+PmUizECWmReSxdFOkjw7vP2lHDFH596E0wPV/ALcF5nY=")


def _stream():
    return ((np.arange(300, dtype=np.float64).reshape(50, 2, 3) * 7919) % 301) / 10.0


def _fresh():
    x = _stream()
    cq = ChannelQuantiles(2, k=64, seed=3)
    cq.update(x)
    plan = cq.exact_pass([0.25, 0.5])
    plan.update(x[:20])
    return cq, plan


def _old(text):
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], np.ndarray):
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
            assert sa[key].dtype == sb[key].dtype, key
        else:
            assert sa[key] == sb[key], key


def test_a_sketch_pickled_before_the_split_loads_with_the_same_state():
    old, (cq, _) = _old(_SKETCH_PICKLE), _fresh()
    assert type(old) is ChannelQuantiles
    _same_state(old, cq)
    assert old.state_dict()["digest"] == "f0616fcdf562b0a4846037b6531105cd"
    np.testing.assert_array_equal(old.quantile([0.25, 0.5]), [[7.4, 14.6], [7.5, 15.0]])


def test_an_exact_pass_pickled_before_the_split_loads_and_finishes():
    old, (_, plan) = _old(_PLAN_PICKLE), _fresh()
    assert type(old) is ExactQuantilePass
    _same_state(old, plan)
    assert old.state_dict()["digest"] == "b1f7cc991c1f40abd1a21e139e7c6665"
    x = _stream()
    old.update(x[20:])
    values = np.moveaxis(x, 1, 0).reshape(2, -1)
    np.testing.assert_array_equal(old.result(), np.quantile(values, [0.25, 0.5], axis=1).T)


class _Recorder(pickle.Unpickler):
    """An unpickler that records the (module, name) of every class or function the pickle names."""

    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.names = []

    def find_class(self, module, name):
        self.names.append((module, name))
        return super().find_class(module, name)


def _globals(data):
    r = _Recorder(data)
    r.load()
    return [g for g in r.names if g[0].startswith("interp_engine")]


def test_pickles_name_the_classes_by_their_public_module():
    cq, plan = _fresh()
    for obj, old in ((cq, _SKETCH_PICKLE), (plan, _PLAN_PICKLE)):
        name = type(obj).__name__
        assert type(obj).__module__ == "interp_engine.engine.quantiles"
        assert getattr(quantiles, name) is type(obj)
        ours = _globals(pickle.dumps(obj, protocol=4))
        before = _globals(zlib.decompress(base64.b64decode(old)))
        assert ours == before == [("interp_engine.engine.quantiles", name)], (ours, before)
