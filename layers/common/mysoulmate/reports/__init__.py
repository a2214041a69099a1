"""Scheduled reports: the period report rendered as one HTML page (charts inline), its JSON
and its CSV (`render`), and written once per period (`job`)."""

from mysoulmate.reports.render import RenderedReport, render_report

__all__ = ["RenderedReport", "render_report"]
