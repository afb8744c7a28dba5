"""Reports: release notes and model cards (Markdown + self-contained HTML with plots), and run reports."""

from loopgate.report.build import ReportPaths, build_report, build_run_report

__all__ = ["ReportPaths", "build_report", "build_run_report"]
