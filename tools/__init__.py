"""pixel_m4.tools: everything around the models that a Hub folder does not ship.

Pretraining (`pretraining`), task data and collators (`task_data`), task metrics
(`task_metrics`, `metrics/`), the example scripts' shared code (`task_cli`), analysis
(`analysis`), conversion of published checkpoints (`convert`, the `pixel-m4-convert` CLI) and
Hub-folder writing (`hub`, the `pixel-m4-create` CLI, and the list of files a Hub folder ships).
The model files themselves are the package root (`pixel_m4`); they never import from here.
"""
