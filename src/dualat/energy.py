"""A classifier's logits read as an energy-based model (JEM): nothing else lives here.

logits: (B, K). Low energy = "looks like data".
"""
import torch


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Marginal energy E(x) = -logsumexp_y f(x)[y]; shape (B,)."""
    return -torch.logsumexp(logits, dim=1)


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Joint energy E(x, y) = -f(x)[y]; y: (B,) int64; shape (B,)."""
    return -logits.gather(1, y.view(-1, 1)).squeeze(1)


def class_probs(logits: torch.Tensor) -> torch.Tensor:
    """Classifier p(y | x) = softmax f(x); shape (B, K), rows sum to 1."""
    return torch.softmax(logits, dim=1)
