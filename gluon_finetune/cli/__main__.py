"""``python -m gluon_finetune.cli``: the ``gluon-finetune`` command."""
import sys

from .main import main

sys.exit(main())
