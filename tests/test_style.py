"House style on the exported modules: classes read whole, one statement per line, at most 110 columns."
import ast, io, re, tokenize
import pytest
from nbsync import ROOT

# Every exported module (nbdev's `_modidx.py` is an index, not code a reader meets).
MODULES = sorted(p.stem for p in (ROOT / 'nanovlm').glob('*.py') if p.stem not in ('__init__', '_modidx'))
MAX_COLS = 110


def _source(mod: str) -> str: return (ROOT / 'nanovlm' / f'{mod}.py').read_text(encoding='utf-8')


def _all_lines(src: str) -> set:
    "Line numbers of nbdev's generated `__all__ = [...]` (wrapped at 120 columns by nbdev itself)."
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
            return set(range(node.lineno, node.end_lineno + 1))
    return set()


def long_lines(src: str, limit: int = MAX_COLS) -> list:
    skip = _all_lines(src)
    return [i for i, line in enumerate(src.splitlines(), 1) if len(line) > limit and i not in skip]


def semicolons(src: str) -> list:
    toks = tokenize.generate_tokens(io.StringIO(src).readline)
    return [t.start[0] for t in toks if t.type == tokenize.OP and t.string == ';']


def method_assignments(src: str) -> list:
    "Top-level `Class.name = ...` lines: a method bolted on from outside the class."
    return [i for i, line in enumerate(src.splitlines(), 1) if re.match(r'^[A-Za-z_]\w*\.[a-z_]\w* = ', line)]


@pytest.mark.parametrize('mod', MODULES)
def test_style(mod):
    src = _source(mod)
    assert long_lines(src) == [], f'{mod}.py: lines over {MAX_COLS} columns'
    assert semicolons(src) == [], f'{mod}.py: statements chained with ;'
    assert method_assignments(src) == [], f'{mod}.py: methods assigned outside their class'


def test_the_checks_catch_what_they_are_for():
    bad = "__all__ = ['" + 'x' * 130 + "']\nClass.method = _f\na = 1; b = 2\ns = 'a; b'\n" + '#' * 111 + '\n'
    assert long_lines(bad) == [5] and semicolons(bad) == [3] and method_assignments(bad) == [2]


def test_methods_are_named_after_their_class():
    from nanovlm.language_model import LanguageModel
    from nanovlm.vision_language_model import VisionLanguageModel
    for cls in (LanguageModel, VisionLanguageModel):
        for name in ('forward', 'generate', 'from_pretrained'):
            assert getattr(cls, name).__qualname__ == f'{cls.__name__}.{name}'
    assert VisionLanguageModel.save_pretrained.__qualname__ == 'VisionLanguageModel.save_pretrained'
