"""The course site: built from the notebooks by `python tests/docsite.py build`, checked in Chromium.

The tests marked `browser` build the site from a clean copy of the project with the documented command, check
it page by page in headless Chromium (Playwright driving the system's chromium), and show that the check fails
on real pages damaged on purpose. They are skipped, with the reason, where Sphinx (the `[docs]` extra),
Playwright or Chromium is missing; `.ci/run` installs all three.
"""
import configparser, json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image
from nbsync import ROOT, scratch_copy, chapter_notebooks, clean_drift, export_drift
import docsite
from docsite import (PARTS, REFERENCE, part_of, sidebar, site_pages, toctree, chapter_page, folded_solutions,
                     directives, prepare_cell, prepare_notebook, defined_names, api_index, site_sources,
                     badge_problems, insert_badges, sphinx_config)
from site_check import SEARCH, find_chromium, link_problems, check_site

ARTIFACTS = ROOT / '_artifacts' / 'site'


@pytest.fixture
def chromium():
    "The browser the checker drives; skips the test where Playwright or Chromium is missing."
    try: import playwright.sync_api  # noqa: F401
    except ImportError: pytest.skip('playwright is not installed: .venv/bin/pip install -e ".[dev]"')
    path = find_chromium()
    if not path: pytest.skip('no Chromium: apt-get install chromium (Debian), or set NANOVLM_CHROMIUM')
    return path


def _no_api(module, name): return f'API {module}.{name}'


def _code(source: str, cid='c1', outputs=()) -> dict:
    return {'cell_type': 'code', 'id': cid, 'metadata': {}, 'outputs': list(outputs), 'source': source}


# ---- nbdev's directives ------------------------------------------------------------------------------------

def test_directives_are_read_from_the_top_of_a_cell_and_stripped():
    cell = '#| code-fold: true\n#|code-summary: "Solution to exercise 2"\nx = 1\n#| hide\ny = 2'
    found, code = directives(cell)
    assert found == {'code-fold': 'true', 'code-summary': 'Solution to exercise 2'}
    assert code == 'x = 1\n#| hide\ny = 2', 'only the leading block is directives'
    assert directives('#| export\ndef f(): pass  #| hide_line\ng = 1') == ({'export': ''}, 'g = 1')


def test_each_directive_becomes_what_nbdev_docs_shows():
    assert prepare_cell(_code('#| hide\nfrom fastcore.test import *'), 'm', _no_api) == []
    assert prepare_cell(_code('#| default_exp config'), 'm', _no_api) == []
    out = [{'output_type': 'stream', 'name': 'stdout', 'text': '4\n'}]
    summary = 'Solution to exercise 1'
    cell = _code(f'#| code-fold: true\n#| code-summary: "{summary}"\nprint(2 + 2)', outputs=out)
    [folded] = prepare_cell(cell, 'm', _no_api)
    assert folded['source'] == 'print(2 + 2)' and folded['outputs'] == out
    assert folded['metadata'] == {'tags': ['hide-input'],
                                  'mystnb': {'code_prompt_show': summary, 'code_prompt_hide': summary}}
    assert prepare_cell(_code('#| echo: false\nx'), 'm', _no_api)[0]['metadata'] == {'tags': ['remove-input']}
    md = {'cell_type': 'markdown', 'id': 'm1', 'metadata': {}, 'source': ['# Title\n', 'text']}
    assert prepare_cell(md, 'm', _no_api) == [{**md, 'source': '# Title\ntext'}]


def test_an_exported_cell_shows_its_code_between_its_anchors_and_its_api_entries():
    src = ('#| export\nclass Box:\n    "A box."\n    def area(self): return 1\n\n'
           '@patch\ndef grow(self: Box): pass\n\ndef _helper(): pass\n\ndef pack(): pass')
    anchors, code, *entries = prepare_cell(_code(src), 'shapes', _no_api)
    assert code['source'] == src.removeprefix('#| export\n') and code['metadata'] == {}
    ids = re.findall(r'id="([^"]+)"', anchors['source'])
    assert ids == ['box', 'box.area', 'box.grow', '_helper', 'pack'], "nbdev's _modidx.py anchors"
    assert [e['source'] for e in entries] == ['API shapes.Box', 'API shapes.Box.grow', 'API shapes.pack']
    assert len({c['id'] for c in [anchors, code] + entries}) == 5, 'every cell keeps a distinct id'
    assert defined_names(src.removeprefix('#| export\n')) == [('Box', True), ('Box.area', False),
                                                                ('Box.grow', True), ('_helper', False),
                                                                ('pack', True)]
    [_, _] = prepare_cell(_code('#| exporti\ndef pack(): pass'), 'm', _no_api)  # internal: no API entry
    [_, _, entry] = prepare_cell(_code('#| export other\ndef pack(): pass'), 'm', _no_api)
    assert entry['source'] == 'API other.pack', '`#| export other` exports to another module'


def test_a_show_doc_cell_is_the_entry_of_its_name():
    "Where a chapter calls `show_doc` itself, that is where the entry goes (rendered anew, as nbdev does)."
    out = [{'output_type': 'execute_result', 'data': {'text/markdown': ['### pack'], 'text/plain': ['x']}}]
    assert prepare_cell(_code('show_doc(pack)', 'b', out), 'm', _no_api) == [
        {'cell_type': 'markdown', 'id': 'b-api', 'metadata': {}, 'source': 'API m.pack'}]
    cells = prepare_cell(_code('#| export\ndef pack(): pass\ndef unpack(): pass'), 'm', _no_api, {'pack'})
    assert [c['source'] for c in cells[2:]] == ['API m.unpack']


def test_api_entries_are_what_show_doc_shows():
    "The signature with its parameter comments (nbdev's docments), the object's own docstring, in a box."
    entry = docsite.api_entry('config', 'VLMConfig')
    assert entry.startswith('````{container} api-entry\n```{rubric} VLMConfig')
    assert 'class VLMConfig(\n    vit_hidden_dim:int=768, # ' in entry
    from nanovlm.config import VLMConfig
    assert VLMConfig.__doc__.strip() in entry
    lm = docsite.api_entry('language_model', 'LanguageModel')
    assert 'Base class for all neural network modules' not in lm, "not nn.Module's docstring"


def test_links_that_leave_the_notebooks_folder_go_to_github():
    nb = ROOT / 'nbs' / 'index.ipynb'
    src = '[a](../experiments/README.md#top) [b](04_language_model.ipynb) [c](https://x.org) [d](../nope.md)'
    got = docsite._link_targets(src, nb.parent.resolve(), ROOT)
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    blob = f"{cfg['DEFAULT']['git_url']}/blob/{cfg['DEFAULT']['branch']}"
    assert got == f'[a]({blob}/experiments/README.md#top) [b](04_language_model.ipynb) [c](https://x.org) ' \
                  '[d](../nope.md)', 'a link to nowhere is left for the build to report'


def test_tags_that_are_no_html_element_are_shown_as_text():
    "`<image>` in prose (nanoVLM's image token) would become a broken <img> in a browser."
    from docutils import nodes
    para = nodes.paragraph('', '', nodes.Text('compare '), nodes.raw('', '<image>', format='html'),
                           nodes.raw('', '<kbd>', format='html'))
    doc = nodes.document(None, None)
    doc += para
    docsite._text_for_unknown_tags(None, doc)
    assert para.astext() == 'compare <image><kbd>'
    assert [type(n).__name__ for n in para] == ['Text', 'Text', 'raw']


# ---- pages, sidebar, API index -----------------------------------------------------------------------------

def test_sidebar_lists_every_chapter_in_filename_order_then_the_reference_pages():
    entries = sidebar()
    chapters = [p.with_suffix('.html').name for p in chapter_notebooks()]
    refs = [p.with_suffix('.html').name for p in sorted((ROOT / 'nbs').glob('*.md'))] + ['api.html']
    assert [page for _, _, page in entries] == chapters + refs
    sections = [s for s, _, _ in entries]
    order = [p for p, _ in PARTS] + [REFERENCE]
    assert sections == sorted(sections, key=order.index), 'parts in the order of PARTS, then the reference'
    assert site_pages()[0] == ('nanovlm', 'index.html') and [t for t, _ in site_pages()[1:]] == \
        [t for _, t, _ in entries]
    tree = toctree()
    assert tree.count('```{toctree}') == len(set(sections)) and ':caption: Training' in tree
    assert [l for l in tree.splitlines() if re.match(r'^\w', l)] == [p.removesuffix('.html') for p in
                                                                     chapters + refs]


def test_parts_follow_chapter_numbers():
    "The grouping survives the renumbering: it reads numbers, not names."
    names = ['00a_shape_diagrams', '01_config', '01a_checkpoints', '05_vision_language_model', '06_data',
             '07_training', '08_end_to_end', '09_benchmarks', '10_serving', 'appendix_ddp']
    parts = ['The model'] * 4 + ['Training'] * 3 + ['Going further'] * 3
    assert [part_of(f'{n}.ipynb') for n in names] == parts


def test_pages_follow_a_renamed_or_added_chapter(tmp_path):
    repo = scratch_copy(ROOT, tmp_path / 'repo')
    first, last = chapter_notebooks(repo)[0], chapter_notebooks(repo)[-1]
    stem = re.sub(r'^\d+[a-z]*_', '', last.stem)
    renamed = last.rename(last.with_name(f'99_{stem}.ipynb'))  # renumbered: nbdev's page name stays
    md = f'# Using nanovlm\n\nSee [the scripts](../experiments/README.md) and [chapter 0]({first.name}).\n'
    (repo / 'nbs' / 'using_nanovlm.md').write_text(md)
    sources = site_sources(repo, _no_api)
    page = sources[Path('using_nanovlm.md')].decode()
    assert '(https://github.com/nanovlm/nanovlm/blob/main/experiments/README.md)' in page
    assert f'[chapter 0]({first.name})' in page
    assert Path(renamed.name) in sources and Path(last.name) not in sources
    page = renamed.with_suffix('.html').name
    assert sidebar(repo)[-3:] == [('Going further', docsite.title(renamed), page),
                                  (REFERENCE, 'Using nanovlm', 'using_nanovlm.html'),
                                  (REFERENCE, 'API index', 'api.html')]
    assert chapter_page('4', repo) == chapter_page('4')
    with pytest.raises(ValueError, match='expected one notebook titled `Chapter 99: ...`'):
        chapter_page('99', repo)
    renamed.rename(renamed.with_name('99_renamed.ipynb'))  # a new name, and the library not exported again
    with pytest.raises(ValueError, match=f'to {stem}.html, which no notebook makes: run nbdev_export'):
        site_sources(repo, _no_api)


def test_every_exported_name_has_its_anchor_in_its_chapter():
    "The API index links every name of nbdev's _modidx.py to an anchor the chapter's prepared copy carries."
    index = api_index()
    links = re.findall(r'<a href="([^"#]+)#([^"]+)"><code>([^<]+)</code>', index)
    modidx = docsite._modidx(ROOT)
    assert sorted(n for _, _, n in links) == sorted(n.removeprefix('nanovlm.') for names in modidx.values()
                                                    for n in names)
    anchors = {}
    for nb in chapter_notebooks():
        cells = prepare_notebook(nb, ROOT, _no_api)['cells']
        anchors[nb.with_suffix('.html').name] = set(re.findall(r'<span id="([^"]+)">', ''.join(
            c['source'] for c in cells if c['cell_type'] == 'markdown')))
    missing = [f'{page}#{a}' for page, a, _ in links if a not in anchors.get(page, ())]
    assert missing == []
    assert all(f'## {docsite.title(nb)}' in index for nb in chapter_notebooks() if anchors[nb.with_suffix(
        '.html').name])


def test_the_committed_notebooks_are_never_changed(tmp_path):
    before = {p: p.read_bytes() for p in (ROOT / 'nbs').glob('*.ipynb')}
    sources = site_sources(ROOT, _no_api)
    assert {p: p.read_bytes() for p in (ROOT / 'nbs').glob('*.ipynb')} == before
    assert set(sources) >= {Path(p.name) for p in before} | {Path('api.md'), Path('_static/nanovlm.css')}
    index = json.loads(sources[Path('index.ipynb')])
    assert index['cells'][-1]['source'] == toctree(), 'the landing page carries the table of contents'


def test_folded_solutions_are_counted_from_the_notebooks():
    counts = folded_solutions()
    for nb in chapter_notebooks():
        n = sum(''.join(c['source']).startswith('#| code-fold: true') for c in
                json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        assert counts.get(nb.with_suffix('.html').name, 0) == n
    assert sum(counts.values()) >= 2 * len(chapter_notebooks()), 'two exercises or more in every chapter'


def test_site_config():
    "No notebook is executed; nothing comes from another host; the builder is the [docs] extra."
    conf = sphinx_config()
    assert conf['nb_execution_mode'] == 'off'
    assert conf['html_math_renderer'] == 'mathml', 'MathJax would come from a CDN'
    assert re.findall(r'https?://', json.dumps(conf)) == ['https://'], 'only the repository link (a link)'
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    docs = [re.split('[<>=]', r)[0] for r in cfg['DEFAULT']['docs_requirements'].split()]
    assert docs == ['sphinx', 'myst-nb', 'sphinx-book-theme', 'latex2mathml']
    assert "'docs': docs_requirements" in (ROOT / 'setup.py').read_text()
    assert not list((ROOT / 'nbs').glob('_quarto.yml')), 'one builder: Sphinx'


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
    cells = prepare_notebook(nb, repo, _no_api)['cells']
    shown = [c['source'] for c in cells if c['cell_type'] == 'markdown']
    assert any('colab.research.google.com' in src for src in shown), 'the link is on the page'
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


# ---- the link check, without a browser ---------------------------------------------------------------------

def test_link_check_without_a_browser(tmp_path):
    site = tmp_path / 'site'
    (site / 'figs').mkdir(parents=True)
    Image.new('RGB', (40, 30), (200, 60, 90)).save(site / 'figs' / 'grid.png')
    (site / 'index.html').write_text('<img src="figs/grid.png"><a href="a.html#grid">a</a>'
                                     '<a href="#top">t</a><a id="top"></a><a href="https://x.org/#y">x</a>')
    (site / 'a.html').write_text('<h2 id="grid">Grid</h2><a href="./">home</a>')
    (site / '_static').mkdir()
    (site / '_static' / 'macros.html').write_text('<a href="{{ pathto(x) }}">a template, not a page</a>')
    assert link_problems(site) == []
    (site / 'index.html').write_text('<img src="figs/grids.png"><a href="a.html#grids">a</a>'
                                     '<a href="no/">n</a>')
    assert link_problems(site) == [
        "index.html: broken link 'figs/grids.png' (img src): no such file",
        "index.html: broken link 'a.html#grids' (a href): no id 'grids' in a.html",
        "index.html: broken link 'no/' (a href): no such file"]


# ---- the real site, in a browser ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "A clean copy of the project with its site built by the documented command (`_docs/` in the copy)."
    try: import sphinx, myst_nb, sphinx_book_theme  # noqa: F401
    except ImportError: pytest.skip('the site builder is not installed: .venv/bin/pip install -e ".[docs]"')
    repo = scratch_copy(ROOT, tmp_path_factory.mktemp('site') / 'repo')
    r = subprocess.run([sys.executable, 'tests/docsite.py', 'build'], cwd=repo, capture_output=True,
                       text=True)
    assert r.returncode == 0, f'the build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    print(r.stdout)
    return repo


@pytest.mark.browser
def test_the_course_site(built, chromium):
    "`python tests/site_check.py` on the built site: no problem at all; screenshots in _artifacts/site."
    r = subprocess.run([sys.executable, 'tests/site_check.py', '_docs', '--artifacts', str(ARTIFACTS)],
                       cwd=built, capture_output=True, text=True,
                       env={**os.environ, 'NANOVLM_CHROMIUM': chromium})
    assert r.returncode == 0, f'the check failed:\n{r.stdout[-6000:]}\n{r.stderr[-4000:]}'
    shots = sorted(p.name for p in ARTIFACTS.iterdir())
    assert shots == ['chapter.png', 'landing.png', 'solution.png']
    assert all(Image.open(ARTIFACTS / s).size[0] == 1280 for s in shots)
    site = built / '_docs'
    pages = {p for _, p in site_pages(built)}
    assert pages <= {p.name for p in site.glob('*.html')}
    assert (site / '.nojekyll').is_file() and not (built / 'jupyter_execute').exists()
    assert len(list((site / '_images').glob('*.png'))) >= 20, "the notebooks' figures"
    html = {p.name: p.read_text(encoding='utf-8') for p in site.glob('*.html')}
    assert [n for n, h in html.items() if re.search(r'<span class="c1">#\s*\|', h)] == [], 'no `#|` shown'
    entries = set(re.findall(r'<p class="api-name rubric">([^<]+)</p>', ''.join(html.values())))
    public = {n.split('.', 2)[2] for names in docsite._modidx(built).values() for n in names
              if not n.split('.', 2)[2].startswith('_') and '.' not in n.split('.', 2)[2]}
    assert public - entries == set(), 'every public function and class has an API entry, as show_doc shows'


def _edit(path: Path, old: str, new: str, count: int = 1):
    text = path.read_text(encoding='utf-8')
    assert old in text, f'{path.name} has no {old!r} to damage'
    path.write_text(text.replace(old, new, count), encoding='utf-8')


@pytest.mark.browser
def test_the_check_fails_on_damaged_pages(built, chromium, tmp_path):
    "A copy of the real site, damaged on six pages in six ways: each is reported, and nothing else."
    site = shutil.copytree(built / '_docs', tmp_path / 'site')
    pages, folded = site_pages(built), folded_solutions(built)
    chapters = [p for _, p in pages if folded.get(p)]
    # a picture that is not one (what a Git LFS checkout without LFS leaves): only a browser can tell
    pic_page = next(p for p in chapters if 'src="_images/' in (site / p).read_text())
    pic = re.search(r'src="(_images/[^"]+\.png)"', (site / pic_page).read_text()).group(1)
    (site / pic).write_text('version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n')
    # a link to a page that is not there, and one to an anchor that is not there
    link_page, anchor_page = chapters[1], 'api.html'
    text = (site / link_page).read_text()
    nxt = re.search(r'class="right-next"\s+href="([^"]+)"', text)
    (site / link_page).write_text(text[:nxt.start(1)] + 'gone.html' + text[nxt.end(1):])
    first = re.search(r'<a href="([^"#]+)#([^"]+)">', (site / anchor_page).read_text())
    _edit(site / anchor_page, first.group(0), f'<a href="{first.group(1)}#{first.group(2)}-gone">')
    # a solution that does not open: the theme's style keeps its code hidden when clicked
    shut_page = chapters[2]
    _edit(site / shut_page, '</head>', '<style>details[open] > .cell_input {display: none !important}</style>'
                                       '</head>')
    # a solution that is not folded any more
    open_page = chapters[3]
    _edit(site / open_page, 'tag_hide-input', 'tag_shown')
    # a console error, a request to another host, and the sidebar out of order
    _edit(site / 'index.html', '</body>', '<script>console.error("deliberate console error")</script></body>')
    font_page = chapters[4]
    font = 'https://fonts.googleapis.com/css2?f=S'
    _edit(site / font_page, '</head>', f'<link rel="stylesheet" href="{font}"></head>')
    order_page = chapters[5]
    li = re.findall(r'<li class="toctree-l1"><a class="reference internal" href="[^"]+">[^<]+</a></li>',
                    (site / order_page).read_text())
    _edit(site / order_page, li[0] + '\n' + li[1], li[1] + '\n' + li[0])
    visit = ['index.html', pic_page, shut_page, open_page, font_page, order_page]
    problems = check_site(site, pages, folded, None, None, chromium, visit)
    print('\n'.join(problems))
    expected = [
        f'{pic_page}: image not loaded: {pic}',
        f"{link_page}: broken link 'gone.html' (a href): no such file",
        f"api.html: broken link '{first.group(1)}#{first.group(2)}-gone' (a href): no id "
        f"'{first.group(2)}-gone' in {first.group(1)}",
        f'{shut_page}: folded solution 1 ({_summary(site / shut_page)!r}) does not show its code when '
        'clicked',
        f'{open_page}: {folded[open_page] - 1} folded solutions, expected {folded[open_page]}',
        f'{font_page}: requested {font} from another host (blocked: a reader behind a firewall cannot)',
        f"{order_page}: sidebar entry 1 is {_text(li[1])!r} ({_href(li[1])}), expected {_text(li[0])!r} "
        f"({_href(li[0])})"]
    for e in expected: assert e in problems
    assert any(p.startswith('index.html: console error: deliberate console error') for p in problems)
    shut = [p for p in problems if p.startswith(f'{shut_page}: folded solution')]
    assert len(shut) == folded[shut_page], 'every solution of the page is tried'
    # the stylesheet blocked from the other host is also a console error of that page
    also = (f'{font_page}: console error: Failed to load resource', f'{shut_page}: folded solution')
    assert [p for p in problems if p not in expected and 'deliberate console error' not in p
            and not p.startswith(also)] == [], 'nothing but the damage is reported'


def _summary(page: Path) -> str:
    return ' '.join(re.search(r'<p class="collapsed admonition-title">([^<]+)</p>', page.read_text()).group(1)
                    .split())


_text = lambda li: re.search(r'>([^<]+)</a>', li).group(1)
_href = lambda li: re.search(r'href="([^"]+)"', li).group(1)


def test_two_notebooks_that_make_one_page_are_refused(tmp_path):
    "nbdev drops the number from a page's name: 10_seeing_more and 10a_seeing_more would both be seeing_more.html."
    (tmp_path / 'nbs').mkdir()
    for name in ('10_seeing_more.ipynb', '10a_seeing_more.ipynb'):
        (tmp_path / 'nbs' / name).write_text(json.dumps({'cells': [], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    with pytest.raises(ValueError, match=r'10_seeing_more.ipynb and 10a_seeing_more.ipynb both make seeing_more.html'):
        docsite.api_index(tmp_path)
