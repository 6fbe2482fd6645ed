"""`dualat report`: renders from a tiny run; every image the page references exists."""
import re
from pathlib import Path

import pytest

from conftest import TINY_DIGITS
from dualat.cli import main
from dualat.evaluate.run import evaluate
from dualat.explain import explain_to_dir
from dualat.report import report, svg_curve
from dualat.training import train


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    run = train("digits", TINY_DIGITS, out=tmp_path_factory.mktemp("rep") / "run", show_progress=False)
    evaluate(run, n=50, n_samples=30, k=3, is_splits=2, pgd_steps=2, n_ood=20, ood_steps=2, out=run / "eval-ema",
             show_progress=False)
    explain_to_dir(run, images="0", n=1, radii=[0.5, 1.0], steps=3, show_progress=False)
    return run


def test_report_renders_and_every_image_exists(evaluated_run, tmp_path):
    out = report(evaluated_run, tmp_path / "docs" / "report.html")
    text = out.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert srcs, "the page shows sample grids, counterfactuals and the reliability diagram"
    for src in srcs:
        assert (out.parent / src).is_file(), src
    assert any("reliability" in s for s in srcs) and any("explain" in s for s in srcs)
    assert text.count("<svg") >= 8                       # stage-1 and stage-2 curves, periodic evaluation
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "eval-ema" in text and "clean_acc" in text


def test_report_cli_and_bad_input(evaluated_run, tmp_path, capsys):
    assert main(["report", str(evaluated_run)]) == 0
    assert (Path(evaluated_run) / "report.html").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_svg_curve_skips_non_finite_values():
    svg = svg_curve([(1, 0.5), (2, float("nan")), (3, 0.7)], "auc")
    assert svg.startswith("<svg") and "nan" not in svg.split("points=")[1]
