"""Packaging for gluon-finetune.

The exact versions that are known to work together live in requirements.lock
(``make .venv`` installs them); the ranges here are what the code needs.
"""
from setuptools import find_packages, setup

setup(
    name="gluon-finetune",
    version="0.1.0",
    description="Per-layer learning rates, schedules and freezing for MXNet Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gluon_finetune", "gluon_finetune.*"]),
    python_requires=">=3.8",
    install_requires=[
        "mxnet==1.9.1",
        "numpy<1.24",
        "pandas<2.1",
        "tqdm",
        "ruamel.yaml>=0.19.1,<0.20",  # YAML 1.2 configs (cli/config_text.py)
    ],
    extras_require={
        "zoo": ["gluoncv==0.10.5.post0", "opencv-python<4.9", "scipy<1.12"],
        "plot": ["matplotlib<3.8"],
        # evaluate: per-class metrics and the confusion matrix picture
        "eval": ["scikit-learn", "matplotlib<3.8"],
        # export --onnx: the newest pair that works with mxnet 1.9.1 (numpy<1.24)
        "onnx": ["onnx==1.16.2", "onnxruntime==1.18.1"],
        # built from source with HOROVOD_WITH_MXNET=1 (see the scaling-out guide)
        "horovod": ["horovod==0.28.1"],
        "test": ["pytest", "hypothesis", "ruff", "scikit-learn"],
    },
    entry_points={"console_scripts": ["gluon-finetune=gluon_finetune.cli:main"]},
)
