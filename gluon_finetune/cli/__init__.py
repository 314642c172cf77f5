"""The ``gluon-finetune`` command: parsers, commands, config files and job launch."""
from .main import main

__all__ = ["main"]
