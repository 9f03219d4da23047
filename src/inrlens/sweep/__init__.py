"""The freeze study as a resumable sweep of fits, run in this process, as local processes or on SLURM.

A sweep expands sources × targets × backbones × {no freeze, k = 0..L−1, random init} × test images × seeds
into cohorts and fits, each with a key that hashes everything defining its result. Results are appended as
rows to JSONL files in the run folder; a rerun of the same sweep skips every key already there, so a killed
sweep continues where it stopped. The run folder, the keys and the rows are described in docs/run-folder.md.

Modules: :mod:`~inrlens.sweep.spec` (what runs and how: SweepSpec, ExecSpec, definition files),
:mod:`~inrlens.sweep.plan` (tasks and keys), :mod:`~inrlens.sweep.jobs` (the job functions, chunking) and
:mod:`~inrlens.sweep.executors` (submitit or in-process executors, :func:`run_sweep`).
"""

from .executors import InlineExecutor, SweepCancelled, cancel_jobs, failure_cause, make_executor, run_sweep, wait_jobs
from .jobs import chunk_fits, cohort_ready, deal, run_fits_job, train_cohort_job, train_cohorts_job
from .plan import CohortTask, FitTask, Plan, make_plan, net_for
from .spec import (
                   BackboneSettings,
                   Cluster,
                   ExecSpec,
                   SweepSpec,
                   key_dict,
                   key_hash,
                   load_spec_file,
                   merge_flags,
                   parse_data,
                   resolve_specs,
                   run_config,
                   spec_from_dict,
)

__all__ = ["SweepSpec", "ExecSpec", "BackboneSettings", "Cluster", "key_dict", "key_hash", "run_config", "parse_data",
           "load_spec_file", "spec_from_dict", "merge_flags", "resolve_specs", "CohortTask", "FitTask", "Plan",
           "make_plan", "net_for", "chunk_fits", "deal", "cohort_ready", "train_cohort_job", "train_cohorts_job",
           "run_fits_job", "InlineExecutor", "make_executor", "failure_cause", "wait_jobs", "run_sweep", "cancel_jobs",
           "SweepCancelled"]
