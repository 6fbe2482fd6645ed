"""docs/performance.md's sections beyond the timings of report.py: the machine's CPU flags and
what `amp: auto` picks, bf16 against float32 side by side, time to quality and the K table
(both read from finished runs: finished.py, time_to_quality.py) and the other machines
(others.py). Every number comes from the harness's JSON; a number not measured says so."""
from __future__ import annotations

from .others import flags_text
from .time_to_quality import markdown as ttq_markdown

NOT_RUN = "not run"


def machine_rows(mach: dict) -> list[str]:
    flags = flags_text(mach.get("cpu_flags"))
    auto = mach.get("amp_auto")
    why = ("this CPU has native bf16" if auto == "bfloat16" else "no avx512_bf16 or amx_bf16 on this CPU"
           if mach.get("device", "cpu") == "cpu" else "the GPU's bf16 support")
    rows = [f"| CPU flags (`dualat.precision.cpu_flags`: torch's CPU probe, else /proc/cpuinfo) | {flags} |",
            f"| what `amp: auto` picks here (`dualat.precision.resolve`) | {auto or 'not recorded'} ({why}) |"]
    if mach.get("device", "cpu") == "cpu" and "onednn_bf16" in mach:
        rows.append("| what `amp: true` gives here | " + ("bfloat16 (oneDNN reports bf16 kernels)" if mach["onednn_bf16"]
                    else "float32, with a warning (oneDNN reports no bf16 kernels)") + " |")
    return rows


def bf16_section(r: dict) -> list[str]:
    lines = ["## bf16 against float32 (this run)", ""]
    rows = [(k, m) for k, m in r["models"].items() if m.get("amp_variant")]
    if not rows:
        why = ("every timing of this run is already under bf16 autocast (`--amp`)" if any(m["amp"] for m in
               r["models"].values()) else "not measured in this run (`--no-amp-variant`)")
        return lines + [f"The library step under bf16 autocast: {why}.", ""]
    lines += ["The library DAT step under bf16 autocast (`torch.autocast(\"cpu\", torch.bfloat16)`, forced whatever "
              "`amp` would pick), timed in the same interleaved rounds as the float32 library step. Where the CPU "
              "lacks avx512_bf16 and amx_bf16, bf16 is emulated, and timed in fewer rounds.", "",
              "| model | float32 library step | bf16 library step | bf16 / float32 time | bf16 arithmetic |",
              "|---|---|---|---|---|"]
    for key, m in rows:
        v, t = m["amp_variant"], m["times"]
        native = v.get("native_bf16")
        how = "native" if native else "emulated" if native is False else "not recorded"
        ratio = v["s_per_it"] / t["lib_step"]["best"]
        word = f"{ratio:.2f} ({1 / ratio:.2f}x faster)" if ratio < 1 else f"{ratio:.2f} ({ratio:.1f}x slower)"
        lines.append(f"| {key} | {t['lib_step']['best']:.3f} s (best of {len(t['lib_step']['all'])}) | "
                     f"{v['s_per_it']:.3f} s (best of {len(t['lib_amp_step']['all'])}) | {word} | {how} |")
    for key in (k for k, m in r["models"].items() if not m.get("amp_variant") and not m["amp"]):
        lines.append(f"| {key} | {r['models'][key]['times']['lib_step']['best']:.3f} s | not measured in this run "
                     "(`--bf16-models`) | | |")
    return lines + ["", "What stays float32 under autocast (energies, losses, the PGD step's normalisation and "
                    "projection, the EMA, the metrics), and why: the docstring of `dualat.precision`; "
                    "tests/test_precision.py checks each.", ""]


def ttq_section(t: dict | None) -> list[str]:
    lines = ["## Time to quality", ""]
    if not t:
        return lines + ["Not part of this run: `make bench TTQ_RUNS=\"runs/a runs/b\"` adds the table of those "
                        "finished runs (read from their logs; nothing is trained).", ""]
    lines += [f"From the logs of finished runs (nothing trained here): `{t['command']}`. Wall and CPU time from "
              "each run's start (stage 1, the evaluation network and every periodic evaluation included; a "
              "borrowed stage 1 is charged its run's whole time), until the periodic evaluation first met each "
              "threshold; the share column is the periodic evaluation's part of the wall time. The periodic "
              "evaluation uses its own attack (last column) on the first `eval.n_test` images, not PGD-20 on all.",
              "", ttq_markdown(t["results"]).rstrip(), "", "The runs, as their logs recorded them:", ""]
    lines += [f"- `{r['run']}`: `{r.get('train_command', 'not logged')}`" for r in t["results"]]
    return lines + [""]


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "n not recorded"


def _pct(rec: dict | None, detail: str) -> str:
    if rec is None:
        return NOT_RUN
    return f"{100 * rec['value']:.2f}% ({detail}{_count(rec.get('n'))}, {rec['dtype']})"


def _k_cells(row: dict) -> list[str]:
    nums, p, s2 = row["numbers"], row["passes"], row["stage2"]
    pgd, aa, g = nums.get("pgd_l2"), nums.get("aa_l2"), nums.get("generative")
    K = f"{row['K']}{' (fast)' if row['fast'] else ''}"
    run = row["run"] if row["label"] in (str(row["K"]), row["run"]) else f"{row['label']}: {row['run']}"
    passes = (f"{p['mean_T']:.1f} + {row['K']} input-gradient, {p['train']} training" if p
              else "not recoverable (no T in the log)")
    time = (NOT_RUN if s2 is None else f"{s2['wall_s']:,.0f} s wall, "
            + (f"{s2['cpu_s']:,.0f} CPU s" if s2["cpu_s"] is not None else "CPU not logged")
            + ("" if row["finished"] else " (unfinished)"))
    fd = NOT_RUN if g is None else (f"{g['fd']:.3f} ({_count(g['n'])} samples vs {g['ref'] or _count(g['n_ref'])}, "
                                    f"{g['extractor']}, {g['dtype']})")
    pr = lambda k: NOT_RUN if g is None or g.get(k) is None else f"{g[k]:.3f}"  # noqa: E731
    return [K, run, row["trained_in"], passes, time, _pct(nums.get("clean"), ""),
            _pct(pgd, f"PGD-{pgd['steps']}, " if pgd else ""),
            _pct(aa, f"{aa['version']}{'' if aa['standard'] else ' NON-standard'}, " if aa else ""),
            fd, pr("precision"), pr("recall")]


def k_section(k: dict | None) -> list[str]:
    lines = ["## Stage 2's adversarial term: K = 5, 3 or 1 attack steps", ""]
    recipe = ["    dualat train fashion_mnist stage2.iterations=0 --out runs/s1        # one stage 1 for all",
              "    dualat train fashion_mnist stage1.init=runs/s1/stage1.pt stage1.iterations=0 --out runs/k5",
              "    dualat train fashion_mnist stage1.init=runs/s1/stage1.pt stage1.iterations=0 threat.steps=3 "
              "threat.step_size=0.8333 --out runs/k3",
              "    dualat train fashion_mnist stage1.init=runs/s1/stage1.pt stage1.iterations=0 threat.fast=true "
              "--out runs/k1",
              "    dualat eval RUN --robust --norm L2 --autoattack --generative --n-samples 2000 --ref-split test "
              "--n-ref 10000",
              "    make bench K_RUNS=\"5=runs/k5 3=runs/k3 1=runs/k1\"", ""]
    intro = ("Separate finished runs from one stage 1, each evaluated afterwards: PGD-20 L2 on all 10,000 test "
             "images, AutoAttack L2 on the first 1,000 (`--autoattack` with no `--n`), FD / precision / recall of "
             "2,000 samples against the 10,000 test images. The commands:")
    if not k:
        return lines + ["Not part of this run. " + intro, ""] + recipe
    lines += [f"Read from finished runs (`--k-runs \"{k['spec']}\"`; nothing trained here). {intro}", ""] + recipe
    lines += ["Each number names the images it used and the arithmetic it was computed in (metrics.json's "
              "`compute_dtype`); \"not run\" where no `dualat eval` output in the run directory holds it. Stage 2's "
              "time runs from the stage-1 evaluation record to the run's last record, its CPU time from the last "
              "CPU reading before it (the start event). Passes per iteration: the mean T of the logged windows "
              "plus K input-gradient passes, and the 3 training passes.", "",
              "| K | run | trained in | passes per stage-2 iteration | stage 2 | clean | PGD L2 eps=1 | "
              "AutoAttack L2 | FD (evalnet) | precision | recall |", "|---" * 11 + "|"]
    lines += ["| " + " | ".join(_k_cells(row)) + " |" for row in k["rows"]]
    lines += ["", "Inputs, as the logs and files recorded them:", ""]
    for row in k["rows"]:
        files = sorted({rec["file"] for rec in row["numbers"].values()})
        s1 = f"; stage 1 from `{row['stage1_from']}`: `{row['stage1_command']}`" if row.get("stage1_from") else ""
        lines.append(f"- K = {row['K']}: `{row['train_command']}`{s1}; numbers from "
                     + (", ".join(f"`{f}`" for f in files) or "no metrics.json")
                     + ("; skipped: " + "; ".join(row["skipped"]) if row["skipped"] else ""))
    differ = k.get("differences")
    lines += ["", ("The runs' config.yaml differ in more than K (threat.*) and threads: " + "; ".join(differ) + ".")
              if differ else "The runs' config.yaml agree in everything but K (threat.*) and threads."]
    return lines + [""]


def others_section(rows: list[dict]) -> list[str]:
    lines = ["## Other machines and earlier runs", ""]
    if not rows:
        return lines + ["None kept (docs/performance-*.json).", ""]
    lines += ["Summaries of the raw files kept beside this page (docs/performance-*.json), measured on other days "
              "or machines and not re-measured here; the file holds every number and its conditions.", "",
              "| date | machine | CPU flags | what | result | file | notes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["date"], r["machine"], r["flags"], r["what"], r["result"], f"[{r['link']}]({r['link']})",
                 r["note"] or ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines + [""]
