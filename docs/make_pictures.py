"""Draw the documentation's pictures again, with the package's own plots.

    python docs/make_pictures.py            # the schedule preview and the demo's curves
    python docs/make_pictures.py --lr-find  # also docs/lr_find_digits.png (a few minutes)

The demo takes a few minutes on two CPU cores. mkdocs does not run this (the site
builds offline in seconds); commit the PNGs it writes.
"""
from __future__ import annotations

import argparse
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMG = DOCS / "img"


def schedules() -> None:
    """One-cycle schedules per block, peaks by layer decay: the net the examples use."""
    sys.path.insert(0, str(ROOT))
    from conftest import SmallNet  # the examples' `net` (the root conftest)
    from gluon_finetune import LayerwiseTrainer, OneCycle, layer_decay, plot_schedules
    net = SmallNet(prefix="net_")
    net.initialize()
    rules = {i: {"learning_rate": rate["learning_rate"], "lr_scheduler": OneCycle(100)}
             for i, rate in layer_decay(net, 0.01, decay=0.5).items()}
    trainer = LayerwiseTrainer(net, "sgd", {"learning_rate": 0.01}, layers=rules)
    print("wrote", plot_schedules(trainer, 100, str(IMG / "schedules.png")))


def demo() -> None:
    """The demo's learning rates per block and accuracy curves."""
    from gluon_finetune import demo as study
    with tempfile.TemporaryDirectory() as out:
        study.main(["--out", out, "--no-progress"])
        for name in ("learning_rates", "accuracy"):
            shutil.copy(Path(out) / f"{name}.png", IMG / f"demo_{name}.png")


def lr_find_digits() -> None:
    example = runpy.run_path(str(ROOT / "examples" / "lr_find_then_fine_tune.py"),
                             run_name="example")
    example["main"](["--seeds", "6", "--out", str(DOCS / "lr_find_digits.png")])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr-find", action="store_true", help="also the lr_find picture")
    args = parser.parse_args(argv)
    IMG.mkdir(exist_ok=True)
    schedules()
    demo()
    if args.lr_find:
        lr_find_digits()


if __name__ == "__main__":
    main()
