"""Segmentation concept vectors: semantic vectors (our formulation of Gu &
Tresp 2019), Net2Vec (Fong & Vedaldi, CVPR 2018) and TCAV's CAVs, learned
from pixel masks at one layer and scored against the best single unit
(docs/algorithms.md §4; docs/concept_vectors.md).

``ConceptVectors(model, layer, **settings).fit(dataset)`` learns the vectors,
``.explain(dataset)`` returns a :class:`ConceptVectorsEvaluation`,
``.save(path)`` / ``ConceptVectors.load(path, model)`` keep them.

Modules, by role:

* :mod:`.method`: :class:`ConceptVectors` (settings, the passes of ``fit``,
  prediction, ``explain``, save and load);
* :mod:`.solver`: Newton on the balanced logistic loss
  (:func:`solve_balanced_logistic`), Net2Vec's Adam, the CAV vectors;
* :mod:`.accumulators`: the streaming helpers of one fit (unit counts,
  calibration histograms, the bounded semantic sample, the activation cache);
* :mod:`.evaluation`: the result (:class:`ConceptVectorsEvaluation`,
  :class:`ConceptIoURow`) and the evaluation pass;
* :mod:`.data`: datasets, concepts, masks, batches;
* :mod:`.files`: the concept-vector file format.
"""
from .evaluation import ConceptIoURow, ConceptVectorsEvaluation
from .method import ConceptVectors
from .solver import METHODS, solve_balanced_logistic

__all__ = ["ConceptVectors", "ConceptVectorsEvaluation", "ConceptIoURow", "METHODS",
           "solve_balanced_logistic"]
