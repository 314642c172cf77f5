"""``python -m gluon_finetune.demo``: the demo of ``make demo``."""
from . import main

main()
