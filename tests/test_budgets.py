"""Budgets that keep the lesson readable (issue 23): a core chapter a reader finishes in one sitting, cells and
functions that fit on a screen, a training loop as short as the one it re-teaches.

Each rule is a function that returns the offenders it finds (empty: the budget holds), so that a test runs it on
the repository and a second test shows it catching a deliberate violation.
"""
import ast, json, re
from pathlib import Path
from nbsync import ROOT, chapter_notebooks

WORDS_PER_CORE_CHAPTER = 2_500  # about one sitting
LINES_PER_CODE_CELL = 60
LINES_PER_FUNCTION = 40
LINES_IN_TRAINING_LOOP = 400  # nanoVLM v0.1's train.py is 337
NOT_CORE = {'09_benchmarks'}  # measurements, read when needed; appendices (NNa_*) are not core either


def is_core(stem: str) -> bool:
    "A core chapter: `NN_name` with NN >= 1, not an appendix (`NNa_name`) and not the benchmarks chapter."
    m = re.match(r'(\d+)_', stem)
    return bool(m) and int(m.group(1)) >= 1 and stem not in NOT_CORE


def prose_words(nb: dict) -> int:
    "Words of prose: whitespace-separated words of the markdown cells."
    return sum(len(''.join(c['source']).split()) for c in nb['cells'] if c['cell_type'] == 'markdown')


def word_problems(nb: dict, stem: str) -> list:
    if not is_core(stem): return []
    n = prose_words(nb)
    return [f'{stem}: {n:,} words of prose, over the budget of {WORDS_PER_CORE_CHAPTER:,} for a core chapter '
            '(move production detail to its appendix)'] if n > WORDS_PER_CORE_CHAPTER else []


def cell_problems(nb: dict, stem: str) -> list:
    "Code cells longer than the budget, named by their index and first line."
    out = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        lines = ''.join(c['source']).splitlines()
        if len(lines) > LINES_PER_CODE_CELL:
            first = next((l for l in lines if not l.startswith('#|')), '')[:60]
            out.append(f'{stem} cell {i} ({first!r}): {len(lines)} lines, over {LINES_PER_CODE_CELL}')
    return out


def function_problems(source: str, name: str) -> list:
    "Functions and methods (decorators excluded, docstring included) longer than the budget, by qualified name."
    out = []
    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = child.end_lineno - child.lineno + 1
                if n > LINES_PER_FUNCTION:
                    out.append(f'{name}: {prefix}{child.name} is {n} lines (line {child.lineno}), over {LINES_PER_FUNCTION}')
                visit(child, f'{prefix}{child.name}.')
            elif isinstance(child, ast.ClassDef): visit(child, f'{prefix}{child.name}.')
            else: visit(child, prefix)
    visit(ast.parse(source), '')
    return out


def _modules() -> list:
    return sorted(p for p in (ROOT / 'nanovlm').glob('*.py') if p.name != '_modidx.py')


def _notebooks() -> list:
    return [(p.stem, json.loads(p.read_text(encoding='utf-8'))) for p in chapter_notebooks()]


def test_core_chapters_fit_one_sitting():
    problems = [p for stem, nb in _notebooks() for p in word_problems(nb, stem)]
    assert problems == [], '\n'.join(problems)


def test_no_code_cell_is_longer_than_a_screen():
    problems = [p for stem, nb in _notebooks() for p in cell_problems(nb, stem)]
    index = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))
    assert problems + cell_problems(index, 'index') == [], '\n'.join(problems)


def test_no_exported_function_is_longer_than_a_screen():
    problems = [p for m in _modules() for p in function_problems(m.read_text(encoding='utf-8'), m.name)]
    assert problems == [], '\n'.join(problems)


def test_the_training_loop_module_is_short():
    n = len((ROOT / 'nanovlm' / 'training.py').read_text(encoding='utf-8').splitlines())
    assert n <= LINES_IN_TRAINING_LOOP, f'nanovlm/training.py is {n} lines, over {LINES_IN_TRAINING_LOOP}'


def test_the_budgets_catch_violations():
    md = lambda s: {'cell_type': 'markdown', 'source': s, 'metadata': {}}
    code = lambda s: {'cell_type': 'code', 'source': s, 'metadata': {}, 'outputs': []}
    long_prose = {'cells': [md('word ' * 2_000), md('more ' * 501)]}
    assert word_problems(long_prose, '04_language_model') == [
        '04_language_model: 2,501 words of prose, over the budget of 2,500 for a core chapter '
        '(move production detail to its appendix)']
    assert word_problems(long_prose, '07a_runs') == [] and word_problems(long_prose, '09_benchmarks') == []
    assert word_problems({'cells': [md('word ' * 2_500)]}, '04_language_model') == []
    cells = {'cells': [code('#| export\n' + 'x = 1\n' * 59), code('#| export\nclass Big:\n' + '  y = 2\n' * 59)]}
    assert cell_problems(cells, '05_vlm') == ["05_vlm cell 1 ('class Big:'): 61 lines, over 60"]
    src = ('class A:\n    def short(self):\n        return 1\n    def long(self):\n' + '        x = 1\n' * 40
           + 'def f():\n    def inner():\n' + '        y = 2\n' * 40 + '    return inner\n')
    assert function_problems(src, 'm.py') == ['m.py: A.long is 41 lines (line 4), over 40',
                                              'm.py: f is 43 lines (line 45), over 40',
                                              'm.py: f.inner is 41 lines (line 46), over 40']
    assert is_core('10_seeing_more') and not is_core('00a_shape_diagrams') and not is_core('07a_runs')
