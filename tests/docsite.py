"""The course as a website, built from the committed notebooks by Sphinx and MyST-NB (nothing is executed).

`python tests/docsite.py build [OUT]` writes the site into OUT (default `_docs/`, git-ignored): it copies the
notebooks into `_proc/site/`, turns nbdev's cell directives into MyST-NB's cell tags there (the committed
notebooks are never touched), adds API entries under exported cells and an API index, and runs Sphinx
offline. Any warning of Sphinx fails the build. `python -m http.server -d _docs` serves the site;
`tests/site_check.py` checks it in headless Chromium. `python tests/docsite.py badges` puts an "Open in Colab"
link under every chapter's title; `python tests/docsite.py check` prints the chapters whose link is missing or
wrong (exit 1 if any).

Pages, in the sidebar's order: the chapters in filename order (grouped into the parts of the course), then the
reference pages (`nbs/*.md`, such as "Using nanovlm", and the API index). Nothing here names a chapter, so a
renamed or added notebook needs no change.
"""
import ast, configparser, hashlib, html, importlib, inspect, json, os, re, shutil, sys, time
from pathlib import Path
from nbsync import ROOT, chapter_notebooks, _files

# A chapter belongs to the last part whose first chapter number is at most its own; unnumbered notebooks
# (appendices) go last. Numbers, not names: renaming or reordering chapters inside a part changes nothing.
PARTS = (('The model', 0), ('Training', 6), ('Going further', 9))
REFERENCE = 'Reference'  # the sidebar section of the pages that are not chapters
API_PAGE = 'api'  # the API index: api.html
_re_num = re.compile(r'^(\d+)[a-z]*_')
_re_title = re.compile(r'^#\s+(\S.*?)\s*$', flags=re.MULTILINE)
_COLAB = 'https://colab.research.google.com/github'
OUT = ROOT / '_docs'  # settings.ini's doc_path
WORK = ROOT / '_proc' / 'site'  # the prepared copies, Sphinx's caches


# ---- pages -----------------------------------------------------------------------------------------------

def _title_cell(nb_path: Path, cells: list) -> tuple:
    "(index, title) of the notebook's first markdown cell with a `# ` heading."
    for i, cell in enumerate(cells):
        m = _re_title.search(''.join(cell['source'])) if cell['cell_type'] == 'markdown' else None
        if m: return i, m.group(1)
    raise ValueError(f'{nb_path.name} has no `# Title` heading: start its first markdown cell with one')


def title(path: Path) -> str:
    "A page's title on the site and in the sidebar: the notebook's (or markdown file's) first `# ` heading."
    if path.suffix == '.md':
        m = _re_title.search(path.read_text(encoding='utf-8'))
        if not m: raise ValueError(f'{path.name} has no `# Title` heading: start it with one')
        return m.group(1)
    return _title_cell(path, json.loads(path.read_text(encoding='utf-8'))['cells'])[1]


def part_of(name: str) -> str:
    "The part of the course a chapter file belongs to, from its leading number (`01a_checkpoints.ipynb`: 1)."
    m = _re_num.match(name)
    if not m: return PARTS[-1][0]
    return [part for part, first in PARTS if first <= int(m.group(1))][-1]


def page_name(path: Path) -> str:
    "The HTML page a source file becomes: its own name (`04_language_model.ipynb`: `04_language_model.html`)."
    return Path(path).stem + '.html'


def reference_pages(root: Path = ROOT) -> list:
    "The markdown pages of nbs/ (`using_nanovlm.md`, ...), by name."
    return sorted(p for p in (root / 'nbs').glob('*.md') if p.is_file())


def sidebar(root: Path = ROOT) -> list:
    "(section, title, page) of every page the sidebar lists, in reading order."
    out = [(part_of(nb.name), title(nb), page_name(nb)) for nb in chapter_notebooks(root)]
    out += [(REFERENCE, title(p), page_name(p)) for p in reference_pages(root)]
    return out + [(REFERENCE, 'API index', f'{API_PAGE}.html')]


def site_pages(root: Path = ROOT) -> list:
    "(title, page) of the landing page, then of every page of the sidebar in reading order."
    return [(title(root / 'nbs' / 'index.ipynb'), 'index.html')] + [(t, p) for _, t, p in sidebar(root)]


def folded_solutions(root: Path = ROOT) -> dict:
    "{page: how many cells it shows folded (`#| code-fold: true`)} for every notebook of nbs/ that has some."
    out = {}
    for nb in [root / 'nbs' / 'index.ipynb'] + chapter_notebooks(root):
        cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
        n = sum('hide-input' in c['metadata'].get('tags', ()) for cell in cells for c in prepare_cell(
            cell, None, lambda *a: '') if c['cell_type'] == 'code')
        if n: out[page_name(nb)] = n
    return out


def chapter_page(number: str, root: Path = ROOT) -> str:
    "The page of `Chapter {number}:` (`'4'` -> `04_language_model.html`), whatever its file is called."
    found = [page_name(nb) for nb in chapter_notebooks(root) if title(nb).startswith(f'Chapter {number}:')]
    if len(found) != 1:
        raise ValueError(f'expected one notebook titled `Chapter {number}: ...`, found {found}')
    return found[0]


# ---- nbdev's cell directives -> MyST-NB's cell tags ------------------------------------------------------

_re_directive = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_hide_line = re.compile(r'#\s*\|\s*hide_line\s*$')
_HIDDEN = {'hide', 'default_exp'}  # cells nbdev_docs leaves out of the page
_EXPORTS = {'export', 'exports', 'exporti'}


def directives(source: str) -> tuple:
    "({directive: value}, the code without them) of a code cell: nbdev reads `#| ...` lines at its top."
    lines, found = source.splitlines(), {}
    i = 0
    while i < len(lines) and (m := _re_directive.match(lines[i])):
        found[m.group(1)] = m.group(2).strip('"\'')
        i += 1
    return found, '\n'.join(l for l in lines[i:] if not _re_hide_line.search(l))


def _md(source: str, cell_id: str) -> dict:
    return {'cell_type': 'markdown', 'id': cell_id, 'metadata': {}, 'source': source}


def defined_names(code: str) -> list:
    """(name, shown) of what a code cell defines, named as nbdev's `_modidx.py` names it: top-level functions
    and classes, `@patch`ed methods as `Class.method`, and the methods inside each class. `shown` is True for
    the names nbdev_docs gives an API entry (public top-level definitions)."""
    from nbdev.doclinks import patch_name
    out = []
    try: body = ast.parse(code).body
    except SyntaxError: return out  # IPython magics: nothing exported is defined there
    for node in body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): continue
        public = not node.name.startswith('_') or node.name.startswith('__')
        names = patch_name(node)
        out += [(n, public) for n in ([names] if isinstance(names, str) else names)]
        if isinstance(node, ast.ClassDef):
            out += [(f'{node.name}.{m.name}', False) for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return out


def _own_doc(obj) -> str:
    "The object's own docstring (a class or method without one does not borrow `nn.Module`'s)."
    doc = getattr(obj, '__doc__', None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ''


def api_entry(module: str, name: str) -> str:
    "What nbdev's `show_doc` shows of `name` in `nanovlm.{module}`: signature, parameter comments, docstring."
    from fastcore.docments import MarkdownRenderer
    obj = importlib.import_module(f'nanovlm.{module}')
    for part in name.split('.'):
        if not hasattr(obj, part):
            raise ValueError(f'nanovlm.{module} has no {name} to document: run nbdev_export')
        obj = getattr(obj, part)
    sig = str(MarkdownRenderer(obj, name=name).dm)
    if inspect.isclass(obj): sig = re.sub(r'^def ', 'class ', sig)
    doc = _own_doc(obj)
    doc = f'\n\n{doc}' if doc else ''
    return (f'````{{container}} api-entry\n```{{rubric}} {name}\n:class: api-name\n```\n\n'
            f'```python\n{sig}\n```{doc}\n````')


def _anchors(names: list) -> str:
    "The `#anchor` of each name, as nbdev's `_modidx.py` links to it: the name in lower case."
    spans = ''.join(f'<span id="{html.escape(n.lower())}"></span>' for n in names)
    return f'<div class="api-anchors">{spans}</div>'


_re_show_doc = re.compile(r'^show_doc\(\s*([\w.]+)\s*(?:,[^)]*)?\)\s*$')


def prepare_cell(cell: dict, module: str | None, api=api_entry, documented=frozenset()) -> list:
    """The cells that show `cell` on the site: none for hidden ones, else a copy with its directives turned
    into tags, under the anchors of the names it exports and above their API entries (`api(module, name)`),
    except for the names that a `show_doc` cell of the notebook documents (`documented`): that cell is their
    entry."""
    if cell['cell_type'] != 'code': return [{**cell, 'source': ''.join(cell['source'])}]
    found, code = directives(''.join(cell['source']))
    if found.keys() & _HIDDEN or found.get('include') == 'false': return []
    cid = cell.get('id', 'cell')
    if m := _re_show_doc.match(code): return [_md(api(module, m.group(1)), f'{cid}-api')]  # anew, like nbdev
    tags, meta = [], {}
    if found.get('code-fold') == 'true':
        tags.append('hide-input')
        summary = found.get('code-summary', 'Code')
        meta['mystnb'] = {'code_prompt_show': summary, 'code_prompt_hide': summary}
    if found.get('echo') == 'false': tags.append('remove-input')
    if found.get('output') == 'false': tags.append('remove-output')
    if tags: meta['tags'] = tags
    out = [{**cell, 'source': code, 'metadata': meta}]
    exports = found.keys() & _EXPORTS
    if not exports: return out
    mod = found[next(iter(exports))] or module
    names = defined_names(code)
    if not names: return out
    shown = [n for n, show in names if show and 'exporti' not in exports and n not in documented]
    entries = [_md(api(mod, n), f'{cid}-api{i}') for i, n in enumerate(shown)]
    return [_md(_anchors([n for n, _ in names]), f'{cid}-anchors')] + out + entries


def _github(root: Path) -> str:
    cfg = _settings(root)
    return f"{cfg['git_url']}/blob/{cfg['branch']}"


def _link_targets(source: str, nb_dir: Path, root: Path) -> str:
    "Relative links of a markdown cell that lead out of nbs/ (`../experiments/README.md`) made GitHub links."
    def fix(m):
        target, frag = m[2].partition('#')[::2]
        if not target or re.match(r'^[a-z][a-z0-9+.-]*:|^/', target): return m[0]
        path = (nb_dir / target).resolve()
        if path.is_relative_to(nb_dir) or not path.is_relative_to(root.resolve()) or not path.exists():
            return m[0]  # a page or picture of the site; or a link to nowhere, which the build reports
        url = f'{_github(root)}/{path.relative_to(root.resolve()).as_posix()}' + (f'#{frag}' if frag else '')
        return f'{m[1]}{url})'
    return re.sub(r'(\]\()([^)\s]+)\)', fix, source)


def prepare_notebook(nb_path: Path, root: Path = ROOT, api=api_entry) -> dict:
    "The copy of a notebook that Sphinx renders (see `prepare_cell`)."
    nb = json.loads(nb_path.read_text(encoding='utf-8'))
    module = next((d.get('default_exp') for c in nb['cells'] if c['cell_type'] == 'code'
                   for d in [directives(''.join(c['source']))[0]] if d.get('default_exp')), None)
    codes = [directives(''.join(c['source']))[1] for c in nb['cells'] if c['cell_type'] == 'code']
    documented = {m.group(1) for code in codes if (m := _re_show_doc.match(code))}
    cells, nb_dir = [], nb_path.parent.resolve()
    for cell in nb['cells']:
        for c in prepare_cell(cell, module, api, documented):
            if c['cell_type'] == 'markdown': c['source'] = _link_targets(c['source'], nb_dir, root)
            cells.append(c)
    meta = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
            'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'}}
    return {**nb, 'cells': cells, 'metadata': meta}


# ---- the API index and the sidebar -----------------------------------------------------------------------

def _modidx(root: Path) -> dict:
    "nbdev's index of the library: {module: {name: 'page.html#anchor'}}, read without importing the package."
    text = (root / 'nanovlm' / '_modidx.py').read_text(encoding='utf-8')
    syms = ast.literal_eval(text.split('d = ', 1)[1])['syms']
    return {mod: {name: link for name, (link, _) in names.items()} for mod, names in syms.items()}


def api_index(root: Path = ROOT) -> str:
    """The API index page: every name `_modidx.py` lists, under the chapter that defines it, linked to its
    place in that chapter (nbdev names a notebook's page without its number: `config.html` is
    `01_config.ipynb`)."""
    from nbdev.doclinks import _nbpath2html
    nbs = {}
    for nb in chapter_notebooks(root):
        page = _nbpath2html(Path(nb.name)).name
        if page in nbs:
            raise ValueError(f'{nbs[page].name} and {nb.name} both make {page} (nbdev drops the number): '
                             'rename one so their names differ after the number')
        nbs[page] = nb
    by_nb = {}
    for mod, names in _modidx(root).items():
        for name, link in names.items():
            page, anchor = link.split('#', 1)
            if page not in nbs:
                raise ValueError(f'_modidx.py links {name} to {page}, which no notebook makes: '
                                 'run nbdev_export')
            by_nb.setdefault(nbs[page], []).append((name, f'{page_name(nbs[page])}#{anchor}'))
    lines = ['# API index', '', 'Every name the library exports, under the chapter that writes it: a link '
             'leads to its code. Names that start with `_` are helpers a reader can skip.', '']
    private = lambda name: any(p.startswith('_') for p in name.split('.')[1:])
    for nb in sorted(by_nb):
        items = sorted(by_nb[nb], key=lambda x: (private(x[0]), x[0]))
        links = ''.join(f'<li><a href="{html.escape(href)}"><code>{html.escape(name.split(".", 1)[1])}'
                        f'</code></a></li>' for name, href in items)
        lines += [f'## {title(nb)}', '', f'<ul class="api-index">{links}</ul>', '']
    return '\n'.join(lines)


def toctree(root: Path = ROOT) -> str:
    "The hidden tables of contents the landing page carries: what the sidebar shows, section by section."
    out, section = [], None
    for sec, _, page in sidebar(root):
        if sec != section:
            out += ['```', ''] if section else []
            out += ['```{toctree}', ':hidden:', f':caption: {sec}', '']
            section = sec
        out.append(page.removesuffix('.html'))
    return '\n'.join(out + ['```'])


# ---- building --------------------------------------------------------------------------------------------

def _settings(root: Path) -> dict:
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(root / 'settings.ini', encoding='utf-8')
    return dict(cfg['DEFAULT'])


CSS = """/* nanovlm: the Colab link as a badge, API entries boxed, the chapter's summary under its title. */
a[href^="https://colab.research.google.com/"] {
  display: inline-block; padding: 0.1rem 0.6rem; border-radius: 0.25rem; background: #f9ab00;
  color: #1f1f1f !important; font-size: 0.85rem; font-weight: 600; text-decoration: none;
}
.api-entry { border: 1px solid var(--pst-color-border); border-radius: 0.25rem; padding: 0.2rem 1rem;
  margin-bottom: 1.5rem; }
.api-entry p.rubric.api-name { font-family: var(--pst-font-family-monospace); margin-top: 0.6rem; }
.api-anchors { height: 0; }
ul.api-index { columns: 3 14rem; }
article section > h1 + blockquote { font-style: italic; font-size: 1.15rem; border-left: none;
  padding-left: 0; }
math[display="block"] { margin: 1rem 0; }
"""

FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect width="16" height="16" rx="3" fill="#f9ab00"/>
<text x="8" y="12.5" font-size="12" text-anchor="middle" font-family="sans-serif">n</text></svg>
"""


def site_sources(root: Path = ROOT, api=api_entry) -> dict:
    "{path: bytes} of the Sphinx source tree: the notebooks prepared, the pages, the pictures, the API index."
    want, nbs = {}, root / 'nbs'
    for rel in _files(root):
        path = root / rel
        if not path.is_relative_to(nbs) or '.ipynb_checkpoints' in path.parts: continue
        inner = path.relative_to(nbs)
        if path.suffix == '.ipynb' and len(inner.parts) == 1:
            nb = prepare_notebook(path, root, api)
            if inner.name == 'index.ipynb': nb['cells'].append(_md(toctree(root), 'toctree'))
            want[inner] = json.dumps(nb, indent=1, ensure_ascii=False).encode()
        elif path.suffix == '.md' and len(inner.parts) == 1:
            want[inner] = _link_targets(path.read_text(encoding='utf-8'), nbs.resolve(), root).encode()
        elif path.suffix not in ('.ipynb', '.md'): want[inner] = path.read_bytes()
    if Path(f'{API_PAGE}.md') in want or Path(f'{API_PAGE}.ipynb') in want:
        raise ValueError(f'nbs/{API_PAGE}.* would replace the API index: rename it')
    stems = [p.stem for p in want if len(p.parts) == 1 and p.suffix in ('.ipynb', '.md')]
    if len(stems) != len(set(stems)): raise ValueError(f'two pages of nbs/ share a name: {sorted(stems)}')
    want[Path(f'{API_PAGE}.md')] = api_index(root).encode()
    want[Path('_static/nanovlm.css')] = CSS.encode()
    want[Path('_static/favicon.svg')] = FAVICON.encode()
    return want


def sphinx_config(root: Path = ROOT) -> dict:
    "Sphinx's configuration (there is no conf.py: this is it)."
    cfg = _settings(root)
    return {
        'project': cfg['title'], 'author': cfg['author'], 'copyright': cfg['copyright'],
        'extensions': ['myst_nb', 'sphinx.ext.githubpages', 'docsite'],  # githubpages: a .nojekyll file
        'root_doc': 'index',
        'nb_execution_mode': 'off',  # the committed outputs are the pages' outputs
        'nb_merge_streams': True,
        'myst_enable_extensions': ['dollarmath', 'amsmath'],
        'myst_dmath_double_inline': True,
        'myst_heading_anchors': 3,  # GitHub-style #anchors on headings, so README links like page.md#installing work
        'html_math_renderer': 'mathml',  # formulas as MathML, which browsers draw themselves: no MathJax
        'html_theme': 'sphinx_book_theme',
        'html_title': cfg['title'],
        'html_static_path': ['_static'],
        'html_css_files': ['nanovlm.css'],
        'html_copy_source': False, 'html_show_sourcelink': False,
        'html_last_updated_fmt': None,
        'html_theme_options': {'repository_url': cfg['git_url'], 'repository_branch': cfg['branch'],
                               'path_to_docs': cfg['nbs_path'], 'use_repository_button': True,
                               'show_toc_level': 2, 'navigation_with_keys': False,
                               'use_download_button': False},  # it would offer the copy, not the notebook
        'html_context': {'default_mode': 'light'},  # without it the theme logs an error on a first visit
        'html_favicon': '_static/favicon.svg',  # else the browser asks for /favicon.ico, which is not there
        'exclude_patterns': ['_static'],
        'suppress_warnings': ['myst.header'],  # a chapter may go from `#` to `###` (its API entries do)
    }


def build(out: Path = OUT, root: Path = ROOT, work: Path = WORK, quiet: bool = True) -> Path:
    "Build the site into `out`; raises RuntimeError with Sphinx's warnings if there is any. Returns `out`."
    from io import StringIO
    from sphinx.application import Sphinx
    os.environ.setdefault('MPLBACKEND', 'Agg')  # the API entries import the library
    if str(Path(__file__).parent) not in sys.path: sys.path.insert(0, str(Path(__file__).parent))
    for d in (work, out): shutil.rmtree(d, ignore_errors=True)  # fresh: nothing of a renamed page stays
    for rel, data in site_sources(root).items():
        (work / 'src' / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / 'src' / rel).write_bytes(data)
    warnings = StringIO()
    conf = {**sphinx_config(root), 'nanovlm_work': str(work)}
    app = Sphinx(str(work / 'src'), None, str(out), str(work / 'doctrees'), 'html', confoverrides=conf,
                 status=None if quiet else sys.stdout, warning=warnings, freshenv=True)
    app.build()
    if warnings.getvalue().strip(): raise RuntimeError(f'Sphinx warned:\n{warnings.getvalue()}')
    return out


# ---- the Sphinx extension (`extensions = ['docsite']`) ---------------------------------------------------

def _mathml(node, block: bool) -> str:
    "The formula as MathML; LaTeX that latex2mathml cannot read is a warning naming it (the build fails)."
    from latex2mathml.converter import convert
    from sphinx.util import logging
    try: return convert(node.astext(), display='block' if block else 'inline')
    except Exception as e:
        logging.getLogger('docsite').warning(f'formula {node.astext()!r} cannot be drawn: {e!r}',
                                             location=node)
        return f'<code>{html.escape(node.astext())}</code>'


def _visit_math(self, node):
    from docutils import nodes
    self.body.append(_mathml(node, False))
    raise nodes.SkipNode


def _visit_math_block(self, node):
    from docutils import nodes
    self.body.append(f'<div class="math-block">{_mathml(node, True)}</div>')
    raise nodes.SkipNode


def _nb_outputs_into_work(app):
    "MyST-NB writes the notebooks' pictures next to the output folder: keep them in `_proc/site` instead."
    cfg = getattr(app.env, 'mystnb_config', None)
    if cfg is not None and app.config.nanovlm_work:
        folder = Path(app.config.nanovlm_work) / 'jupyter_execute'
        app.env.mystnb_config = cfg.copy(output_folder=str(folder))


# Elements a chapter's prose may write as HTML; anything else in angle brackets (`<image>`, nanoVLM's image
# token) is text the author forgot to put in backticks: browsers would turn `<image>` into a broken picture.
HTML_TAGS = set('''a abbr b blockquote br caption center code col colgroup dd del details div dl dt em
figcaption figure font h1 h2 h3 h4 h5 h6 hr i iframe img ins kbd li mark math ol p pre q s samp section small
span strong style sub summary sup table tbody td tfoot th thead tr tt u ul var video'''.split())
_re_tag = re.compile(r'^</?([A-Za-z][\w-]*)(\s[^>]*)?/?>$')


def _text_for_unknown_tags(app, doctree):
    "Inline raw HTML whose tag is no HTML element (`<image>`) shown as the text it is."
    from docutils import nodes
    for node in list(doctree.findall(nodes.raw)):
        m = _re_tag.match(node.astext().strip())
        if m and m.group(1).lower() not in HTML_TAGS and isinstance(node.parent, nodes.TextElement):
            node.replace_self(nodes.Text(node.astext()))


def setup(app):
    app.add_html_math_renderer('mathml', (_visit_math, None), (_visit_math_block, None))
    app.connect('doctree-read', _text_for_unknown_tags)
    app.add_config_value('nanovlm_work', '', 'env')
    app.connect('builder-inited', _nb_outputs_into_work, priority=900)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}


# ---- Colab links -----------------------------------------------------------------------------------------

def colab_url(nb_path: Path, root: Path = ROOT) -> str:
    "Where Colab opens this notebook from: the repository and branch that settings.ini names."
    d = _settings(root)
    return f"{_COLAB}/{d['user']}/{d['repo']}/blob/{d['branch']}/{d['nbs_path']}/{nb_path.name}"


def badge(nb_path: Path, root: Path = ROOT) -> str:
    "The Colab link cell's text."
    # A text link, not a shields.io picture: shows behind a firewall, in Colab; the site's CSS draws a badge.
    return f'[Open in Colab]({colab_url(nb_path, root)})'


def _is_badge_cell(cell: dict) -> bool:
    return cell['cell_type'] == 'markdown' and _COLAB in ''.join(cell['source'])


def badge_problems(root: Path = ROOT) -> list:
    "Chapters whose title is not followed by a markdown cell holding exactly their Colab link."
    problems = []
    for nb_path in chapter_notebooks(root):
        cells = json.loads(nb_path.read_text(encoding='utf-8'))['cells']
        i = _title_cell(nb_path, cells)[0]
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        want = badge(nb_path, root)
        if nxt is None or not _is_badge_cell(nxt):
            problems.append(f'{nb_path.name}: no Colab link under the title')
        elif (got := ''.join(nxt['source'])) != want:
            problems.append(f'{nb_path.name}: Colab link cell is {got!r}, expected {want!r}')
    return problems


def _write_nb(nb: dict, nb_path: Path):
    "Write a notebook in nbdev_clean's own format (execnb's nb2str), so nbdev_clean leaves it as it is."
    nb_path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')


def insert_badges(root: Path = ROOT) -> list:
    "Put (or correct) the Colab link cell under every chapter's title; returns the notebooks changed (names)."
    changed = []
    for nb_path in chapter_notebooks(root):
        nb = json.loads(nb_path.read_text(encoding='utf-8'))
        cells, src = nb['cells'], badge(nb_path, root)
        i = _title_cell(nb_path, cells)[0]
        if i + 1 < len(cells) and _is_badge_cell(cells[i + 1]):
            if ''.join(cells[i + 1]['source']) == src: continue
            cells[i + 1]['source'] = [src]
        else:  # a stable id: running this on two branches inserts the same cell
            cid = hashlib.sha1(f'colab:{nb_path.name}'.encode()).hexdigest()[:8]
            cells.insert(i + 1, {'cell_type': 'markdown', 'id': cid, 'metadata': {}, 'source': [src]})
        _write_nb(nb, nb_path)
        changed.append(nb_path.name)
    return changed


if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'check'
    if cmd == 'build':
        t0 = time.time()
        try: out = build(Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
        except (RuntimeError, ValueError) as e: sys.exit(f'docsite: {e}')
        print(f'built {len(site_pages())} pages into {out} in {time.time() - t0:.0f} s; '
              f'serve it with: python -m http.server -d {out}')
    elif cmd == 'badges':
        changed = insert_badges()
        print('\n'.join(f'wrote the Colab link into nbs/{n}' for n in changed) or 'no change')
    elif cmd == 'check':
        problems = badge_problems()
        print('\n'.join(problems) or 'in sync')
        sys.exit(1 if problems else 0)
    else: sys.exit(f'usage: python tests/docsite.py [build [OUT]|badges|check], got {cmd!r}')
