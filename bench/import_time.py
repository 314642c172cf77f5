"""Time ``import gluon_finetune`` against ``import mxnet`` in fresh interpreters."""
import statistics
import subprocess
import sys
import time


def median_import_seconds(module: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    ours = median_import_seconds("gluon_finetune")
    baseline = median_import_seconds("mxnet")
    print(f"import gluon_finetune: {ours:.3f} s   import mxnet: {baseline:.3f} s   "
          f"ratio: {ours / baseline:.2f}")
