"""Alias of ``gluon_finetune.optim.optimizer``: states files written by 0.1.0 name this path.

A states file pickles classes by import path; pickle looks each name up here,
and this module hands it over from its new home, so old files load (and
continue bit for bit). New code imports the new path.
"""
from .optim import optimizer as _moved


def __getattr__(name):
    return getattr(_moved, name)
