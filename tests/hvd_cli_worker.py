"""``gluon-finetune`` in a horovodrun worker, for test_horovod_cli.py.

    horovodrun -np 2 ... python hvd_cli_worker.py [--kill-after-steps N] -- ARGS...

runs the CLI with ARGS; prints ``rank R: S steps`` at the end (each worker's own count of
``trainer.step``). ``--kill-after-steps N`` ends every worker (``os._exit``, as a kill
would) right after its N-th step.
"""
import argparse
import os
import sys

from gluon_finetune.cli.main import main as cli
from gluon_finetune.trainer import LayerwiseTrainer

KILLED = 9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kill-after-steps", type=int)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    steps = [0]
    step = LayerwiseTrainer.step

    def counted(self, *a, **k):
        out = step(self, *a, **k)
        steps[0] += 1
        if steps[0] == args.kill_after_steps:
            os._exit(KILLED)
        return out

    LayerwiseTrainer.step = counted
    status = cli([a for a in args.args if a != "--"])
    print(f"rank {os.environ['HOROVOD_RANK']}: {steps[0]} steps", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
