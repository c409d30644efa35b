"""Studies: a plan of pre-training and fine-tuning cells over arms, tasks and seeds, recorded and reported."""

from pert.study.config import StudyConfig
from pert.study.report import write_report
from pert.study.run import plan, run_study

__all__ = ["StudyConfig", "plan", "run_study", "write_report"]
