"""What the trainer does, shown: ``explain`` tables and learning-rate and accuracy plots."""
from .explain import Explanation, explain
from .plots import RateRecorder, lr_curves, plot_lr_curves, plot_schedules

__all__ = ["Explanation", "RateRecorder", "explain", "lr_curves", "plot_lr_curves",
           "plot_schedules"]
