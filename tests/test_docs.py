"""The documentation runs: every ```python block of README.md, rfc/ and docs/**/*.md.

The blocks of one page run in order in one namespace, like a notebook, starting from
the names of the root conftest's ``example_namespace`` (``net``, ``train_loader``,
``loss_fn``, ...) in a temporary folder. A block that cannot run here says why in a
marker on the line before it, which this test reads::

    <!-- skip: needs horovodrun and two processes -->

A marker without a reason is an error. Write examples so that they run; mark only
what cannot run here.
"""
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
# rfc/README.md is a page of the site too (docs/design/rfc.md includes it)
PAGES = [ROOT / "README.md", ROOT / "rfc" / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```",
                   re.M | re.S)
SKIP = re.compile(r"<!--\s*skip:(?P<why>.*?)-->\s*$")
README_LINES = 250

matplotlib.use("Agg")


def python_blocks(page: Path):
    """(line number, code, skip reason or None) of each ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        if match.group("info").strip().split(" ")[0] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = [b for b in text[:match.start()].splitlines() if b.strip()][-1:]
        skip = SKIP.search(before[0]) if before else None
        code = "\n".join(row[len(match.group("indent")):]
                         for row in match.group("code").splitlines())
        yield line, code, (skip.group("why").strip() if skip else None)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


PAGES_WITH_CODE = [p for p in PAGES if any(True for _ in python_blocks(p))]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_every_python_block_runs(page, examples, capsys):
    namespace = dict(examples)
    for line, code, skip in python_blocks(page):
        if skip is not None:
            assert skip, f"{page_id(page)}:{line}: a skip marker must say why"
            continue
        try:
            exec(compile(code, f"{page_id(page)}:{line}", "exec"), namespace)
        except Exception as err:  # name the page and the line of the block
            raise AssertionError(f"{page_id(page)}, the block at line {line} failed: "
                                 f"{type(err).__name__}: {err}") from err


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINES, f"README.md has {lines} lines (at most {README_LINES})"


def test_the_skip_marker_is_read():
    page = ROOT / "docs" / "contributing.md"
    skipped = [why for _, _, why in python_blocks(page) if why]
    assert skipped and all(skipped), "contributing.md shows the marker in use"
