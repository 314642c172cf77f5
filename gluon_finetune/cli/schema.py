"""The one settings schema: every command-line flag and config key, declared once.

Each field of :class:`Settings` is a setting, declared with :func:`option`: its
default, help text, kind (the values it takes, checked the same way for a
flag's text and a config's data: ``kinds.py``), its flag and the commands
that take it, and whether a config file may give it. argparse
(``main.build_parser``) and the config loader (``config.load_config``) are
built from these declarations, and ``reference.py`` writes their documentation
(``docs/guide/cli.md``), each reading them through ``declarations.py``. What
involves more than one setting is checked in one place,
``Settings.__post_init__``.

A new flag or config key is one more field here; a new command is one more
entry in ``COMMANDS`` (and its function in ``commands.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import InvalidValueError
from ..recipes.augmentation import AUGMENTATIONS
from ..structure import GRANULARITIES
from ..trainer import BN_POLICIES
from .kinds import Checked, Choice, Flag, Int, Keys, Kind, Real, Structure, Text
from .structures import (
    check_optimizer,
    load_optimizer_params,
    load_rules,
    load_scheduler,
    load_unfreezing,
    parse_layer_rule,
    rule_key,
)

__all__ = ["Option", "Settings", "COMMANDS", "RECIPES", "MODEL", "refuse"]

TRAIN, LR_FIND, EXPLAIN, PLOT = "train", "lr-find", "explain", "plot"
KVSTORES = ("device", "horovod")  # how train's workers share gradients (one: nothing)
EVALUATE, PREDICT, EXPORT = "evaluate", "predict", "export"
MODEL = (TRAIN, LR_FIND, EXPLAIN, PLOT)  # the commands that build a model
DATA = (TRAIN, LR_FIND)                  # ... and read an image folder
RUNS = (EVALUATE, PREDICT, EXPORT)       # the commands that read a run folder
BATCHES = DATA + (EVALUATE, PREDICT)     # ... and those that go through images in batches
RECIPES = ("fine_tune",)                 # train's recipes besides the plain loop
PLAIN_LR = 0.01                          # the base rate without a recipe

# command -> (help in the command list, description in its --help)
COMMANDS: Dict[str, Tuple[str, str]] = {
    TRAIN: ("fine-tune a zoo model on an image folder",
            "Fine-tune a zoo model on an image folder: DATA/<class>/<image>, or "
            "DATA/train/... and DATA/val/..."),
    LR_FIND: ("learning-rate range test on an image folder",
              "Sweep the base learning rate geometrically over --num-iter training batches, "
              "print the suggested rate and plot loss against rate. The network is left "
              "untouched."),
    EXPLAIN: ("print the rule table for a zoo model",
              "Print which rule each parameter of a zoo model gets, at what rate."),
    PLOT: ("write each layer's learning rate over the steps to a PNG",
           "Preview each layer's learning rate over --steps updates as an image."),
    EVALUATE: ("evaluate a run on a labelled image folder",
               "Accuracy (top-5 with more than 5 classes), per-class precision, recall and "
               "F1 of a run's network on DATA/<class>/<image>; writes report.json and "
               "confusion_matrix.png under --out."),
    PREDICT: ("predict the class of images with a run's network",
              "One CSV row per image: path, class, probability, and the top-k classes with "
              "their probabilities (to --out, or printed)."),
    EXPORT: ("export a run's network for deployment (MXNet symbol, ONNX)",
             "Write DIR/model-symbol.json, DIR/model-0000.params (inference only), "
             "DIR/classes.json, DIR/preprocessing.json, and with --onnx DIR/model.onnx; load "
             "each back and print how far its outputs are from the network's."),
}


@dataclass(frozen=True)
class Option:
    """How one setting is given: its flag (``None``: config only), whether a config may
    give it, the commands that take the flag, its default (a value, or one per
    command), the default in words where it is not a plain value (``shown``)."""

    help: Union[str, Dict[str, str]]
    kind: Kind
    flag: Optional[str]
    config: bool
    commands: Tuple[str, ...]
    default: Any
    shown: Optional[str]
    metavar: Optional[str]
    action: Optional[str]  # "append", "store_true", "bool" (--x/--no-x), "positional"
    nargs: Union[None, str, Dict[str, str]] = None  # a positional's, per command if a dict
    name: str = ""

    def nargs_for(self, command: str) -> Optional[str]:
        return self.nargs.get(command) if isinstance(self.nargs, dict) else self.nargs

    def default_for(self, command: str) -> Any:
        return self.default.get(command) if isinstance(self.default, dict) else self.default

    def help_for(self, command: str) -> str:
        return self.help[command] if isinstance(self.help, dict) else self.help

    def shown_for(self, command: str) -> Optional[str]:
        """The default as the documentation shows it (None: no default)."""
        if isinstance(self.shown, dict) and command in self.shown:
            return self.shown[command]
        if isinstance(self.shown, str):
            return self.shown
        default = self.default_for(command)
        if default is None or self.action == "store_true":
            return None
        return {True: "yes", False: "no"}.get(default, f"{default:g}") \
            if isinstance(default, (bool, float)) else str(default)


def option(default: Any = None, *, help: Union[str, Dict[str, str]], kind: Kind,
           flag: Union[bool, str] = True, config: bool = True,
           commands: Tuple[str, ...] = MODEL, shown: Union[None, str, Dict[str, str]] = None,
           metavar: Optional[str] = None, action: Optional[str] = None,
           nargs: Union[None, str, Dict[str, str]] = None) -> Any:
    """A ``Settings`` field. ``flag``: True for ``--<name>``, a string for another
    spelling, False for none (a config key only)."""
    spec = dict(help=help, kind=kind, flag=flag, config=config, commands=commands,
                default=default, shown=shown, metavar=metavar, action=action, nargs=nargs)
    return field(default=None if isinstance(default, dict) else default,
                 metadata={"option": spec})


@dataclass
class Settings:
    """A command's settings: defaults < config file < flags (``main.settings_of``).

    Each field is declared by :func:`option`; building one checks what involves
    several settings (``refuse``: an error naming its setting) and fills the
    defaults that depend on others (the recipe's rate is ``fine_tune``'s).

    Examples
    --------
    >>> settings = Settings(command="train", model="resnet18_v1", data="pets",
    ...                     recipe="fine_tune")
    >>> settings.learning_rate, settings.freeze_epochs, settings.batch_size
    (0.002, 1, 32)
    """

    command: str = EXPLAIN
    # ---- the model, its rules and optimizer: every command that builds a model
    model: Optional[str] = option(help="a model-zoo name, e.g. resnet18_v1",
                                   kind=Text("a model name"))
    classes: Optional[int] = option(
        help="replace the head with this many outputs (train, lr-find: the number of class "
             "folders)", kind=Int(1))
    unfreeze: Optional[int] = option(help="train only the last N blocks", kind=Int(0),
                                     metavar="N")
    config: Optional[str] = option(help="settings and rules, YAML or JSON (flags win over it)",
                                   kind=Text("a file"), config=False, metavar="FILE")
    learning_rate: Optional[float] = option(
        help="base learning rate", kind=Real(positive=True), flag="--lr", metavar="LR",
        shown=f"{PLAIN_LR:g}; with recipe fine_tune, fine_tune's base_lr (0.002)")
    layers: Optional[List[Tuple[Any, Any]]] = option(
        help="rules: a block path, parameter name, glob, index (-1: the head) or range, with a "
             "learning-rate multiplier (0 or 'frozen' freezes); repeatable, one rule a key; "
             "a flag's rule replaces the config's for the same key",
        kind=Structure(load_rules, parse_layer_rule, "KEY=MULT (a config: a mapping)"),
        flag="--layer-lr", metavar="KEY=MULT",
        action="append")
    optimizer: str = option(
        "sgd", help="MXNet optimizer, any case (sgd and nag get momentum 0.9 unless "
        "--momentum or optimizer_params say otherwise)",
        kind=Checked("an MXNet optimizer", check_optimizer))
    optimizer_params: Optional[Dict[str, Any]] = option(
        help="more optimizer arguments, e.g. {momentum: 0.9, wd: 1e-4}: finite numbers, "
             "true/false or strings", kind=Structure(load_optimizer_params), flag=False)
    momentum: Optional[float] = option(help="momentum (replaces optimizer_params')",
                                       kind=Real(), config=False, shown="0.9 for sgd and nag")
    wd: Optional[float] = option(help="weight decay (replaces optimizer_params')", kind=Real(),
                                 config=False)
    lr_scheduler: Optional[Any] = option(
        help="the trainer's own schedule: {type: factor|multifactor|poly|cosine|"
             "slanted_triangular|one_cycle, <its arguments>}",
        kind=Structure(load_scheduler), flag=False)
    bn: str = option("frozen", help="BatchNorm in frozen blocks", kind=Choice(BN_POLICIES))
    granularity: str = option("unit", help="what a block is: a unit (residual unit) or a "
                              "stage", kind=Choice(GRANULARITIES), flag=False)
    no_weight_decay: Optional[bool] = option(
        help="no weight decay on biases and normalization layers (no_weight_decay(net) "
             "rules, merged with the others; recipe fine_tune: on unless false)",
        kind=Flag(), action="store_true")
    # ---- LoRA adapters (add_lora): every command that builds a model
    lora: Optional[int] = option(
        help="add LoRA adapters of rank RANK (add_lora): only the adapters and the last "
             "--unfreeze blocks (default 1: the head) train", kind=Int(1), metavar="RANK")
    lora_alpha: Optional[float] = option(
        help="the adapters' alpha: their update is scaled by alpha / rank",
        kind=Real(positive=True), metavar="ALPHA", shown="16")
    lora_targets: Optional[List[Any]] = option(
        help="the weights to adapt: rule keys, repeatable (default: attention's query and "
             "value weights, else every Dense and convolution weight outside the head)",
        kind=Keys(rule_key), metavar="KEY", action="repeat")
    # ---- GluonNLP models (bert_12_768_12 ...): a vocabulary, for explain and plot
    vocab: Optional[str] = option(
        help="a GluonNLP model's vocabulary, as JSON (vocab.to_json())", kind=Text("a file"),
        commands=(EXPLAIN, PLOT), metavar="FILE")
    vocab_size: Optional[int] = option(
        help="a GluonNLP model's vocabulary: N tokens, placeholders (the shapes and rates "
             "are the model's, the tokens not)", kind=Int(1), commands=(EXPLAIN, PLOT))
    # ---- the run folder, the image folder: train, lr-find, evaluate, predict, export
    run: Optional[str] = option(help="a run folder (written by train --out RUN)",
                                kind=Text("a run folder"), config=False, commands=RUNS,
                                action="positional")
    data: Optional[str] = option(
        help={TRAIN: "the image folder (with --resume: the run's own unless given)",
              LR_FIND: "the image folder",
              EVALUATE: "a folder DATA/<class>/<image> with the run's classes (all or some)"},
        kind=Text("a folder"), config=False, commands=DATA + (EVALUATE,), action="positional",
        nargs={TRAIN: "?"})
    images: Optional[List[str]] = option(
        help="image files, or folders searched for .jpg, .jpeg and .png files",
        kind=Text("an image or a folder"), config=False, commands=(PREDICT,),
        action="positional", nargs="+")
    root: Optional[str] = option(help="folder of pretrained weights", kind=Text("a folder"),
                                 commands=DATA, shown="MXNet's model store")
    pretrained: bool = option(True, help="start from the zoo's weights", kind=Flag(),
                              commands=DATA, action="bool")
    batch_size: int = option(32, help="images per batch", kind=Int(1), commands=BATCHES)
    image_size: int = option(224, help="resize images to this", kind=Int(1), commands=DATA)
    seed: int = option(0, help="random seed", kind=Int(0, 2 ** 32 - 1), config=False,
                       commands=DATA)
    no_progress: bool = option(False, help="hide progress bars", kind=Flag(), config=False,
                               commands=BATCHES, action="store_true")
    # ---- train
    epochs: int = option(5, help="epochs (with recipe fine_tune: after the head-only ones)",
                         kind=Int(1), commands=(TRAIN,))
    gradual: Optional[int] = option(
        help="gradual unfreezing: the head first, one more block every EVERY epochs",
        kind=Int(1), config=False, commands=(TRAIN,), metavar="EVERY")
    gradual_unfreezing: Optional[Dict[str, Any]] = option(
        help="gradual unfreezing: {every: EPOCHS} or {schedule: {epoch: blocks, ...}} (epoch "
             "0 included), and restart: schedule (restart the rate schedules at each thaw)",
        kind=Structure(load_unfreezing), flag=False, commands=(TRAIN,))
    recipe: Optional[str] = option(
        help="fine_tune: the head alone for freeze_epochs, then every block with "
             "discriminative one-cycle rates", kind=Choice(RECIPES), commands=(TRAIN,))
    freeze_epochs: Optional[int] = option(help="with recipe fine_tune: head-only epochs",
                                          kind=Int(0), commands=(TRAIN,), metavar="N",
                                          shown="fine_tune's (1)")
    save: Optional[str] = option(help="write the parameters here (and the trainer state to "
                                 "FILE.states)", kind=Text("a file"), config=False,
                                 commands=(TRAIN,), metavar="FILE")
    augment: str = option("none", help="training augmentation: light or standard (random "
                          "resized crop, flip, colour jitter); validation is always the "
                          "resize and centre crop", kind=Choice(AUGMENTATIONS),
                          commands=(TRAIN,))
    ema: Optional[float] = option(
        help="keep an exponential moving average of the trainable weights with this decay "
             "(e.g. 0.999), used for validation, best.params and export",
        kind=Real(positive=True), commands=(TRAIN,), metavar="DECAY")
    patience: Optional[int] = option(help="stop when validation accuracy has not improved "
                                     "for N epochs", kind=Int(1), commands=(TRAIN,),
                                     metavar="N")
    resume: Optional[str] = option(help="continue the run in RUN after its last finished "
                                   "epoch, with its own settings", kind=Text("a run folder"),
                                   config=False, commands=(TRAIN,), metavar="RUN")
    kvstore: str = option("device", help="horovod: one worker of a horovodrun job (each "
                          "trains on its shard of the images; rank 0 writes and prints)",
                          kind=Choice(KVSTORES), commands=(TRAIN,))
    # ---- evaluate, predict, export
    params: str = option("best", help="the parameters: last, best, or a .params file",
                         kind=Text("last, best or a file"), config=False, commands=RUNS,
                         metavar="PARAMS")
    top_k: Optional[int] = option(help="classes listed per image", kind=Int(1), config=False,
                                  commands=(PREDICT,), metavar="K",
                                  shown="5, or the number of classes if fewer")
    onnx: bool = option(False, help="also write DIR/model.onnx (the onnx extra)", kind=Flag(),
                        config=False, commands=(EXPORT,), action="store_true")
    # ---- lr-find
    start_lr: float = option(1e-7, help="the first rate", kind=Real(positive=True),
                             config=False, commands=(LR_FIND,), metavar="LR")
    end_lr: float = option(10.0, help="the last rate (above --start-lr)",
                           kind=Real(positive=True), config=False, commands=(LR_FIND,),
                           metavar="LR")
    num_iter: int = option(100, help="rates to try, one batch each", kind=Int(2),
                           config=False, commands=(LR_FIND,))
    # ---- plot
    steps: int = option(1000, help="how many updates to draw", kind=Int(1), config=False,
                        commands=(PLOT,))
    # ---- outputs
    out: Optional[str] = option(
        {LR_FIND: "lr_find.png", PLOT: "lr_schedule.png"},
        help={TRAIN: "the run folder: last.params, last.states, best.params, run.json after "
                     "every epoch", LR_FIND: "the image: .png, .pdf, .svg ...",
              PLOT: "the image: .png, .pdf, .svg ...",
              EVALUATE: "the folder for report.json and confusion_matrix.png",
              PREDICT: "the CSV file", EXPORT: "the folder for the exported files"},
        kind=Text("a file or folder"), config=False, commands=(TRAIN,) + (LR_FIND, PLOT) + RUNS,
        metavar="PATH", shown={EVALUATE: "RUN/eval", PREDICT: "printed"})
    # what the command line gave, to record in a run folder (main.settings_of); no setting
    given: Optional[Dict[str, Any]] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_inputs(self)
        if self.command in DATA and self.model:
            _check_image_model(self.model, self.command)
        if self.command == TRAIN:
            _check_train(self)
        for name in ("lora_alpha", "lora_targets"):
            if self.lora is None and getattr(self, name) is not None:
                raise refuse(name, f"{name} is for LoRA adapters: give --lora RANK too")
        if self.vocab is not None and self.vocab_size is not None:
            raise refuse("vocab_size", "give one of vocab (a file) and vocab_size")
        if self.command == LR_FIND and self.end_lr <= self.start_lr:
            raise refuse("end_lr", f"--end-lr ({self.end_lr:g}) must be greater than "
                          f"--start-lr ({self.start_lr:g})")
        if self.recipe is not None:
            if self.freeze_epochs is None:
                self.freeze_epochs = _fine_tune_default("freeze_epochs")
            if self.learning_rate is None:
                self.learning_rate = _fine_tune_default("base_lr")
        if self.learning_rate is None:
            self.learning_rate = PLAIN_LR


# what the fine_tune recipe decides itself (the trainable blocks, the schedules)
_NOT_WITH_RECIPE = ("unfreeze", "gradual", "gradual_unfreezing", "lr_scheduler")


def _check_inputs(settings: Settings) -> None:
    """The model, the image folder and the outputs each command needs."""
    resume = settings.command == TRAIN and settings.resume is not None
    if settings.command in MODEL and not settings.model and not resume:
        raise refuse("model", "no model: give --model NAME or 'model:' in the config")
    if settings.command in DATA + (EVALUATE,) and settings.data is None and not resume:
        raise refuse("data", "no image folder: give DATA")
    if resume and settings.out is not None:
        raise refuse("out", "give one of --out (a new run) and --resume (continue a run)")
    if settings.ema is not None and settings.ema >= 1:
        raise refuse("ema", f"ema is a decay in (0, 1), got {settings.ema:g}")
    if settings.command == EXPORT and settings.out is None:
        raise refuse("out", "export writes into a folder: give --out DIR")


def _check_image_model(name: str, command: str) -> None:
    from ..models.nlp import is_nlp_model
    if is_nlp_model(name):
        raise refuse("model", f"{name} is a GluonNLP sentence classifier and {command} reads "
                     f"image folders: fine-tune it in Python (get_model(..., vocab=))")


def _fine_tune_default(argument: str) -> Any:
    """fine_tune's own default: the recipe's settings are its arguments."""
    import inspect

    from ..recipes.fine_tuning import fine_tune
    return inspect.signature(fine_tune).parameters[argument].default


def refuse(setting: str, message: str) -> InvalidValueError:
    """An error about ``setting`` (a config key: the message names its line)."""
    err = InvalidValueError(message, argument=setting)
    err.setting = setting
    return err


def _check_train(settings: Settings) -> None:
    """What train cannot do with these settings together."""
    if settings.recipe is None:
        if settings.freeze_epochs is not None:
            raise refuse("freeze_epochs", "freeze_epochs is for recipe fine_tune: give "
                          "--recipe fine_tune (or 'recipe: fine_tune' in the config)")
        gradual = "gradual" if settings.gradual is not None else "gradual_unfreezing"
        if settings.unfreeze is not None and getattr(settings, gradual) is not None:
            raise refuse("unfreeze", f"unfreeze does not combine with {gradual}: gradual "
                          f"unfreezing decides the trainable blocks each epoch (the head "
                          f"first); to start from {settings.unfreeze} blocks give "
                          f"gradual_unfreezing: {{schedule: {{0: {settings.unfreeze}, ...}}}} "
                          f"in a config")
        return
    for key in _NOT_WITH_RECIPE:
        if getattr(settings, key) is not None:
            raise refuse(key, f"{key} does not combine with recipe fine_tune: the recipe "
                          f"trains the head, then every block, each on its own one-cycle "
                          f"schedule")
