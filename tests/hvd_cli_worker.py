"""``gluon-finetune`` in a horovodrun worker, for test_horovod_cli.py.

    horovodrun -np 2 ... python hvd_cli_worker.py [--kill-after-steps N] -- ARGS...

runs the CLI with ARGS; prints ``rank R: S steps`` at the end (each worker's own count of
``trainer.step``) and ``rank R: schedule lengths [...]`` (the ``max_update`` of every
rule's schedule, in the trainer's last rules). ``--kill-after-steps N`` ends every worker
(``os._exit``, as a kill would) right after its N-th step.
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
    steps, last = [0], []
    step = LayerwiseTrainer.step

    def counted(self, *a, **k):
        out = step(self, *a, **k)
        steps[0] += 1
        last[:] = [self]
        if steps[0] == args.kill_after_steps:
            os._exit(KILLED)
        return out

    LayerwiseTrainer.step = counted
    status = cli([a for a in args.args if a != "--"])
    rank = os.environ["HOROVOD_RANK"]
    print(f"rank {rank}: {steps[0]} steps", flush=True)
    if last:
        lengths = sorted({getattr(value.get("lr_scheduler"), "max_update", None)
                          for _, value in last[0].layers or () if isinstance(value, dict)}
                         - {None})
        print(f"rank {rank}: schedule lengths {lengths}", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
