import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Evaluation networks trained by tests go to a temporary cache, never the user's."""
    old = os.environ.get("DUALAT_CACHE")
    os.environ["DUALAT_CACHE"] = str(tmp_path_factory.mktemp("dualat-cache"))
    yield
    if old is None:
        os.environ.pop("DUALAT_CACHE", None)
    else:
        os.environ["DUALAT_CACHE"] = old


# a digits run small enough for a unit test (seconds), with every stage and checkpoint kind; float32
# pinned (the default amp: auto would give bf16 on some CI CPUs; test_precision.py covers bf16)
TINY_DIGITS = ["amp=false", "stage1.iterations=40", "stage2.iterations=20", "stage2.t_init=2", "stage2.auc_window=2",
               "eval.every=10", "eval.n_test=100", "eval.n_samples=50", "eval.pgd_steps=3",
               "eval.evalnet_iterations=60", "log.every=5", "log.checkpoint_every=10"]
