"""Official metrics of the downstream tasks (one module per task family).

Functions here take plain Python sequences and return fractions in [0, 1] unless a module says
otherwise; tasks convert to percent for reports.
"""

from pert.metrics.classification import accuracy, binary_f1, matthews_corrcoef
from pert.metrics.ner import entities, ner_scores

__all__ = ["accuracy", "binary_f1", "entities", "matthews_corrcoef", "ner_scores"]
