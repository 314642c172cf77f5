"""docs/architecture.md: its example prints what the page says, and its tables name every
import contract and every error class there is."""
import configparser
import contextlib
import io
import pathlib
import re

from gluon_finetune import errors

ROOT = pathlib.Path(__file__).parents[1]
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def test_the_pages_example_prints_what_it_shows():
    (block,) = re.findall(r"```python\n(.*?)```", PAGE, flags=re.S)
    shown = " ".join(line[2:] for line in block.splitlines() if line.startswith("# "))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "architecture.md", "exec"), {})
    assert out.getvalue().strip() == shown


def test_the_page_lists_every_import_contract():
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    ids = {s.split(":", 2)[2] for s in config.sections() if s.startswith("importlinter:contract:")}
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", PAGE, flags=re.M))
    assert listed == ids


def test_the_page_lists_every_error_class():
    listed = set(re.findall(r"^\| `([A-Za-z]+Error)` \|", PAGE, flags=re.M))
    assert listed == set(errors.__all__) - {"FinetuneError", "InputError"}
