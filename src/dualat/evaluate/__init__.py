"""Evaluation: robustness (clean, PGD, AutoAttack), generative quality (FD, IS-style score,
precision/recall/density/coverage in a pluggable feature extractor), OOD detection, calibration.

`evaluate(source, ...)` (evaluate/run.py) runs the families on one checkpoint; every piece is
also callable on its own.
"""
from .autoattack import autoattack_accuracy
from .calibration import calibration, reliability_diagram
from .extractors import EXTRACTORS, make_extractor
from .generative import GenerationProbe, dataset_features, draw_samples, generative_metrics, reference_stats
from .ood import ood_auroc, ood_scores, ood_sets, push_to_distribution
from .robust import clean_accuracy, default_eps, parse_eps, pgd_accuracy

__all__ = ["GenerationProbe", "reference_stats", "clean_accuracy", "pgd_accuracy", "default_eps", "parse_eps",
           "autoattack_accuracy", "calibration", "reliability_diagram", "EXTRACTORS", "make_extractor",
           "dataset_features", "draw_samples", "generative_metrics", "ood_auroc", "ood_scores", "ood_sets",
           "push_to_distribution"]
