"""Training: one task into one MLflow run, and trainers for many tasks."""

from qroll.train.pool_trainer import DelayTrainerRM, TrainerRM
from qroll.train.task import begin_task_train, end_task_train, task_train
from qroll.train.trainer import DelayTrainerR, TaskOutcome, Trainer, TrainerR

__all__ = [
    "DelayTrainerR",
    "DelayTrainerRM",
    "TaskOutcome",
    "Trainer",
    "TrainerR",
    "TrainerRM",
    "begin_task_train",
    "end_task_train",
    "task_train",
]
