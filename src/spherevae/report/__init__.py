"""Reports that compare runs: the self-contained HTML report, which runs' FIDs may be
ranked together, and the MSE-FID plane (Fig 2).

Layer 6: imports :mod:`spherevae.evaluation` and everything below it.
"""

from spherevae.report.comparability import (
    FID_SETTING,
    SettingPart,
    comparable_groups,
    group_label,
    incomparability,
)
from spherevae.report.freshness import (
    MAX_FIGURE_BYTES,
    PNG_SIGNATURE,
    mark_stale,
    png_bytes,
    run_figures,
)
from spherevae.report.html import (
    FIGURE_CAPTIONS,
    RunSummary,
    check_report_target,
    load_run_summary,
    write_report,
)
from spherevae.report.plane import (
    distinct_colours,
    draw_sweep_plane,
    mse_fid_plane,
    sampler_colours,
)

__all__ = [
    "FID_SETTING",
    "FIGURE_CAPTIONS",
    "MAX_FIGURE_BYTES",
    "PNG_SIGNATURE",
    "RunSummary",
    "SettingPart",
    "check_report_target",
    "comparable_groups",
    "distinct_colours",
    "draw_sweep_plane",
    "group_label",
    "incomparability",
    "load_run_summary",
    "mark_stale",
    "mse_fid_plane",
    "png_bytes",
    "run_figures",
    "sampler_colours",
    "write_report",
]
