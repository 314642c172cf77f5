"""docs/guide/rules-edges.md: its Python examples run as they are."""
import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).parents[1] / "docs" / "guide" / "rules-edges.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_the_pages_examples_run(index):
    exec(compile(BLOCKS[index], f"{PAGE.name}[{index}]", "exec"), {})
