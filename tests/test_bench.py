"""The benchmark harness runs end to end (`--quick`) and writes every section; no timing is asserted."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run  # noqa: E402


def test_quick_run_writes_every_section(tmp_path):
    out_json, out_md = tmp_path / "perf.json", tmp_path / "perf.md"
    run.main(["--quick", "--models", "small_cnn", "--json", str(out_json), "--md", str(out_md)])
    r = json.loads(out_json.read_text())
    assert r["machine"]["threads"] >= 1 and r["command"].startswith("python -m benchmarks.run --quick")
    m = r["models"]["small_cnn"]
    assert m["step"]["lib_s_per_it"] > 0 and m["step"]["ref_s_per_it"] > 0          # (a), (b)
    assert m["limit"]["pass_bound_s"] > 0 and m["limit"]["matmul_gflops"] > 0      # (c)
    assert m["flops"]["input_grad_pass"] == 2 * m["flops"]["forward"]             # counted, not guessed
    assert m["sampling"]["lib_images_per_s"] > 0                                    # (d)
    assert all(m["memory"][v]["peak_bytes"] > 0 for v in ("lib", "ref"))           # (e)
    assert m["t_sweep"]["T"] == [0, 1, 2] and "r2" in m["t_sweep"]["fit"]            # (f)
    assert {row["allocator"] for row in m["batch_sweep"]["rows"]} == {"glibc", "kept"}  # (g)
    md = out_md.read_text()
    for heading in ("(a)-(c)", "(d) Sampling", "(e) Peak memory", "(f) Seconds", "(g) Input-gradient", "Goals"):
        assert heading in md
