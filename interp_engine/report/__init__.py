"""Reports: HTML pages and plots of results."""
from .html import overlay_mask, unit_strip, write_report
from .invert_page import histogram_svg, write_invert_report
from .relevance_plots import plot_local, plot_relevance_heatmap
from .represent_page import display_image, heat_overlay, plot_region, write_represent_report

__all__ = ["write_report", "overlay_mask", "unit_strip", "write_invert_report", "histogram_svg",
           "write_represent_report", "heat_overlay", "plot_region", "display_image", "plot_relevance_heatmap",
           "plot_local"]
