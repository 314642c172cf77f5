"""Packaging for gluon-finetune.

The version is written here and only here: the package reads it back from its
installed metadata (``gluon_finetune.__version__``) and a test checks that
CHANGELOG.md's newest entry names it. The exact versions known to work together
live in requirements.lock (``make .venv`` installs them); the ranges here are
what the code needs. ``pip install gluon-finetune`` brings only the core; each
extra brings what one optional feature imports (docs/getting-started.md).
"""
from setuptools import find_packages, setup

ZOO = ["gluoncv==0.10.5.post0", "opencv-python<4.9", "scipy<1.12"]
# GluonNLP 0.10.0 builds from source against the installed numpy and Cython:
# pip install Cython "numpy<1.24", then pip install --no-build-isolation "gluon-finetune[nlp]"
NLP = ["gluonnlp==0.10.0"]
PLOT = ["matplotlib<3.8", "pandas<2.1"]
DEMO = ["scikit-learn", "matplotlib<3.8"]
EVAL = ["scikit-learn", "matplotlib<3.8"]
ONNX = ["onnx==1.16.2", "onnxruntime==1.18.1"]

setup(
    name="gluon-finetune",
    version="0.2.0",
    description="Per-layer learning rates, schedules and freezing for MXNet Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=find_packages(include=["gluon_finetune", "gluon_finetune.*"]),
    python_requires=">=3.8",
    install_requires=[
        "mxnet==1.9.1",
        "numpy<1.24",
        "tqdm",
        "ruamel.yaml>=0.19.1,<0.20",  # YAML 1.2 configs (cli/config_text.py)
    ],
    extras_require={
        "zoo": ZOO,
        "nlp": NLP,
        "plot": PLOT,
        "demo": DEMO,
        # evaluate: per-class metrics and the confusion matrix picture
        "eval": EVAL,
        # export --onnx: the newest pair that works with mxnet 1.9.1 (numpy<1.24)
        "onnx": ONNX,
        "all": sorted(set(ZOO + NLP + PLOT + DEMO + EVAL + ONNX)),
        # built from source with HOROVOD_WITH_MXNET=1 (docs/guide/horovod.md)
        "horovod": ["horovod==0.28.1"],
        "docs": ["mkdocs-material", "mkdocstrings[python]"],
        "test": ["pytest", "hypothesis", "ruff", "scikit-learn", "matplotlib<3.8",
                 "pandas<2.1"],
    },
    entry_points={"console_scripts": ["gluon-finetune=gluon_finetune.cli:main"]},
)
