"""Training (the package; `dualat.train` is the function): stage-1 adversarial training, stage-2 DAT, the JEM baseline (and, for old imports,
the evaluation network's trainer, which lives in evaluate/evalnet.py)."""
from ..evaluate.evalnet import train_evalnet
from .run import train

__all__ = ["train", "train_evalnet"]
