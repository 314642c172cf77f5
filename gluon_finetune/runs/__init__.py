"""The whole fine-tuning job on run folders: train (and resume exactly), evaluate, predict,
export. Sits between the command line and the recipes."""
from .export import ExportResult, export_run
from .folder import RunFolder
from .inference import (
    Prediction,
    evaluate_run,
    image_files,
    load_network,
    predict,
    preprocess,
    write_predictions,
)
from .job import RunResult, train_run

__all__ = ["ExportResult", "Prediction", "RunFolder", "RunResult", "evaluate_run",
           "export_run", "image_files", "load_network", "predict", "preprocess", "train_run",
           "write_predictions"]
