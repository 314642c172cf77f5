"""Models ready for fine-tuning: MXNet's and GluonCV's zoos, GluonNLP's BERT, input sizes."""
from .input_size import check_input_size
from .zoo import get_model, model_names

__all__ = ["check_input_size", "get_model", "model_names"]
