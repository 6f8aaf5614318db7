"""Reports: HTML pages and plots of results."""
from .html import overlay_mask, unit_strip, write_report

__all__ = ["write_report", "overlay_mask", "unit_strip"]
