"""GluonNLP (0.10) BERT and RoBERTa sentence classifiers for ``get_model``.

``get_model("bert_12_768_12", classes=2, vocab=vocab)`` builds GluonNLP's
encoder (with its pooler, without the pre-training heads) inside
``BERTClassifier`` (``RoBERTaClassifier`` for RoBERTa), so that the block
list is the embeddings, one block per transformer layer, the pooler and the
classifier. GluonNLP is optional: it is imported only here, and only when
such a name is asked for.
"""
from __future__ import annotations

import os
from typing import Optional

import mxnet as mx

from .._compat import model_hashes
from ..checks import require
from ..errors import InvalidValueError, MissingFileError

__all__ = ["NLP_MODELS", "is_nlp_model", "get_nlp_model"]

# name -> family; the encoder sizes are GluonNLP's (override with num_layers=, units= ...)
NLP_MODELS = {"bert_12_768_12": "bert", "bert_24_1024_16": "bert",
              "roberta_12_768_12": "roberta", "roberta_24_1024_16": "roberta"}


def is_nlp_model(name) -> bool:
    """Whether ``name`` is one of GluonNLP's encoders that ``get_model`` builds."""
    return isinstance(name, str) and name.lower() in NLP_MODELS


def _gluonnlp():
    return require("gluonnlp", needed_for="the BERT and RoBERTa models of get_model")


def _encoder(name: str, vocab, dataset_name, hparams):
    nlp = _gluonnlp()
    if vocab is None and dataset_name is None:
        raise InvalidValueError(f"{name} needs its vocabulary: pass vocab= (a "
                                "gluonnlp.vocab.BERTVocab) or dataset_name= (e.g. "
                                "'book_corpus_wiki_en_uncased')")
    extra = {"use_pooler": True, "use_classifier": False} if NLP_MODELS[name] == "bert" else {}
    encoder, _ = nlp.model.get_model(name, dataset_name=dataset_name, vocab=vocab,
                                     pretrained=False, use_decoder=False,
                                     hparam_allow_override=True, **extra, **hparams)
    return encoder


def _weights_file(name: str, dataset_name: Optional[str], root: str) -> str:
    """GluonNLP's own file (checksum verified) or a ``<name>.params`` saved in ``root``;
    the zoo's downloader only for a known dataset; else a clear error."""
    from mxnet.gluon.model_zoo import model_store  # GluonNLP registers its files there
    root = os.path.expanduser(root)
    key = f"{name}_{dataset_name}" if dataset_name else None
    official = None
    if key in model_hashes(model_store):
        official = os.path.join(root, f"{key}-{model_store.short_hash(key)}.params")
        if os.path.exists(official) and model_store.check_sha1(official,
                                                               model_hashes(model_store)[key]):
            return official
    local = os.path.join(root, f"{name}.params")
    if os.path.exists(local):
        return local
    why = "no dataset_name= names GluonNLP's file"
    if official is not None:
        try:
            return model_store.get_model_file(key, root=root)
        except Exception as err:  # offline: the downloader cannot reach its server
            why = f"could not be downloaded ({type(err).__name__})"
    looked = f"{official} and {local}" if official else local
    raise MissingFileError(
        f"pretrained weights for {name!r} (GluonNLP) are not on this machine and {why}. "
        f"Looked for {looked}. Save the encoder's weights there (net.bert.save_parameters), "
        f"or pass pretrained='path/to/file.params'.")


def build_nlp_classifier(name: str, classes: int, pretrained, root: Optional[str], ctx,
                         vocab=None, dataset_name: Optional[str] = None,
                         classifier_dropout: float = 0.1, **hparams):
    """The GluonNLP classifier for ``name``, initialised or with the encoder's weights."""
    from ..checks import check_real
    classifier_dropout = check_real("classifier_dropout", classifier_dropout, minimum=0)
    nlp = _gluonnlp()
    encoder = _encoder(name, vocab, dataset_name, hparams)
    wrap = nlp.model.BERTClassifier if NLP_MODELS[name] == "bert" else \
        nlp.model.RoBERTaClassifier
    net = wrap(encoder, num_classes=classes, dropout=classifier_dropout)
    if pretrained is False:
        net.initialize(mx.init.Normal(0.02), ctx=ctx)
        return net
    path = pretrained if not isinstance(pretrained, bool) else \
        _weights_file(name, dataset_name, root or os.path.join(mx.base.data_dir(), "models"))
    if not os.path.exists(path):
        raise MissingFileError(f"pretrained weights file {path!r} does not exist")
    # GluonNLP's files also hold the pre-training heads, which a classifier has not
    encoder.load_parameters(str(path), ctx=ctx, ignore_extra=True)
    net.classifier.initialize(mx.init.Normal(0.02), ctx=ctx)
    return net


def get_nlp_model(name: str, classes: Optional[int], unfreeze=None, pretrained=False,
                  root: Optional[str] = None, ctx=None, granularity: str = "unit",
                  bn: str = "frozen", blocks=None, **kwargs):
    """``get_model`` for GluonNLP names (``zoo.get_model`` dispatches here).

    ``kwargs``: ``vocab`` (a ``BERTVocab``) or ``dataset_name``,
    ``classifier_dropout`` (default 0.1) and GluonNLP's encoder settings
    (``num_layers``, ``units``, ``hidden_size``, ``num_heads``, ``max_length``,
    ``embed_size``, ``dropout`` ...), which override the named size.
    ``pretrained=True`` loads the encoder from ``root``: GluonNLP's file
    ``<name>_<dataset_name>-<hash>.params`` or your ``<name>.params``.
    """
    from ..structure.listing import block_names
    from ..trainer.freezing import prepare_for_finetuning
    if classes is None:
        raise InvalidValueError(f"{name} is an encoder without a head: pass classes= (the number "
                                "of classes of its new classifier)")
    name = name.lower()
    net = build_nlp_classifier(name, classes, pretrained, root, ctx or mx.cpu(), **kwargs)
    block_names(net, granularity, blocks)  # a bad block list fails before anything is frozen
    return prepare_for_finetuning(net, unfreeze, granularity, bn, blocks)
