"""What is predicted and how it is scored: the Task interface, its metrics and the built-in kinds
(single-text classification, text-pair classification, regression), registered through the
``register_tasks`` hook like a plugin's."""

from peftbench.tasks.base import PAD_LABEL, Task
from peftbench.tasks.metrics import Metric

__all__ = ["PAD_LABEL", "Metric", "Task"]
