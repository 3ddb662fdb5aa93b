"""The course site: sidebar and Colab links derive from the notebooks; the browser check fails when it should.

Tests marked `browser` open pages in headless Chromium (Playwright driving the system's chromium); they are
skipped, with the reason, where either is missing. `.ci/run` installs Debian's chromium so that CI runs them.
"""
import configparser, json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
import yaml
from PIL import Image
from nbsync import ROOT, scratch_copy, chapter_notebooks, clean_drift, export_drift
from docsite import PARTS, part_of, render_sidebar, sidebar_drift, site_pages, badge_problems, insert_badges
from site_check import find_chromium, link_problems, check_site

NO_QUARTO = ('Quarto is not installed (the quarto-cli package on PyPI downloads it from GitHub at install '
             'time)')
ARTIFACTS = ROOT / '_artifacts' / 'site'


@pytest.fixture
def chromium():
    "The browser the checker drives; skips the test where Playwright or Chromium is missing."
    try: import playwright.sync_api  # noqa: F401
    except ImportError: pytest.skip('playwright is not installed: .venv/bin/pip install -e ".[dev]"')
    path = find_chromium()
    if not path: pytest.skip('no Chromium: apt-get install chromium (Debian), or set NANOVLM_CHROMIUM')
    return path


# ---- the sidebar and the site configuration ---------------------------------------------------------------

def _sidebar_entries(yml: str) -> list:
    "(section or None, text, href) of every page the sidebar lists, in order."
    out = []
    for item in yaml.safe_load(yml)['website']['sidebar']['contents']:
        if 'section' in item: out += [(item['section'], c['text'], c['href']) for c in item['contents']]
        else: out.append((None, item['text'], item['href']))
    return out


def test_sidebar_is_generated_from_the_notebooks():
    assert sidebar_drift() == [], 'run `python tests/docsite.py sidebar` and commit nbs/sidebar.yml'


def test_sidebar_lists_every_chapter_in_filename_order():
    entries = _sidebar_entries((ROOT / 'nbs' / 'sidebar.yml').read_text())
    assert [href for _, _, href in entries] == ['index.ipynb'] + [p.name for p in chapter_notebooks()]
    assert [text for _, text, _ in entries] == [title for title, _ in site_pages()]
    sections = [s for s, _, _ in entries[1:]]
    assert sections == sorted(sections, key=[p for p, _ in PARTS].index), 'parts in the order of PARTS'


def test_parts_follow_chapter_numbers():
    "The grouping survives the renumbering: it reads numbers, not names."
    names = ['00a_shape_diagrams', '01_config', '01a_checkpoints', '05_vision_language_model', '06_data',
             '07_training', '08_end_to_end', '09_benchmarks', '10_serving', 'appendix_ddp']
    parts = ['The model'] * 4 + ['Training'] * 3 + ['Going further'] * 3
    assert [part_of(f'{n}.ipynb') for n in names] == parts


def _rendered(nb_path: Path):
    "The notebook as nbdev_docs hands it to Quarto, as far as titles go: its frontmatter processor applied."
    from execnb.nbio import read_nb
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    nb = read_nb(nb_path)
    NBProcessor(nb_path, [FrontmatterProc], nb=nb).process()
    return nb


def test_pages_and_titles_are_the_ones_nbdev_renders():
    "What the checker expects in the sidebar is what nbdev tells Quarto: each page's title and output file."
    nbs = [ROOT / 'nbs' / 'index.ipynb'] + chapter_notebooks()
    fm = [_rendered(p).frontmatter_ for p in nbs]
    assert [(f['title'], f['output-file']) for f in fm] == site_pages()
    assert all(f.get('description') for f in fm), 'every page has a one-line `>` summary under its title'


def test_sidebar_follows_a_renamed_chapter(tmp_path):
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    nb = chapter_notebooks(repo)[-1]
    nb.rename(nb.with_name('10_serving.ipynb'))
    assert sidebar_drift(repo) == ['nbs/sidebar.yml']
    assert _sidebar_entries(render_sidebar(repo))[-1][::2] == ('Going further', '10_serving.ipynb')


def test_site_config():
    "nbdev_docs keeps our sidebar, and the site loads nothing from other hosts (fonts, MathJax, favicons)."
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    assert cfg['DEFAULT'].getboolean('custom_sidebar'), 'else nbdev_docs overwrites sidebar.yml'
    assert any(r.startswith('playwright') for r in cfg['DEFAULT']['dev_requirements'].split())
    q = yaml.safe_load((ROOT / 'nbs' / '_quarto.yml').read_text())
    html = q['format']['html']
    assert html['theme'] == 'default', 'Bootswatch themes (nbdev\'s cosmo too) import Google Fonts'
    assert html['html-math-method'] == 'mathml', 'MathJax and KaTeX come from a CDN'
    assert '<link rel="icon" href="data:,">' in html['include-in-header'][0]['text']
    assert q['website']['navbar']['search'] is True
    assert q['metadata-files'] == ['nbdev.yml', 'sidebar.yml']
    assert (ROOT / 'nbs' / html['css']).is_file()


# ---- Colab links -------------------------------------------------------------------------------------------

def test_colab_links_are_inserted_once_and_survive_nbdev(tmp_path):
    "`python tests/docsite.py badges` on a copy: every chapter gets its link, a second run changes nothing."
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    titles = [(p.name, json.loads(p.read_text())['cells'][0]) for p in chapter_notebooks(repo)]
    insert_badges(repo)
    assert badge_problems(repo) == []
    assert insert_badges(repo) == []
    assert [(p.name, json.loads(p.read_text())['cells'][0]) for p in chapter_notebooks(repo)] == titles
    assert clean_drift(repo) == [] and export_drift(repo) == []
    nb = chapter_notebooks(repo)[0]
    shown = [c.source for c in _rendered(nb).cells if c.cell_type == 'markdown' and c.source]
    assert any('colab.research.google.com' in src for src in shown), 'the link must survive nbdev_docs'
    nb_json = json.loads(nb.read_text())
    colab = 'https://colab.research.google.com/github'
    link = f'[Open in Colab]({colab}/nanovlm/nanovlm/blob/main/nbs/{nb.name})'
    assert nb_json['cells'][1]['source'] == [link]
    old = f'[Open in Colab]({colab}/old/place.ipynb)'
    nb_json['cells'][1]['source'] = [old]
    nb.write_text(json.dumps(nb_json))
    assert badge_problems(repo) == [f'{nb.name}: Colab link cell is {old!r}, expected {link!r}']
    assert insert_badges(repo) == [nb.name] and badge_problems(repo) == []


def test_every_chapter_has_a_colab_link():
    "Under its title, in a cell of its own; after adding a chapter, `python tests/docsite.py badges` adds it."
    assert badge_problems() == [], 'run `python tests/docsite.py badges` and commit the notebooks'


# ---- the checker, on a small site written here ------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,"></head>
<body>
<nav id="quarto-sidebar"><ul>{sidebar}</ul></nav>
<main><h1>{title}</h1>{body}</main>
</body></html>
"""
_ENTRY = '<li class="sidebar-item"><a href="./{page}" class="sidebar-item-text sidebar-link">' \
         '<span class="menu-text">{title}</span></a></li>'
PAGES = [('Tiny course', 'index.html'), ('Chapter 1: `patches`', 'patches.html'),
         ('Chapter 2: tokens', 'tokens.html')]
BODIES = {
    'index.html': '<p><img src="figs/cover.png" alt="cover"> <a href="patches.html#grid">The grid</a>.</p>',
    'patches.html': '<h2 id="grid">The grid</h2><p><img src="figs/grid.png" alt="grid"></p>'
                    '<p>Next: <a href="tokens.html#count">counting</a>, <a href="#grid">back up</a>.</p>',
    'tokens.html': '<h2 id="count">Counting</h2><p><img src="figs/count.png" alt="count"></p>'
                   '<p><a href="./">Home</a>, <a href="patches.html">the previous chapter</a>.</p>',
}


def _write_site(root: Path, bodies: dict = BODIES, sidebars: dict = {}) -> Path:
    "A three-page site shaped like Quarto's (its sidebar markup), pictures as files."
    (root / 'figs').mkdir(parents=True)
    for i, name in enumerate(['cover', 'grid', 'count']):
        Image.new('RGB', (40 + 10 * i, 30), (200, 60 * i, 90)).save(root / 'figs' / f'{name}.png')
    for title, page in PAGES:
        entries = sidebars.get(page, PAGES)
        sidebar = ''.join(_ENTRY.format(page=p, title=t) for t, p in entries)
        (root / page).write_text(_PAGE.format(title=title, sidebar=sidebar, body=bodies[page]))
    return root


def test_link_check_without_a_browser(tmp_path):
    assert link_problems(_write_site(tmp_path / 'good')) == []
    index = BODIES['index.html'].replace('#grid', '#grids').replace('figs/cover.png', 'figs/covers.png')
    bad = _write_site(tmp_path / 'bad', {**BODIES, 'index.html': index + '<a href="nowhere/">x</a>'})
    assert link_problems(bad) == [
        "index.html: broken link 'figs/covers.png' (img src): no such file",
        "index.html: broken link 'patches.html#grids' (a href): no id 'grids' in patches.html",
        "index.html: broken link 'nowhere/' (a href): no such file"]


@pytest.mark.browser
def test_checker_passes_a_good_site(tmp_path, chromium):
    site = _write_site(tmp_path / 'site')
    assert check_site(site, PAGES, tmp_path / 'shots', chromium) == []
    shots = sorted(p.name for p in (tmp_path / 'shots').iterdir())
    assert shots == ['00-index.png', '01-patches.png']
    assert all(Image.open(tmp_path / 'shots' / s).size[0] == 1280 for s in shots)


@pytest.mark.browser
def test_checker_reports_each_defect(tmp_path, chromium):
    "One site with six deliberate defects of the kinds the checker looks for: each is reported, nothing else."
    patches = (BODIES['patches.html'].replace('figs/grid.png', 'figs/missing.png')      # a missing picture
               .replace('tokens.html#count', 'tokens.html#conclusion'))                # a missing anchor
    tokens = (BODIES['tokens.html'].replace('patches.html', 'patchs.html')              # a broken link
              + '<script>console.error("deliberate console error")</script>')          # a console error
    sidebars = {'index.html': [PAGES[0], PAGES[2], PAGES[1]]}                          # chapters out of order
    site = _write_site(tmp_path / 'site', {**BODIES, 'patches.html': patches, 'tokens.html': tokens},
                       sidebars)
    # a picture that is not one (what a Git LFS checkout without LFS leaves): only a browser can tell
    lfs_pointer = 'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n'
    (site / 'figs' / 'count.png').write_text(lfs_pointer)
    problems = check_site(site, PAGES, None, chromium)
    print('\n'.join(problems))
    assert 'patches.html: image not loaded: figs/missing.png' in problems
    assert 'tokens.html: image not loaded: figs/count.png' in problems
    assert "tokens.html: broken link 'patchs.html' (a href): no such file" in problems
    assert "patches.html: broken link 'tokens.html#conclusion' (a href): no id 'conclusion' in tokens.html" \
        in problems
    assert any(p.startswith('tokens.html: console error: deliberate console error') for p in problems)
    assert ("index.html: sidebar entry 2 is 'Chapter 2: tokens' (tokens.html), "
            "expected 'Chapter 1: patches' (patches.html)") in problems
    defects = ('missing.png', 'count.png', "'patchs.html'", '#conclusion', 'deliberate', 'sidebar entry 2')
    assert [p for p in problems if not any(d in p for d in defects)] == [], 'only the defects are reported'


@pytest.mark.browser
def test_checker_blocks_and_reports_other_hosts(tmp_path, chromium):
    "A font or script from a CDN fails for a reader behind a firewall: the check fails instead of loading it."
    bodies = {**BODIES, 'index.html': BODIES['index.html'] +
              '<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Source+Sans+Pro">'}
    problems = check_site(_write_site(tmp_path / 'site', bodies), PAGES, None, chromium)
    assert ('index.html: requested https://fonts.googleapis.com/css2?family=Source+Sans+Pro '
            'from another host (blocked: a reader behind a firewall cannot)') in problems


# ---- the real site -----------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.skipif(not shutil.which('quarto'), reason=NO_QUARTO)
def test_the_course_site(tmp_path, chromium):
    "nbdev_docs on a clean copy of the project, the whole check on its _docs/ (screenshots: _artifacts/site)."
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    bin_ = Path(sys.executable).parent
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PATH': f'{bin_}{os.pathsep}{os.environ["PATH"]}'}
    r = subprocess.run([str(bin_ / 'nbdev_docs')], cwd=repo, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f'nbdev_docs failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    assert check_site(repo / '_docs', site_pages(repo), ARTIFACTS, chromium) == []
