"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018;
reference code tensorflow/tcav and captum.concept; docs/algorithms.md §4,
docs/concept_vectors.md).

``TCAV(model, layer, **settings).fit(concept_examples, random_examples)``
learns the CAVs (``fit_activations`` from layer features already computed),
``.explain(inputs, target_class)`` returns a :class:`TCAVResult`,
``.save(path)`` / ``TCAV.load(path, model)`` keep the CAVs.

Modules, by role: :mod:`.method` (:class:`TCAV`, :class:`CAV`: activations,
gradients, CAV training, scores and significance), :mod:`.result`
(:class:`TCAVResult`, :class:`TCAVRow`), :mod:`.files` (the CAV file
format).  The classifiers are :mod:`interp_engine.methods.classifiers`
(shared with ``ConceptVectors(method="cav")``), re-exported here.
"""
from ..classifiers import Classifier, MeanDifferenceClassifier, SGDLinearClassifier, train_cav
from .files import FEATURES
from .method import CAV, TCAV
from .result import TCAVResult, TCAVRow

__all__ = ["TCAV", "TCAVResult", "TCAVRow", "CAV", "Classifier", "SGDLinearClassifier",
           "MeanDifferenceClassifier", "train_cav", "FEATURES"]
