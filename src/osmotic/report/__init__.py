"""Run directories, progress bars and plots shared by every learning mode."""
from osmotic.report.progress import progress_bar
from osmotic.report.rundir import RunDir

__all__ = ["RunDir", "progress_bar"]
