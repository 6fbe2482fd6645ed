"""Training: stage-1 adversarial training, stage-2 DAT, the evaluation network."""
from .evalnet import train_evalnet
from .run import train

__all__ = ["train", "train_evalnet"]
