"""Models ready for fine-tuning: MXNet's and GluonCV's zoos, GluonNLP's BERT, input sizes;
and a trained network exported for deployment (MXNet symbol, ONNX)."""
from .export import export_network, export_onnx
from .input_size import check_input_size
from .zoo import get_model, model_names

__all__ = ["check_input_size", "export_network", "export_onnx", "get_model", "model_names"]
