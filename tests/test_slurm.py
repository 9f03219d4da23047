"""The tiny sweep through a real SLURM cluster (job arrays via submitit) equals the same sweep run locally.

CI starts a one-node cluster with scripts/ci_services.sh (Debian's slurm-wlm); elsewhere this test skips.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from inrlens.store import read_rows
from test_sweep import _cli, check_complete, expected_fits, sets, sweep_args  # noqa: F401  (sets is a fixture)

pytestmark = pytest.mark.slurm


def _cluster_ready() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch is not installed (no SLURM client); CI starts one with scripts/ci_services.sh"
    try:
        st = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    states = st.stdout.split()
    if st.returncode != 0 or not any(s in ("idle", "mixed", "allocated") for s in states):
        return f"no SLURM node is up (sinfo: {st.stdout.strip() or st.stderr.strip()})"
    return None


def test_slurm_sweep_equals_local(sets, tmp_path):  # noqa: F811  (sets: the fixture imported above)
    why = _cluster_ready()
    if why:
        pytest.skip(why)
    extra = ("--sources", "rgb", "--max-members", "4", "--no-report")
    n = expected_fits(1, 2, 1, 2, 2, 2)
    runs = {}
    for cluster in ("slurm", "local"):
        out = tmp_path / cluster
        p = _cli(sweep_args(sets, out, cluster, extra))
        log, _ = p.communicate(timeout=900)
        assert p.returncode == 0, f"{cluster}: {log}"
        runs[cluster] = {r["key"]: r for r in check_complete(out, n)}
    # the slurm jobs really ran through SLURM: submitit wrote sbatch scripts and array logs
    assert list((tmp_path / "slurm" / "submitit").glob("*submission*.sh")) or list((tmp_path / "slurm" / "submitit").glob("*.sh"))
    assert set(runs["slurm"]) == set(runs["local"])
    for key, a in runs["slurm"].items():
        b = runs["local"][key]
        assert a["status"] == b["status"] == "ok"
        for m in ("psnr", "ssim", "train_psnr"):
            assert a[m] == pytest.approx(b[m], abs=1e-5), (key, m)
    cohorts = [r for r in read_rows(tmp_path / "slurm" / "results") if r.get("kind") == "cohort"]
    local_c = [r for r in read_rows(tmp_path / "local" / "results") if r.get("kind") == "cohort"]
    assert len(cohorts) == len(local_c) == 1
    assert cohorts[0]["sr_w"] == pytest.approx(local_c[0]["sr_w"], rel=1e-6)
