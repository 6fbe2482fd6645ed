"""Training (the package; `dualat.train` is the function): stage-1 adversarial training, stage-2 DAT,
the JEM baseline. (The evaluation network's trainer, `train_evalnet`, lives in evaluate/evalnet.py.)"""
from .run import train

__all__ = ["train"]
