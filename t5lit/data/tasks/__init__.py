"""Downstream tasks by registry name (``t5lit list tasks``); one file per benchmark registers its tasks.

    from t5lit.data.tasks import get_task
    task = get_task("glue_rte")
    examples = task.load("validation", data_dir="glue_data")   # or from the Hugging Face hub without data_dir
    pairs = [task.format(ex) for ex in examples]               # {"inputs": "rte sentence1: ...", "targets": ...}
    scores = task.evaluate(examples, decoded_predictions)      # {"accuracy": 71.5}
"""

from t5lit.data.tasks import builtin, cnn_dailymail, glue, squad, superglue, wmt  # noqa: F401 - registers tasks
from t5lit.data.tasks.base import TASKS, Example, Source, Task, get_task, register_task

__all__ = ["TASKS", "Example", "Source", "Task", "get_task", "register_task"]
