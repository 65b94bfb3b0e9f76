"""The study's tables and plots by name, with each table's fixed leading columns: the one list that
gather's column order, the plots, the workflow's targets (workflow/rules/common.smk) and the tests
read. Plain data: no pandas or plotting imported.

Tables with one row per fold or image drop their `seed` column in a one-seed study; under a
protocol other than lopo their `subject` column reads `fold`; summary, seeds and predictions add
data-dependent columns (age bands, further prediction columns) after these.
"""

from __future__ import annotations

THETAS = range(11)  # the cumulative score's error thresholds, in years
_SUMMARY = ("loss", "n_subjects", "images", "mae", "mae_rounded", "subject_mae_mean", "subject_mae_sd",
            *(f"cs_{t}" for t in THETAS))
SEED_COLUMNS = ("n_seeds", "mae_seed_sd", "mae_ci_low", "mae_ci_high")

# `skipped`: test images the cache skipped (on_no_face: skip), after each table's other fixed columns.
TABLES: dict[str, tuple[str, ...]] = {
    "folds": ("loss", "seed", "subject", "n_test", "mae", "best_epoch", "val_mae", "seconds", "skipped", "protocol"),
    "summary": (*_SUMMARY, *SEED_COLUMNS, "skipped"),
    "seeds": (_SUMMARY[0], "seed", *_SUMMARY[1:], "skipped"),
    # The unit of every figure is in its name: image_* over test images (image-weighted, the LOPO
    # MAE), subject_* over subjects (one MAE per person).
    "comparison": ("loss", "reference", "n_subjects", "n_images", "image_mae", "image_mae_reference",
                   "image_mae_diff", "image_clustered_ci_low", "image_clustered_ci_high", "image_clustered_p",
                   "images_improved", "images_worse", "images_tied",
                   "subject_mae_diff", "subject_wilcoxon_p", "subject_ci_low", "subject_ci_high",
                   "subjects_improved", "subjects_worse", "subjects_tied", "bootstrap", "seed",
                   "n_seeds", "n_seeds_reference"),
    "predictions": ("loss", "seed", "subject", "image", "age", "predicted_age", "error", "abs_error"),
    "history": ("loss", "seed", "subject", "epoch", "val_mae"),
}
PER_FOLD = ("folds", "predictions", "history")  # one row per fold or image: no seed column with one seed

PREDICTION_COLUMNS = ("predicted_age", "predicted_age_rounded")  # what errors may be computed from
MAX_BOOTSTRAP = 1_000_000  # resamples at most: each costs a pass over every image

PLOTS = ("ranking", "subject_mae_paired", "cs_curves", "predicted_vs_true", "mae_by_age_band", "training_curves")


def columns(table: str, seeded: bool = False) -> list[str]:
    """The fixed leading columns of `table`, with its seed column where the study has several seeds."""
    cols = list(TABLES[table])
    return cols if seeded or table not in PER_FOLD else [c for c in cols if c != "seed"]
