"""The house rules of CONTRIBUTING.md for the committed notebooks (tests/test_style.py: for the exported library).

Each rule is a function that returns the problems it finds (empty: the rule holds), so that a test can run it
on the repository and a second test can show it catches a deliberate violation.
"""
import ast, json, re
from pathlib import Path
from nbsync import ROOT, chapter_notebooks

# ---- the committed notebooks ------------------------------------------------------------------------------

WARNING = re.compile(r'\b\w*Warning\b[:(]|^\s*warnings\.warn', re.M)
ABS_PATH = re.compile(r'(?<![\w.])(?:/(?:home|work|tmp|root|Users|private|var/folders|opt|mnt)/[\w.-]|[A-Z]:\\\\?\w)')


def _output_texts(cell: dict) -> list:
    "Every text a code cell's outputs show: streams, tracebacks, and the text/plain, text/html of results."
    out = []
    for o in cell.get('outputs', []):
        if 'text' in o: out.append(''.join(o['text']))
        if o.get('output_type') == 'error': out.append('\n'.join(o.get('traceback', [])))
        for kind in ('text/plain', 'text/html', 'text/markdown'):
            if kind in o.get('data', {}): out.append(''.join(o['data'][kind]))
    return out


def output_problems(nb: dict, name: str = '<nb>') -> list:
    "Committed outputs that show a warning, an error, or an absolute path of the machine that ran them."
    problems = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code': continue
        for text in _output_texts(c):
            if m := WARNING.search(text): problems.append(f'{name} cell {i}: a warning in the output: {m.group(0)!r}')
            if m := ABS_PATH.search(text): problems.append(f'{name} cell {i}: an absolute path in the output: '
                                                           f'{text[m.start():m.start() + 40]!r}')
        if any(o.get('output_type') == 'error' for o in c.get('outputs', [])):
            problems.append(f'{name} cell {i}: an error in the output')
    return problems


def _nb(*cells) -> dict:
    "A notebook of `cells`: ('md', source) or ('code', source, [output texts])."
    out = []
    for kind, src, *texts in cells:
        cell = {'cell_type': 'markdown' if kind == 'md' else 'code', 'source': src, 'metadata': {}}
        if kind == 'code':
            cell['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': t} for t in (texts[0] if texts else [])]
        out.append(cell)
    return {'cells': out}


def test_committed_outputs_show_no_warnings_errors_or_absolute_paths():
    problems = [p for nb in chapter_notebooks() for p in
                output_problems(json.loads(nb.read_text(encoding='utf-8')), nb.name)]
    assert problems == [], '\n'.join(problems[:40])


def test_the_output_rule_catches_violations():
    bad = _nb(('code', 'x', ['/usr/lib/python3/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found']),
              ('code', 'y', ['saved to /work/main/runs/tiny/model.safetensors\n']),
              ('code', 'z', ['UserWarning: The given NumPy array is not writable\n']),
              ('code', 'w', ['saved to runs/tiny (12.3 MB), loss 0.42\n']))
    problems = output_problems(bad)
    assert [p.split(':')[0] for p in problems] == ['<nb> cell 0', '<nb> cell 1', '<nb> cell 2'], problems
    assert 'TqdmWarning' in problems[0] and '/work/main' in problems[1]


# ---- every chapter: a title that names it, a summary, and exercises with tested solutions -----------------

SOLUTION = re.compile(r'^#\|\s*code-fold:\s*true\s*\n#\|\s*code-summary:\s*"Solution to exercise (\d+)"', re.M)


def chapter_problems(nb: dict, stem: str) -> list:
    "A chapter's title names its number, a `>` summary follows, and it ends with tested, folded solutions."
    cells, problems = nb['cells'], []
    first = ''.join(cells[0]['source']).splitlines() if cells else []
    num = re.match(r'(\d+)([a-z]?)_', stem)
    if num and int(num.group(1)) > 0:
        want = f'# Chapter {int(num.group(1))}{num.group(2)}'
        if not first or not re.match(re.escape(want) + r'\b', first[0]):
            problems.append(f'{stem}: the title should begin {want!r}, found {first[:1]}')
    if not any(l.startswith('> ') for l in first[1:]):
        problems.append(f'{stem}: no one-line `> summary` under the title')
    md = [i for i, c in enumerate(cells) if c['cell_type'] == 'markdown'
          and re.search(r'^##\s+Exercises\s*$', ''.join(c['source']), re.M)]
    if not md: return problems + [f'{stem}: no `## Exercises` section']
    sols = [(int(m.group(1)), ''.join(c['source'])) for c in cells[md[0]:] if c['cell_type'] == 'code'
            if (m := SOLUTION.match(''.join(c['source'])))]
    if len(sols) < 2: problems.append(f'{stem}: {len(sols)} folded solution cell(s) after `## Exercises`, want 2 or more')
    if [n for n, _ in sols] != list(range(1, len(sols) + 1)):
        problems.append(f'{stem}: solutions numbered {[n for n, _ in sols]}, want 1, 2, ...')
    for n, src in sols:
        if not re.search(r'\b(test_\w+|assert)\b', src.split('\n', 2)[-1]):
            problems.append(f'{stem}: the solution to exercise {n} asserts nothing (use fastcore.test)')
        if '#| export' in src: problems.append(f'{stem}: the solution to exercise {n} is exported')
    return problems


def test_every_chapter_has_a_title_a_summary_and_tested_exercises():
    problems = [p for nb in chapter_notebooks() for p in chapter_problems(json.loads(nb.read_text(encoding='utf-8')),
                                                                           nb.stem)]
    assert problems == [], '\n'.join(problems)


def test_the_chapter_rule_catches_violations():
    sol = '#| code-fold: true\n#| code-summary: "Solution to exercise {}"\n'
    good = _nb(('md', '# Chapter 3: the projector\n> Fewer, wider image tokens.'), ('md', '## Exercises'),
               ('code', sol.format(1) + 'test_eq(1, 1)'), ('code', sol.format(2) + 'assert True'))
    assert chapter_problems(good, '03_modality_projector') == []
    assert chapter_problems(good, '04_language_model')[0].startswith("04_language_model: the title should begin")
    lazy = _nb(('md', '# Chapter 3: the projector'), ('md', '## Exercises'),
               ('code', sol.format(1) + 'print(1)'))
    assert chapter_problems(lazy, '03_x') == [
        "03_x: no one-line `> summary` under the title",
        '03_x: 1 folded solution cell(s) after `## Exercises`, want 2 or more',
        '03_x: the solution to exercise 1 asserts nothing (use fastcore.test)']
    assert chapter_problems(_nb(('md', '# Chapter 1a (appendix): files\n> x')), '01a_checkpoints') == [
        '01a_checkpoints: no `## Exercises` section']


# ---- a chapter is committed with what its cells draw and print ---------------------------------------------

SHOWS = re.compile(r'^(print|display|show_doc|shape_diagram|draw_\w*|plot_\w*|show_\w*|plt\.\w+)$')


def _top_level_calls(source: str) -> list:
    "Names of the calls a cell makes outside any def, class or lambda (`plt.` kept as a prefix)."
    lines = [l for l in source.splitlines() if not l.lstrip().startswith(('%', '!'))]
    out = []
    def visit(node):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)): continue
            if isinstance(ch, ast.Call):
                f, root = ch.func, ch.func
                while isinstance(root, ast.Attribute): root = root.value
                if isinstance(f, ast.Name): out.append(f.id)
                elif isinstance(f, ast.Attribute):
                    out.append(f'plt.{f.attr}' if isinstance(root, ast.Name) and root.id == 'plt' else f.attr)
            visit(ch)
    visit(ast.parse('\n'.join(lines)))
    return out


def missing_output_problems(nb: dict, name: str = '<nb>') -> list:
    "Code cells that print or draw but were committed without outputs (a figure closed with `plt.close` is not shown)."
    problems = []
    for i, c in enumerate(nb['cells']):
        if c['cell_type'] != 'code' or c.get('outputs'): continue
        calls = _top_level_calls(''.join(c['source']))
        shown = [f for f in calls if SHOWS.match(f)]
        if shown and 'plt.close' not in calls:
            problems.append(f'{name} cell {i}: calls {shown[0]}() but has no committed output (execute the notebook)')
    return problems


def test_every_cell_that_prints_or_draws_is_committed_with_its_output():
    problems = [p for nb in chapter_notebooks() for p in
                missing_output_problems(json.loads(nb.read_text(encoding='utf-8')), nb.name)]
    assert problems == [], '\n'.join(problems[:40])


def test_the_missing_output_rule_catches_violations():
    nb = _nb(('code', 'print(1)', []), ('code', 'print(2)', ['2\n']), ('code', 'def f():\n    print(3)', []),
             ('code', 'fig, ax = plt.subplots()\nax.plot([1, 2])', []), ('code', 'fig = draw_stages(s)\nplt.close(fig)', []),
             ('code', 'for i in range(2):\n    show_tokens(i)', []), ('md', 'print(4)'))
    assert missing_output_problems(nb) == [
        '<nb> cell 0: calls print() but has no committed output (execute the notebook)',
        '<nb> cell 3: calls plt.subplots() but has no committed output (execute the notebook)',
        '<nb> cell 5: calls show_tokens() but has no committed output (execute the notebook)']
