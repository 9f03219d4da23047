"""``inrlens ladder``: the freeze sweep repeated over resolution scales × hidden widths (docs/ladder.md).

Thin command: resolve the flags (and an optional definition file), plan the selected rungs (every input error
surfaces here, before anything is written), print the plan or run the rungs with :func:`inrlens.ladder.run_ladder`,
then write the summary table and figure.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from ..ladder import LadderSpec
from ..sweep import ExecSpec


@dataclass(frozen=True)
class Ladder:
    """Scale ladder: does freezing at the best depth beat no freeze as resolution and width grow? One sweep per rung (scale, width)."""

    ladder: Annotated[LadderSpec, tyro.conf.arg(name="")] = LadderSpec()
    exec: Annotated[ExecSpec, tyro.conf.arg(name="")] = ExecSpec()
    out: Path = Path("runs/ladder")
    """Run folder (run.json, grid.json, rungs/s{scale}_w{width}/ sweep folders, ladder.md/.csv/.json, ladder.png/.pdf;
    see docs/ladder.md). Running the same command again continues: finished fits are skipped."""
    config: Path | None = None
    """Ladder definition file (.toml or .yaml; docs/ladder.md); flags that differ from the defaults override it."""
    rungs: tuple[str, ...] = ()
    """Run only these rungs: names as --plan prints them (s0.125_w64), s<scale> for every width at a scale, or
    w<width> for every scale at a width; default: all, cheaper first."""
    plan: bool = False
    """Print the rungs, their cohorts and fits (still to run / planned) and an upper bound on their work, then stop."""
    overwrite: bool = False
    """Replace the configs recorded in an existing ladder folder (results already there are kept, never deleted)."""
    summary_only: bool = False
    """Only rewrite ladder.md/.csv/.json and the figure from the rows already in OUT (no fitting)."""
    rung_reports: bool = False
    """Also write each finished rung's freeze-study report (tables and figures) to OUT/rungs/<rung>/report."""

    def run(self) -> None:
        from ..ladder import estimate, plan_rungs, resolve_ladder, run_ladder, scale_label, write_ladder

        if self.summary_only:
            for p in write_ladder(self.out):
                print(p)
            return
        spec, ex = resolve_ladder(self.config, self.ladder, self.exec)
        planned = plan_rungs(spec, self.out, self.rungs)  # every input error surfaces here, before anything is written
        if self.plan:
            self._print_plan(spec, planned, estimate, scale_label)
            return
        res = run_ladder(spec, ex, self.out, planned=planned, overwrite=self.overwrite)
        for r in res["rungs"]:
            print(f"ladder: {r['rung']}: {r['done']}/{r['fits']} fits")
        if self.rung_reports:
            from ..report import write_report

            for r in res["rungs"]:
                if r["done"]:
                    write_report(self.out / "rungs" / r["rung"])
        paths = write_ladder(self.out)
        print(f"ladder: summary in {self.out / 'ladder.md'}" + (f", figure {paths[-2]}" if len(paths) > 3 else ""))
        again = f"rerun the same `inrlens ladder --out {self.out} …` command to continue (finished fits are kept)"
        missing = sum(r["fits"] - r["done"] for r in res["rungs"])
        if res["errors"]:
            for e in res["errors"]:
                print(f"inrlens: error: {e}", file=sys.stderr)
            print(f"inrlens: {len(res['errors'])} job(s) failed; {again}", file=sys.stderr)
            raise SystemExit(1)
        if missing:
            print(f"inrlens: error: {missing} fits are missing; {again}", file=sys.stderr)
            raise SystemExit(1)

    def _print_plan(self, spec, planned, estimate, scale_label) -> None:
        from ..store import RESULTS_DIR, done_keys
        from .core import print_table

        rows, total = [], 0.0
        for rung, plan in planned:
            res = self.out / "rungs" / rung.name / RESULTS_DIR
            done = done_keys(res) if res.is_dir() else set()
            e = estimate(spec, plan, done)
            total += e["tflop"]
            rows.append({"rung": rung.name, "scale": scale_label(rung.scale), "width": rung.width,
                         "cohorts": f"{e['cohorts_to_train']}/{e['cohorts']}", "fits": f"{e['fits_to_run']}/{e['fits']}",
                         "TFLOP (≤)": f"{e['tflop']:.3g}", "target sizes": " ".join(e["shapes"])})
        pairs = ", ".join(f"{s} → {t}" for s, t in spec.pair_list())
        print_table(rows, ["rung", "scale", "width", "cohorts", "fits", "TFLOP (≤)", "target sizes"],
                    f"ladder {self.out}: {len(rows)} rungs, pairs {pairs}, backbones {', '.join(spec.backbones)} "
                    "(cohorts and fits: still to run / planned)")
        print(f"total ≤ {total:.3g} TFLOP still to run (6 · steps · pixels · multiply-adds per pixel; cohorts at their "
              "full step budget). Rungs run in this order.")
