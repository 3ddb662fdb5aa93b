"The course reads in order: every chapter imports only from the chapters before it (notebooks by name)."
import ast, json, re
from pathlib import Path
from nbsync import ROOT, chapter_notebooks

COURSE = ['00a_shape_diagrams', '01_config', '01a_checkpoints', '01b_gguf', '02_vision_transformer', '02a_siglip',
          '03_modality_projector', '04_language_model', '04a_language_model_details', '05_vision_language_model',
          '05a_vision_language_model_details', '06_data', '06a_data_details', '06b_runs', '07_training',
          '07a_train_cli', '08_end_to_end', '08a_generate', '08b_your_own_data', '09_benchmarks', '10_seeing_more',
          '10a_seeing_more_cli', '11_pretrained_decoder']


def _code_cells(nb: Path) -> list[str]:
    cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    return [''.join(c['source']) for c in cells if c['cell_type'] == 'code']


def chapters(root: Path = ROOT) -> list[tuple[str, str]]:
    "(notebook stem, module it exports) for every chapter, in filename order, from its `#| default_exp` line."
    out = []
    for nb in chapter_notebooks(root):
        exp = re.findall(r'^#\|\s*default_exp\s+(\S+)', '\n'.join(_code_cells(nb)), flags=re.M)
        assert len(exp) == 1, f'{nb.name}: expected one `#| default_exp` line, found {exp}'
        out.append((nb.stem, exp[0]))
    return out


def imported_modules(source: str, package: str = 'nanovlm') -> set[str]:
    "Modules of `package` that `source` imports (`from .x`, `from nanovlm.x`, `import nanovlm.x`)."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or '').split('.')
            if node.level == 1: found.update([parts[0]] if node.module else [a.name for a in node.names])
            elif node.level == 0 and parts[0] == package:
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split('.')[1] for a in node.names if a.name.startswith(package + '.'))
    return found


def later_imports(course: list[tuple[str, str]], imports: dict) -> list[str]:
    "Every import by a chapter's module (`imports`: module -> modules) of a module of no earlier chapter."
    rank = {mod: i for i, (_, mod) in enumerate(course)}
    return [f'{nb} ({mod}) imports nanovlm.{dep}, which {course[rank[dep]][0]} exports: not an earlier one'
            for i, (nb, mod) in enumerate(course) for dep in sorted(imports.get(mod, ()))
            if dep in rank and rank[dep] >= i]


def _notebook_source(nb: Path) -> str:
    "Every code cell of `nb`, without IPython's `%` and `!` lines, so that `ast` can read it."
    lines = [l for c in _code_cells(nb) for l in c.splitlines()]
    return '\n'.join(l for l in lines if not l.lstrip().startswith(('%', '!')))


def test_the_chapters_are_in_course_order():
    assert [nb for nb, _ in chapters()] == COURSE
    assert dict(chapters())['01a_checkpoints'] == 'checkpoints'
    assert dict(chapters())['06_data'] == 'data' and dict(chapters())['07_training'] == 'training'


def test_exported_modules_import_only_earlier_chapters():
    course = chapters()
    lib = ROOT / 'nanovlm'
    imports = {mod: imported_modules((lib / f'{mod}.py').read_text(encoding='utf-8')) for _, mod in course}
    assert later_imports(course, imports) == []
    assert imports['training'] >= {'data', 'runs'} and 'training' not in imports['data']  # the swap
    assert 'checkpoints' in imports['runs'] and 'training' not in imports['runs']  # the loop's files come first


def test_notebooks_import_only_earlier_chapters():
    "Test and demo cells too: a chapter's notebook never reaches for a later chapter's module."
    course = chapters()
    nbs = {p.stem: p for p in chapter_notebooks()}
    imports = {mod: imported_modules(_notebook_source(nbs[nb])) - {mod} for nb, mod in course}
    assert later_imports(course, imports) == []


def test_the_check_fails_on_a_violation():
    src = ("from .config import VLMConfig\nimport nanovlm.data\nfrom nanovlm.training import train\n"
           "from nanovlm import shapes\nfrom . import checkpoints\nimport torch\n"
           "s = 'from nanovlm.generate import ask'\n")
    assert imported_modules(src) == {'config', 'data', 'training', 'shapes', 'checkpoints'}
    course = [('06_data', 'data'), ('07_training', 'training')]
    assert later_imports(course, {'training': {'data'}}) == []
    assert later_imports(course, {'data': {'training'}}) == [
        '06_data (data) imports nanovlm.training, which 07_training exports: not an earlier one']
    assert later_imports(course, {'data': {'data'}}) != []  # importing itself: no earlier chapter either
    assert later_imports(course, {'data': {'torch'}}) == []  # only the package's own modules count
