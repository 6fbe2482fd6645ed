"""`dualat report RUN_DIR`: one self-contained HTML page for a run (or a study) that opens in a
browser with no server and no internet.

The page holds the training curves (inline SVG drawn from metrics.jsonl), the tables of every
`dualat eval` result found in the run directory, the sample grids, counterfactual panels and
reliability diagrams. Images are copied next to the page into `<page stem>_files/` and linked
relatively, so the page and that folder can be moved (or committed) together.
"""
from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

from .errors import DualatError
from .landscape import DEFAULT_NAME as LANDSCAPE, landscape
from .loading import run_settings
from .rundir import RunDir
from .ui import code_versions, read_log

# the curves worth plotting, per stage label in metrics.jsonl
CURVES = {
    1: ["loss", "adv_acc"],
    2: ["bce", "auc", "T", "ce", "adv_acc", "e_real", "e_contrastive"],
    "jem": ["ce", "gen", "acc", "e_real", "e_sample"],
    "plain": ["loss", "acc"],
}
EVAL_CURVES = ["clean_acc", "robust_acc", "fd", "fd_fresh"]
TABLE_KEYS = ["weights", "clean_acc", "pgd_L2_acc", "pgd_Linf_acc", "autoattack_L2_acc", "autoattack_Linf_acc", "sampler",
              "fd", "inception_score", "precision", "recall", "class_agreement", "sample_steps", "ece"]

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1,h2,h3{font-weight:600} table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:90%} th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left} .figs{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0} figcaption{font-size:85%;color:#555;max-width:420px} img{image-rendering:pixelated}
svg{background:#fafafa;border:1px solid #ddd} .note{color:#555;font-size:90%}"""


def svg_curve(points: list[tuple[float, float]], title: str, width: int = 320, height: int = 170) -> str:
    """A small line chart (inline SVG) of (x, y) points; non-finite values are skipped."""
    pts = [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y)]
    head = f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">' \
           f'<title>{html.escape(title)}</title>'
    if not pts:
        return head + f'<text x="10" y="20" font-size="12">{html.escape(title)}: no data</text></svg>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    ml, mr, mt, mb = 46, 10, 22, 22

    def px(x, y):
        return (ml + (x - x0) / (x1 - x0) * (width - ml - mr), mt + (1 - (y - y0) / (y1 - y0)) * (height - mt - mb))

    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in pts))
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2" fill="#1f77b4"/>' for a, b in (px(x, y) for x, y in pts)) \
        if len(pts) <= 30 else ""
    return (head + f'<text x="{ml}" y="14" font-size="12" font-weight="600">{html.escape(title)}</text>'
            f'<text x="2" y="{mt + 8}" font-size="10">{y1:.3g}</text>'
            f'<text x="2" y="{height - mb}" font-size="10">{y0:.3g}</text>'
            f'<text x="{ml}" y="{height - 6}" font-size="10">{x0:g}</text>'
            f'<text x="{width - mr - 30}" y="{height - 6}" font-size="10">{x1:g}</text>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>{dots}</svg>')


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return html.escape(str(v))


def table_html(rows: list[dict], keys: list[str], first: str = "name") -> str:
    keys = [k for k in keys if any(k in r for r in rows)]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in [first] + keys) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{_fmt(r.get(k, '-'))}</td>" for k in [first] + keys) + "</tr>")
    return "".join(out) + "</table>"


class Page:
    """Collects HTML parts and the images they reference (copied into `<stem>_files/`)."""

    def __init__(self, out: Path, title: str):
        self.out, self.title = out, title
        self.files = out.parent / f"{out.stem}_files"
        self.parts: list[str] = []
        self.copied: list[Path] = []

    def image(self, src: Path, caption: str, prefix: str = "", width: int | None = None) -> str:
        name = (prefix + "_" if prefix else "") + src.name
        self.files.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.files / name)
        self.copied.append(self.files / name)
        w = f' width="{width}"' if width else ""
        return (f'<figure><img src="{html.escape(self.files.name)}/{html.escape(name)}" alt="{html.escape(caption)}"{w}>'
                f'<figcaption>{html.escape(caption)}</figcaption></figure>')

    def add(self, text: str) -> None:
        self.parts.append(text)

    def write(self) -> Path:
        body = "\n".join(self.parts)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                            f'</title><style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n'
                            f'{body}\n</body></html>\n', encoding="utf-8")
        return self.out


def run_sections(page: Page, run_dir: Path, label: str = "", prefix: str = "", curves_only: bool = False) -> dict:
    """Add a run's curves, evaluation tables and images to `page` (only the curves with
    curves_only); returns its summary dict."""
    run_dir = Path(run_dir)
    if not (run_dir / RunDir.CONFIG).is_file():
        raise DualatError(f"{run_dir} is not a run directory (no config.yaml); give the folder `dualat train` wrote")
    summary = json.loads((run_dir / RunDir.SUMMARY).read_text()) if (run_dir / RunDir.SUMMARY).is_file() else {}
    records = read_log(run_dir) if (run_dir / RunDir.METRICS).is_file() else []
    h = f"<h2>{html.escape(label or run_dir.name)}</h2>"
    method = summary.get("method", "dat")
    div = summary.get("diverged")
    if div or (run_dir / RunDir.DIVERGED).is_file():
        info = div or json.loads((run_dir / RunDir.DIVERGED).read_text())
        h += f'<p><b>Diverged</b> at iteration {info.get("iteration")}: {html.escape(json.dumps(info.get("values")))}</p>'
    code = code_versions(records)
    code_note = f", code: {html.escape('; '.join(sorted(c or 'dualat ?' for c in code)))}" if any(code) else ""
    precision = summary.get("precision") or next((r["precision"] for r in records if "precision" in r
                                                   and r.get("event") in ("start", "resume")), None)
    prec_note = f", computed in {html.escape(precision)}" if precision else ""
    page.add(h + f'<p class="note">run directory {html.escape(str(run_dir))}, method {html.escape(method)}'
             f'{prec_note}{code_note}</p>')
    # training curves
    svgs = []
    for stage, keys in CURVES.items():
        rows = [r for r in records if r.get("stage") == stage and "event" not in r]
        for k in keys:
            if any(k in r for r in rows):
                svgs.append(svg_curve([(r["iteration"], r.get(k)) for r in rows], f"stage {stage}: {k}"))
    evals = [r for r in records if r.get("event") == "eval"]
    for k in EVAL_CURVES:
        if any(k in r for r in evals):
            svgs.append(svg_curve([(r["iteration"], r.get(k)) for r in evals], f"periodic eval: {k}"))
    if svgs:
        page.add("<h3>Training curves</h3><div class='figs'>" + "".join(svgs) + "</div>")
    if curves_only:
        return summary
    # evaluations written by `dualat eval`
    results, cf_tables = [], []
    for path in sorted(run_dir.glob("eval-*/metrics.json")):
        r = json.loads(path.read_text())
        if r.get("counterfactuals"):
            cf_tables.append(counterfactual_table(path.parent.name, r))
        ck = r.get("checkpoint") or {}
        results.append({"name": path.parent.name, "weights": f"{ck.get('checkpoint', '?')} {str(ck.get('sha256', ''))[:8]}",
                        **{k: v for k, v in r.items() if not isinstance(v, (dict, list))}})
    if results:
        page.add("<h3>Evaluations (<code>dualat eval</code>)</h3>" + table_html(results, TABLE_KEYS))
        protocols = sorted({r[k] for r in results for k in r if k.endswith("_protocol")})
        page.add("<details><summary>protocols</summary><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in protocols)
                 + "</ul></details>")
    page.add("".join(cf_tables))
    figs = []
    for path in sorted(run_dir.glob("eval-*/samples.png")):
        figs.append(page.image(path, f"samples ({path.parent.name})", prefix + path.parent.name, width=400))
    grids = sorted((run_dir / "samples").glob("*.png")) if (run_dir / "samples").is_dir() else []
    for kind in ("samples_", "buffer_", "fresh_"):
        last = [p for p in grids if p.name.startswith(kind)]
        if last:
            figs.append(page.image(last[-1], f"training-time {kind.rstrip('_')} grid, {last[-1].stem}", prefix, 400))
    for path in sorted(run_dir.glob("eval-*/reliability.png")):
        figs.append(page.image(path, f"reliability diagram ({path.parent.name})", prefix + path.parent.name, 300))
    for path in sorted(run_dir.glob("landscape*.png")):
        figs.append(page.image(path, f"energy landscape ({path.name}, `dualat landscape`)", prefix, 640))
    for path in sorted(run_dir.glob("explain*/explain_*.png"))[:4]:
        figs.append(page.image(path, f"counterfactuals {path.stem} ({path.parent.name})", prefix + path.parent.name))
    if figs:
        page.add("<h3>Images</h3><div class='figs'>" + "".join(figs) + "</div>")
    return summary


def counterfactual_table(name: str, r: dict) -> str:
    """The counterfactual family of one metrics.json: one row per radius (0 = the inputs themselves)."""
    c = r["counterfactuals"]
    rows = [{**row, "radius": "inputs" if row["radius"] == 0 else row["radius"]} for row in c["rows"]]
    return (f"<h3>Counterfactuals measured ({html.escape(name)})</h3><p class='note'>judge clean accuracy "
            f"{_fmt(c['judge_clean_acc'])}, fd_floor {_fmt(c['fd_floor'])}, knn_ratio_floor "
            f"{_fmt(c['knn_ratio_floor'])}; protocol: {html.escape(r.get('counterfactuals_protocol', ''))}</p>"
            + table_html(rows, [k for k in rows[0] if k != "radius"], first="radius"))


def report(run_dir, out=None) -> Path:
    """Build RUN_DIR/report.html (or `out`) for one training run; returns the page's path."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    page = Page(out, f"dualat report: {run_dir.name}")
    _toy2d_landscape(run_dir)
    run_sections(page, run_dir)
    return page.write()


def _toy2d_landscape(run_dir: Path) -> None:
    """A finished toy2d run's report shows its energy landscape: draw it once if it is missing."""
    if (run_dir / LANDSCAPE).is_file() or not (run_dir / RunDir.SUMMARY).is_file():
        return
    if (run_settings(run_dir).get("data") or {}).get("name") == "toy2d":
        landscape(run_dir)


__all__ = ["report", "run_sections", "Page", "svg_curve", "table_html", "counterfactual_table"]
