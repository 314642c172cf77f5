"""A run folder: the checkpoint files and ``run.json``, written so that a kill never breaks it.

``RUN/run.json`` (the run record) is the commit point of every epoch. The
epoch's files are first written under staged names tagged with the epoch
(``.epoch-3.last.params``), then ``run.json`` is replaced atomically, then the
staged files are renamed over the old ones. A run killed anywhere is repaired
when it is opened (:meth:`RunFolder.recover`): staged files of the epoch the
record holds are moved into place (it was committed), those of a later epoch
are deleted (it was not), so the files always belong to the record's last
epoch. Each rename and the record's replacement are atomic (``os.replace``).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Callable, Dict, List, Optional

from ..checks import InvalidTypeError, InvalidValueError, MissingFileError

__all__ = ["RunFolder", "RECORD", "FORMAT", "write_json"]

RECORD = "run.json"
FORMAT = "gluon-finetune run"
VERSION = 1
PARAMS = ("last", "best")
_STAGED = re.compile(r"^\.epoch-(\d+)\.(.+)$")
_TEMPORARY = (".json-", ".states-")  # write_json's and save_states' temporary files


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as JSON atomically: a temporary file in the same folder, then
    ``os.replace`` (a reader sees the old file or the new one, never half of one)."""
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".json-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _not_a_run(path: str, why: str) -> InvalidValueError:
    return InvalidValueError(f"{path!r} is not a run folder ({why}); give a folder written by "
                             f"'gluon-finetune train DATA --out RUN'", argument="run")


class RunFolder:
    """The files of one run: ``last.params``, ``last.states``, ``best.params``, ``run.json``
    (and ``ema.params``, ``start.params``).

    Use :meth:`create` for a new run and :meth:`open` for an existing one;
    ``train_run`` writes one, ``evaluate_run``, ``predict`` and ``export_run``
    read it. ``run.json`` is the commit point of every epoch: :meth:`commit`
    writes the epoch's files under staged names, then the record (atomically),
    then renames the files into place, so a run killed at any moment is
    repaired by ``open(path, repair=True)`` to its record's last epoch.

    Parameters
    ----------
    path : str
        The run's folder.
    record : dict
        The run record (``run.json``'s content: plain JSON data).

    Raises
    ------
    InvalidTypeError
        :meth:`create` and :meth:`open`: if ``path`` is not a folder name.
    MissingFileError
        :meth:`open`: if the folder does not exist.
    InvalidValueError
        :meth:`create`: if ``path`` is a file or already holds a run.
        :meth:`open`: if it has no readable ``run.json`` of a run, or one of
        another record version. (The constructor itself checks nothing.)

    Examples
    --------
    >>> run = RunFolder.create("run", {"classes": ["cat", "dog"]},
    ...                        {"start.params": net.save_parameters})
    >>> sorted(os.listdir("run"))
    ['run.json', 'start.params']
    >>> run.history.append({"epoch": 0, "val_acc": 0.5})
    >>> run.commit(0, {"last.params": net.save_parameters})
    >>> again = RunFolder.open("run")
    >>> again.classes, again.history, again.params_file("last")
    (['cat', 'dog'], [{'epoch': 0, 'val_acc': 0.5}], 'run/last.params')
    >>> again.params_file("best")
    Traceback (most recent call last):
    gluon_finetune.errors.MissingFileError: parameters file 'run/best.params' does not exist
    """

    def __init__(self, path: str, record: Dict[str, Any]):
        self.path, self.record = os.fspath(path), record

    @classmethod
    def create(cls, path: str, record: Dict[str, Any],
               writers: Optional[Dict[str, Callable[[str], None]]] = None) -> RunFolder:
        """A new run in ``path`` (made if needed; a folder that holds a run is refused).
        ``writers`` (file name -> function writing it to the path given) write the run's
        first files, each atomically, before the record."""
        path = cls.check_new(path)
        os.makedirs(path, exist_ok=True)
        folder = cls(path, {"format": FORMAT, "version": VERSION, **record})
        for name, write in (writers or {}).items():
            write(folder.staged(0, name))
            os.replace(folder.staged(0, name), folder.file(name))
        write_json(folder.file(RECORD), folder.record)
        return folder

    @staticmethod
    def check_new(path: str) -> str:
        """``path`` as a str if a new run can go there (checked before any work)."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidTypeError(f"out must be a folder name, got {path!r}", argument="out")
        path = os.fspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise InvalidValueError(f"--out {path!r} is a file; give a folder for the run",
                                    argument="out")
        if os.path.exists(os.path.join(path, RECORD)):
            raise InvalidValueError(f"{path!r} already holds a run: continue it with "
                                    f"'train --resume {path}', or give another --out",
                                    argument="out")
        return path

    @classmethod
    def open(cls, path: str, repair: bool = False) -> RunFolder:
        """An existing run, checked; with ``repair`` (to continue it: nothing else may be
        writing it) also repaired (:meth:`recover`). Without, nothing is changed, so a
        run can be read (evaluated, exported) while it trains."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidTypeError(f"run must be a folder name, got {path!r}", argument="run")
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise MissingFileError(f"run folder {path!r} does not exist", argument="run")
        record_file = os.path.join(path, RECORD)
        if not os.path.isfile(record_file):
            raise _not_a_run(path, f"it has no {RECORD}")
        try:
            with open(record_file, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _not_a_run(path, f"its {RECORD} cannot be read: {err}") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise _not_a_run(path, f"its {RECORD} is not a run record")
        if record.get("version") != VERSION:
            raise InvalidValueError(f"{path!r} was written by a run record version "
                                    f"{record.get('version')!r}; this gluon-finetune reads "
                                    f"version {VERSION}", argument="run")
        folder = cls(path, record)
        if repair:
            folder.recover()
        return folder

    @property
    def history(self) -> List[Dict[str, Any]]:
        """The record's finished epochs, one dict each (``"epoch"``, losses, accuracies)."""
        return self.record.setdefault("history", [])

    @property
    def classes(self) -> List[str]:
        """The run's class names, in the network's output order (a copy)."""
        return list(self.record["classes"])

    def file(self, name: str) -> str:
        """The path of ``name`` in the run folder (whether it exists or not).

        Parameters
        ----------
        name : str
            A file name, such as ``"last.params"``.
        """
        return os.path.join(self.path, name)

    def params_file(self, params: str = "best") -> str:
        """The parameters file ``params`` names; it must exist.

        Parameters
        ----------
        params : str
            ``"last"``, ``"best"`` (this run's files; the staged file of the last
            committed epoch if it is not yet moved into place) or the path of a
            ``.params`` file.

        Raises
        ------
        InvalidTypeError
            If ``params`` is not a str or path.
        MissingFileError
            If the file does not exist (no epoch has finished, for ``"last"``
            and ``"best"`` of a new run).
        """
        if not isinstance(params, (str, os.PathLike)):
            raise InvalidTypeError(f"params must be 'last', 'best' or a file, got {params!r}",
                                   argument="params")
        path = self.file(f"{params}.params") if params in PARAMS else os.fspath(params)
        if params in PARAMS and self.history:  # committed, maybe not yet moved into place
            staged = self.staged(self.history[-1]["epoch"], f"{params}.params")
            path = staged if os.path.isfile(staged) else path
        if not os.path.isfile(path):
            why = " (no epoch has finished yet)" if params in PARAMS and not self.history else ""
            raise MissingFileError(f"parameters file {path!r} does not exist{why}",
                                   argument="params")
        return path

    # ------------------------------------------------------------ committing an epoch

    def staged(self, epoch: int, name: str) -> str:
        """Where epoch ``epoch`` writes file ``name`` before it is committed.

        Parameters
        ----------
        epoch : int
            The epoch (0-based).
        name : str
            The file's final name, such as ``"last.params"``.
        """
        return self.file(f".epoch-{epoch}.{name}")

    def commit(self, epoch: int, writers: Dict[str, Callable[[str], None]]) -> None:
        """Write epoch ``epoch``'s files (``writers``: file name -> function writing it to
        the path given; files already at :meth:`staged` paths go too), then the record,
        then move the files into place.

        Parameters
        ----------
        epoch : int
            The epoch being committed (the record's ``history`` should end with it).
        writers : dict of str to callable
            File name -> function that writes the file to the path it is given.
        """
        for name, write in writers.items():
            write(self.staged(epoch, name))
        write_json(self.file(RECORD), self.record)
        self._finish(epoch)

    def _finish(self, epoch: int) -> None:
        for entry in sorted(os.listdir(self.path)):
            staged = _STAGED.match(entry)
            if staged and int(staged.group(1)) == epoch:
                os.replace(self.file(entry), self.file(staged.group(2)))

    def recover(self) -> None:
        """Finish the last committed epoch's renames; drop what a later epoch left."""
        last = self.history[-1]["epoch"] if self.history else None
        if last is not None:
            self._finish(last)
        for entry in os.listdir(self.path):
            staged = _STAGED.match(entry)
            if (staged and int(staged.group(1)) != last) or entry.startswith(_TEMPORARY):
                os.remove(self.file(entry))

    def save_record(self) -> None:
        """Write ``record`` to ``run.json`` now, atomically (no epoch's files move)."""
        write_json(self.file(RECORD), self.record)
