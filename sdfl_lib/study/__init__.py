"""The notebooks' library: the study runner (`sdfl study`, `run_study`: the numbered notebooks
through papermill, rendered to HTML), smoke scaling of a study's parameters (`smoke`) and the
optimization study's short runs (`optimize.short_run`, `optimize.variant_study`: each variant
against its baseline, seed by seed, beyond noise or not)."""

from __future__ import annotations

from sdfl_lib.study.runner import (
    KERNEL_NAME,
    NOTEBOOK_DIR,
    REPO_ROOT,
    STATE_FILE,
    Notebook,
    ParameterError,
    StudyError,
    StudyResult,
    apply_sets,
    checked_parameters,
    execution_order,
    find_notebooks,
    load_params,
    notebook_parameters,
    prepare_params,
    register,
    render_html,
    render_site,
    run_study,
    select_notebooks,
)

__all__ = [
    "KERNEL_NAME",
    "NOTEBOOK_DIR",
    "REPO_ROOT",
    "STATE_FILE",
    "Notebook",
    "ParameterError",
    "StudyError",
    "StudyResult",
    "apply_sets",
    "checked_parameters",
    "execution_order",
    "find_notebooks",
    "load_params",
    "notebook_parameters",
    "prepare_params",
    "register",
    "render_html",
    "render_site",
    "run_study",
    "select_notebooks",
]
