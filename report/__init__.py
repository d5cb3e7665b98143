"""The run report: one self-contained HTML page of figures and tables from a run's outputs.

`relbridge run`, `train`, `evaluate --report`, `benchmark relx` and `demo` write
it beside their outputs (``report.html``) and name it in their summaries. See
`relbridge.report.render.write_report`.
"""

from relbridge.report.render import REPORT, render, try_write_report, write_report

__all__ = ["REPORT", "render", "try_write_report", "write_report"]
