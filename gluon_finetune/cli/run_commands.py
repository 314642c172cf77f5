"""The commands on a run folder: ``evaluate``, ``predict``, ``export`` (``runs``' API)."""
from __future__ import annotations

import os

from .schema import Settings

__all__ = ["RUN_COMMANDS"]


def _evaluate(settings: Settings) -> None:
    from ..reporting.classification import format_report
    from ..runs import evaluate_run
    report = evaluate_run(settings.run, settings.data, params=settings.params, out=settings.out,
                          batch_size=settings.batch_size, progress=not settings.no_progress)
    print(format_report(report))
    print(f"wrote {report['files']['report']} and {report['files']['confusion_matrix']}")


def _predict(settings: Settings) -> None:
    from ..runs import predict, write_predictions
    rows = predict(settings.run, settings.images, params=settings.params, top_k=settings.top_k,
                   batch_size=settings.batch_size, progress=not settings.no_progress)
    if settings.out is not None:
        folder = os.path.dirname(os.path.abspath(settings.out))
        os.makedirs(folder, exist_ok=True)
    write_predictions(rows, settings.out)
    if settings.out is not None:
        print(f"wrote {len(rows)} predictions to {settings.out}")


def _export(settings: Settings) -> None:
    from ..runs import export_run
    result = export_run(settings.run, settings.out, params=settings.params, onnx=settings.onnx)
    for name, path in result.files.items():
        print(f"{name:>13}: {path}")
    print(f"gluon.SymbolBlock.imports: max abs difference to the network "
          f"{result.symbol_difference:.3g}")
    if result.onnx_difference is not None:
        print(f"ONNX (onnx.checker passed), ONNX Runtime: max abs difference to the network "
              f"{result.onnx_difference:.3g}")


RUN_COMMANDS = {"evaluate": _evaluate, "predict": _predict, "export": _export}
