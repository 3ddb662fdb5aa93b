"""Checks a built course site the way a reader meets it: served over HTTP and opened in headless Chromium.

`python tests/site_check.py [_docs] [--artifacts _artifacts/site]` checks the site that
`python tests/docsite.py build` wrote, prints one line per problem and exits 1 if there is any. Every HTML file is
scanned for internal links that lead nowhere (a missing file, or an `#anchor` its target lacks). Every page is
opened in Chromium and reports console errors and uncaught exceptions, HTTP errors, pictures that did not load
(natural width 0), formulas not drawn, requests to other hosts (blocked: a reader behind a firewall cannot
make them), a sidebar that does not list the pages in reading order, and folded solutions that are missing,
shown before a click, or that do not show their code when clicked. The site's search must find a term in the
chapter that teaches it. Screenshots of the landing page, a chapter and an opened solution go to the artifacts
folder.
"""
import functools, os, shutil, sys, threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

# The sidebar's page links (pydata-sphinx-theme's markup, which sphinx-book-theme uses); captions are <p>s.
SIDEBAR_LINKS = 'nav.bd-docs-nav li.toctree-l1 > a'
# A cell MyST-NB shows folded (the `hide-input` tag that `#| code-fold: true` becomes), its toggle, its code.
FOLDED, TOGGLE, CODE = 'div.cell.tag_hide-input', 'details > summary', '.cell_input'
SEARCH = ('RoPE', '4')  # a term, and the number of the chapter that teaches it: the search must find it there
_LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run']
# Attributes that make the browser fetch or navigate to another file of the site.
_REF_ATTRS = {'a': 'href', 'area': 'href', 'link': 'href', 'img': 'src', 'script': 'src', 'iframe': 'src',
              'source': 'src', 'video': 'src', 'audio': 'src', 'embed': 'src', 'track': 'src'}
# Jinja templates the theme copies into _static as they are: not pages.
_NOT_PAGES = ('_static/',)


def find_chromium() -> str | None:
    "Path of a Chromium-family browser: $NANOVLM_CHROMIUM, Debian's chromium, or Google Chrome."
    if os.environ.get('NANOVLM_CHROMIUM'): return os.environ['NANOVLM_CHROMIUM']
    return next(filter(None, map(shutil.which, ('chromium', 'google-chrome', 'chromium-browser'))), None)


class _Refs(HTMLParser):
    "The ids a page defines and the (attribute, value) of every reference it makes."
    def __init__(self):
        super().__init__()
        self.ids, self.refs = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        attr = _REF_ATTRS.get(tag)
        if attr and a.get(attr) is not None: self.refs.append((f'{tag} {attr}', a[attr].strip()))


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding='utf-8', errors='replace'))
    return p


def html_pages(site: Path) -> list:
    "Every page of the site (its HTML files, less the theme's templates), as paths relative to `site`."
    site = Path(site).resolve()
    rels = (p.relative_to(site).as_posix() for p in sorted(site.rglob('*.html')))
    return [r for r in rels if not r.startswith(_NOT_PAGES)]


def link_problems(site: Path) -> list:
    "Every reference from a page of `site` to a missing file, or to an `#anchor` its target lacks."
    site = Path(site).resolve()
    _parse.cache_clear()
    problems = []
    for rel in html_pages(site):
        page = site / rel
        for kind, ref in _parse(page).refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref in ('', '#'): continue  # another site, data:, javascript:, mailto:
            path = unquote(u.path)
            if not path: target = page  # `#anchor` alone: this page
            else: target = (site / path.lstrip('/') if path.startswith('/') else page.parent / path).resolve()
            if target.is_dir(): target = target / 'index.html'
            if not target.is_relative_to(site) or not target.is_file():
                problems.append(f'{rel}: broken link {ref!r} ({kind}): no such file')
            elif u.fragment and target.suffix == '.html' and unquote(u.fragment) not in _parse(target).ids:
                problems.append(f'{rel}: broken link {ref!r} ({kind}): no id {unquote(u.fragment)!r} in '
                                f'{target.relative_to(site).as_posix()}')
    return problems


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def _serve(site: Path):
    "An HTTP server for `site` on a free port of 127.0.0.1, running in a daemon thread."
    server = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


_SMART = str.maketrans({'\u2019': "'", '\u2018': "'", '\u201c': '"', '\u201d': '"'})  # Sphinx's smart quotes
_norm = lambda s: ' '.join(s.replace('`', '').translate(_SMART).split())

# Loads lazy pictures too and waits (10 s at most) until each has loaded or failed; returns the failed ones.
_IMAGES_JS = """async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  const settled = imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }));
  await Promise.race([Promise.all(settled), new Promise(r => setTimeout(r, 10000))]);
  return imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
}"""
_SIDEBAR_JS = f"""() => Array.from(document.querySelectorAll({SIDEBAR_LINKS!r}))
  .map(a => [a.textContent, a.getAttribute('href') || ''])"""
# Formulas the browser did not lay out (MathML it cannot draw has no width).
_MATH_JS = """() => Array.from(document.querySelectorAll('math'))
  .filter(m => m.getBoundingClientRect().width === 0).map(m => m.textContent.slice(0, 40))"""


def _sidebar_problems(rel: str, found: list, pages: list, page_url: str, base: str) -> list:
    "Differences between the sidebar entries (text, href) and `pages`, (title, page) in reading order."
    def _page(href):  # the site path a link leads to, `./` being `./index.html`
        path = unquote(urlsplit(urljoin(page_url, href)).path).removeprefix(urlsplit(base).path)
        return path + 'index.html' if path == '' or path.endswith('/') else path
    got = [(_norm(t), _page(h)) for t, h in found]
    want = [(_norm(t), p) for t, p in pages]
    if got == want: return []
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w: return [f'{rel}: sidebar entry {i + 1} is {g[0]!r} ({g[1]}), expected {w[0]!r} ({w[1]})']
    diff = f'missing {want[len(got):]!r}' if len(got) < len(want) else f'extra {got[len(want):]!r}'
    return [f'{rel}: the sidebar lists {len(got)} pages, expected {len(want)}: {diff}']


def _folded_problems(page, rel: str, expected: int, shot: Path | None) -> list:
    "Each folded solution must hide its code until its toggle is clicked, then show it."
    cells = page.locator(FOLDED)
    n = cells.count()
    if n != expected: return [f'{rel}: {n} folded solutions, expected {expected}']
    problems = []
    for i in range(n):
        cell, name = cells.nth(i), f'{rel}: folded solution {i + 1}'
        code, toggle = cell.locator(CODE), cell.locator(TOGGLE)
        if code.count() == 0:
            problems.append(f'{name} has no code')
            continue
        if code.first.is_visible():
            problems.append(f'{name} shows its code before it is clicked')
            continue
        if toggle.count() == 0 or not toggle.first.is_visible():
            problems.append(f'{name} has no toggle to click')
            continue
        label = _norm(toggle.first.inner_text())
        try: toggle.first.click(timeout=10_000)
        except Exception as e:  # covered by another element, detached, ...: Playwright's message says which
            problems.append(f'{name} ({label!r}) cannot be clicked: {str(e).splitlines()[0]}')
            continue
        if not code.first.is_visible() or not code.first.inner_text().strip():
            problems.append(f'{name} ({label!r}) does not show its code when clicked')
        elif shot and not shot.exists():
            cell.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
    return problems


def _check_page(page, rel: str, base: str, pages: list, folded: int, shots: dict) -> list:
    "Open one page and report what went wrong on it."
    problems = []

    def _console(m):
        if m.type == 'error': problems.append(f'{rel}: console error: {m.text} ({m.location.get("url", "")})')

    def _response(r):
        if r.status >= 400: problems.append(f'{rel}: HTTP {r.status} for {r.url.removeprefix(base)}')
    page.on('console', _console)
    page.on('response', _response)
    page.on('pageerror', lambda e: problems.append(f'{rel}: uncaught exception: {e}'))
    resp = page.goto(base + rel, wait_until='load', timeout=60_000)
    if resp is None or not resp.ok: return problems  # the HTTP error is already reported
    problems += [f'{rel}: image not loaded: {src}' for src in page.evaluate(_IMAGES_JS)]
    problems += [f'{rel}: formula not drawn: {m!r}' for m in page.evaluate(_MATH_JS)]
    problems += _sidebar_problems(rel, page.evaluate(_SIDEBAR_JS), pages[1:], page.url, base)
    page.wait_for_load_state('networkidle', timeout=30_000)  # late requests and console errors
    if shots.get(rel):
        shots[rel].parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots[rel]))
    problems += _folded_problems(page, rel, folded, shots.get('solution'))
    return problems


def _search_problems(page, base: str, term: str, want: str) -> list:
    "Sphinx's search page, asked for `term`, must list page `want` among its results."
    page.goto(f'{base}search.html?q={quote(term)}', wait_until='load', timeout=60_000)
    try: page.wait_for_selector('#search-results .search-summary', timeout=30_000)
    except Exception: return [f'search for {term!r}: no results page (the search did not finish)']
    hits = page.evaluate("""() => Array.from(document.querySelectorAll('#search-results ul.search li a'))
      .map(a => a.getAttribute('href'))""")
    found = [urlsplit(h).path.split('/')[-1] for h in hits]
    if want not in found: return [f'search for {term!r} does not find {want} (it finds {found[:8]})']
    return []


def check_site(site: Path, pages: list, folded: dict | None = None, search: tuple | None = None,
               artifacts: Path | None = None, chromium: str | None = None, visit: list | None = None) -> list:
    """Every problem found in the site at `site`. `pages`: (title, page) of the landing page, then of every
    page the sidebar lists, in order. `folded`: {page: how many folded solutions it holds} (others hold none).
    `search`: (term, page) that the search must find. Screenshots (landing, first page with a folded solution,
    an opened solution) go to `artifacts`. `visit`: the pages to open (default: all); links are checked on
    all."""
    from playwright.sync_api import sync_playwright
    site, folded = Path(site).resolve(), folded or {}
    problems = link_problems(site)
    server = _serve(site)
    base = f'http://127.0.0.1:{server.server_port}/'
    shots = {}
    if artifacts:
        shutil.rmtree(artifacts, ignore_errors=True)
        chapter = next((p for _, p in pages if folded.get(p)), None)
        shots = {pages[0][1]: artifacts / 'landing.png', chapter: artifacts / 'chapter.png',
                 'solution': artifacts / 'solution.png'}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium or find_chromium(), args=_LAUNCH_ARGS)
            ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
            external = []

            def _route(route):  # everything a page needs must come from the site itself
                if route.request.url.startswith(base): return route.continue_()
                external.append(route.request.url)
                route.abort()
            ctx.route('**/*', _route)
            if visit is None:
                listed = [p for _, p in pages]
                visit = listed + [r for r in html_pages(site) if r not in listed]
            for rel in visit + (['search'] if search else []):
                page = ctx.new_page()
                n = len(external)
                if rel == 'search': problems += _search_problems(page, base, *search)
                else: problems += _check_page(page, rel, base, pages, folded.get(rel, 0), shots)
                problems += [f'{rel}: requested {u} from another host (blocked: a reader behind a firewall '
                             'cannot)' for u in external[n:]]
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return problems


if __name__ == '__main__':
    import argparse
    from docsite import site_pages, folded_solutions, chapter_page
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_docs', help='the built site (default: _docs)')
    ap.add_argument('--artifacts', default='_artifacts/site', help='where the screenshots go')
    args = ap.parse_args()
    if not find_chromium(): sys.exit('site_check: no Chromium: install chromium, or set NANOVLM_CHROMIUM')
    search = (SEARCH[0], chapter_page(SEARCH[1]))
    found = check_site(Path(args.site), site_pages(), folded_solutions(), search, Path(args.artifacts))
    print('\n'.join(found) or f'{args.site}: no problems; screenshots in {args.artifacts}')
    sys.exit(1 if found else 0)
