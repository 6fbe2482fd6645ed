"""benchmarks.profile (the harness's --profile): operators by self CPU time, with shares."""
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.profile import markdown, profile_step  # noqa: E402


def test_profile_names_the_operators_a_step_runs_with_their_shares():
    a, b = torch.rand(256, 256), torch.rand(256, 256)
    p = profile_step(lambda: torch.mm(a, b).relu_().sum(), rounds=2, top=5)
    ops = [r["op"] for r in p["rows"]]
    assert "aten::mm" in ops and len(ops) <= 5
    assert all(r["calls"] >= 1 and 0 <= r["share"] <= 1 for r in p["rows"])
    assert sum(r["share"] for r in p["rows"]) <= 1 + 1e-9 and p["total_self_cpu_s"] > 0
    assert p["rows"] == sorted(p["rows"], key=lambda r: -r["self_cpu_s"])
    text = "\n".join(markdown(p, "float32 step"))
    assert "`aten::mm`" in text and "float32 step" in text
