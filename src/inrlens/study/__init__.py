"""The whole study from a preset, as a library (what ``inrlens reproduce`` runs; the command only parses and prints).

:mod:`~inrlens.study.preset`
    :class:`Preset` (a preset TOML file's tables, typed; :func:`load_preset`), :class:`StudyConfig` (its [study]
    table), :func:`resolve_preset` → :class:`Resolved` (merged with the command line's datasets and overrides, and
    checked before anything is written).
:mod:`~inrlens.study.stages`
    One function per stage (:data:`STAGES`: sweep, figures, single, sae, atoms, ablate, report, atlas; and
    depth_width with a [depth_width] table), each resumable; :func:`conditions` lists the decomposed INRs.
:mod:`~inrlens.study.estimate`
    :func:`study_counts` and :func:`estimate_time`: what a preset would run and how long (``--plan``).
:mod:`~inrlens.study.runner`
    :func:`prepare_study` and :func:`run_study`: the stages in order, then the atlas and the report.
"""

from .estimate import estimate_time, study_counts
from .preset import (
    Preset,
    Resolved,
    StudyConfig,
    check_study,
    load_preset,
    recorded_study,
    resolve_preset,
    settings_meta,
    with_data,
)
from .runner import StudyResult, n_stages, prepare_study, quiet_bar, run_study
from .stages import (
    STAGES,
    conditions,
    stage_ablate,
    stage_atoms,
    stage_depth_width,
    stage_report,
    stage_sae,
    stage_single,
    stage_sweep,
)

__all__ = [
    "STAGES", "Preset", "Resolved", "StudyConfig", "StudyResult", "check_study", "conditions", "estimate_time",
    "load_preset", "n_stages", "prepare_study", "quiet_bar", "recorded_study", "resolve_preset", "run_study",
    "settings_meta", "stage_ablate", "stage_atoms", "stage_depth_width", "stage_report", "stage_sae", "stage_single",
    "stage_sweep", "study_counts", "with_data",
]
