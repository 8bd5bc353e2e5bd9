"""The application layer: a run directory driven from a YAML run file, step by step.

``paths`` (the run directory, opening and growing it) -> ``tasks`` (image / text classification, language
modelling behind one protocol) -> ``build`` (data, supernet, space, evaluator) -> ``picks`` (choosing and
exporting sub-networks) -> ``steps`` (train, search, export, report, measure, bench table; ``run_all``).
``preflight`` checks a run file against the machine first, ``facts`` records what the report shows,
``console`` prints, ``text`` holds the text-classification parts, ``defaults`` the embedded run file.
"""
from .build import build_supernet, load_data, make_evaluator, search_space, supernet_args, trained_supernet
from .defaults import DEFAULT_RUN_FILE, default_config
from .paths import SEARCH_RUN, RunPaths, open_run, run_changes, run_from_dir
from .picks import export_pick, exported_picks, pick_config
from .steps import bench_table_step, measure_step, report_step, run_all, search_step, train_step
from .tasks import Task, task_of

__all__ = ["DEFAULT_RUN_FILE", "SEARCH_RUN", "RunPaths", "Task", "bench_table_step", "build_supernet",
           "default_config", "export_pick", "exported_picks", "load_data", "make_evaluator", "measure_step",
           "open_run", "pick_config", "report_step", "run_all", "run_changes", "run_from_dir", "search_space",
           "search_step", "supernet_args", "task_of", "train_step", "trained_supernet"]
