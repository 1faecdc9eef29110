"""Reports of finished runs: tables and plots of efficacy, the analysis of T, and what a fit prints when it ends."""

from lcross.exports import lazy_exports

_EXPORTS = {
    "write_report": "lcross.report.writer",
    "load_run": "lcross.report.writer",
    "sweep_figure": "lcross.report.plots",
    "map_figure": "lcross.report.plots",
    "run_summary": "lcross.report.summary",
    "compare_transforms": "lcross.report.transform_analysis",
    "tsne_2d": "lcross.report.tsne",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
