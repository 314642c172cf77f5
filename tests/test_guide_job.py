"""docs/guide/job.md: its Python examples run as they are, in order (the first makes the
image folder the others use), in a folder of their own."""
import pathlib
import re

PAGE = pathlib.Path(__file__).parents[1] / "docs" / "guide" / "job.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_pages_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope = {}
    for index, block in enumerate(BLOCKS):
        exec(compile(block, f"{PAGE.name}[{index}]", "exec"), scope)
    assert len(BLOCKS) == 2 and (tmp_path / "deploy-python" / "model.onnx").exists()
    best, accuracy, label, difference = capsys.readouterr().out.split()
    assert best == "0" and 0 <= float(accuracy) <= 1 and float(difference) <= 1e-4
