"""Evaluation: robustness, generative quality."""
from .generative import GenerationProbe, reference_stats
from .robust import clean_accuracy, pgd_accuracy

__all__ = ["GenerationProbe", "reference_stats", "clean_accuracy", "pgd_accuracy"]
