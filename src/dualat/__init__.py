"""dualat: Dual Adversarial Training - one network that is a robust classifier, a generator
(descend the energy E(x) = -logsumexp f(x)) and an explainer."""
from .config import Config, load_config
from .energy import class_probs, energy, joint_energy
from .errors import DualatError
from .explain import explain
from .models import create_model, freeze_batchnorm
from .pgd import pgd
from .sample import sample
from .samplers import generate
from .evaluate.evalnet import train_evalnet
from .training import train
from .version import __version__
__all__ = ["Config", "load_config", "energy", "joint_energy", "class_probs", "DualatError", "create_model",
           "freeze_batchnorm", "pgd", "generate", "sample", "explain", "train", "train_evalnet"]
