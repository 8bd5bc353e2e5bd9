"""Reports of a run: the Pareto front (table, knee), PNG and interactive plots, architectures drawn, model
cards and a self-contained HTML page."""
from .front import front_table, knee_point, pareto_mask, write_front_table
from .html import write_report
from .plots import objective_pairs, plot_fronts, plot_hypervolume

__all__ = ["front_table", "knee_point", "objective_pairs", "pareto_mask", "plot_fronts", "plot_hypervolume",
           "write_front_table", "write_report"]
