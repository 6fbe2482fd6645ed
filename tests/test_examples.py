"""examples/ runs: each worked example's main() asserts what it shows (accuracy above chance,
samples in [0, 1] of the right shape, the key report naming the prefix it stripped, ...)."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _fashion_mnist_missing() -> bool:
    from dualat.data import load_dataset
    from dualat.errors import DualatError
    try:
        load_dataset("fashion_mnist", "test")
    except DualatError:
        return True
    return False


@pytest.mark.parametrize("name", ["own_images", "own_classifier", "from_python"])
def test_example_runs_and_checks_itself(name, tmp_path, monkeypatch):
    if name == "from_python" and _fashion_mnist_missing():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__) > 400      # the paragraph of prose at the top
    result = module.main(tmp_path / "work")
    assert isinstance(result, dict)
