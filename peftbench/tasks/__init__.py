"""What is predicted and how it is scored: the Task interface, its metrics and the built-in kinds
(single-text classification, text-pair classification, regression), registered through the
``register_tasks`` hook like a plugin's. The built-in metrics are here for a plugin's kind to reuse."""

from peftbench.tasks.base import PAD_LABEL, Task
from peftbench.tasks.metrics import ACCURACY, F1, MACRO_F1, MCC, MSE, PEARSON, SPEARMAN, Metric

__all__ = ["ACCURACY", "F1", "MACRO_F1", "MCC", "MSE", "PAD_LABEL", "PEARSON", "SPEARMAN", "Metric", "Task"]
