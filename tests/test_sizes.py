"""Sizes that keep the code readable: every module at most 400 lines, every function at
most 40 lines of code, LayerwiseTrainer under 300 lines.

A function's lines of code leave out its docstring, blank lines and lines
that hold only a comment; its decorators count. A class's size is the lines
it spans, docstrings included.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gluon_finetune"
MODULE_LINES = 400
FUNCTION_LINES = 40
TRAINER_LINES = 300  # LayerwiseTrainer: strictly fewer


def code_lines(lines, func) -> int:
    """Lines of code of ``func`` (an ast function node) in the source ``lines``."""
    body = func.body
    doc = range(0)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = range(body[0].lineno, body[0].end_lineno + 1)
    start = min([func.lineno] + [d.lineno for d in func.decorator_list])
    return sum(1 for n in range(start, func.end_lineno + 1)
               if n not in doc and lines[n - 1].strip()
               and not lines[n - 1].strip().startswith("#"))


def sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        yield path.relative_to(PACKAGE).as_posix(), text.splitlines(), ast.parse(text)


def test_every_module_has_at_most_400_lines():
    long = {module: len(lines) for module, lines, _ in sources() if len(lines) > MODULE_LINES}
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_every_function_has_at_most_40_lines_of_code():
    long = [f"{module}:{node.lineno} {node.name}: {code_lines(lines, node)}"
            for module, lines, tree in sources() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and code_lines(lines, node) > FUNCTION_LINES]
    assert not long, f"functions over {FUNCTION_LINES} lines of code:\n" + "\n".join(long)


def test_layerwise_trainer_is_under_300_lines():
    found = [node.end_lineno - node.lineno + 1 for module, _, tree in sources()
             if module.startswith("trainer/") for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and node.name == "LayerwiseTrainer"]
    assert len(found) == 1 and found[0] < TRAINER_LINES, found


def test_code_lines_leave_out_the_docstring_comments_and_blank_lines():
    source = ('@decorator\ndef f(x):\n    """Doc.\n\n    More doc.\n    """\n'
              '    # a comment\n\n    y = x + 1\n    return y\n')
    func = ast.parse(source).body[0]
    assert code_lines(source.splitlines(), func) == 4  # decorator, def, two statements
