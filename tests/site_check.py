"""Checks a built course site the way a reader meets it: served over HTTP and opened in headless Chromium.

`python tests/site_check.py [_docs] [--artifacts _artifacts/site]` checks the site `nbdev_docs` built against
the chapter notebooks, prints one line per problem and exits 1 if there is any. It reports internal links
that lead nowhere (a missing file, or an `#anchor` its target lacks: every HTML file is scanned), and, on the
landing page and every chapter page: console errors, pictures that did not load, requests to other hosts (a
reader behind a firewall cannot make them) and a sidebar that does not list the chapters in reading order.
Screenshots of the landing page and the first chapter go to the artifacts folder.
"""
import functools, os, re, shutil, sys, threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

# What Quarto's sidebar.ejs renders for a page entry; section headers without a page are <button>s.
SIDEBAR_LINKS = '#quarto-sidebar a.sidebar-link'
_LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run']
# Attributes that make the browser fetch or navigate to another file of the site.
_REF_ATTRS = {'a': 'href', 'area': 'href', 'link': 'href', 'img': 'src', 'script': 'src', 'iframe': 'src',
              'source': 'src', 'video': 'src', 'audio': 'src', 'embed': 'src', 'track': 'src'}


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


def link_problems(site: Path) -> list:
    "Every reference from an HTML file of `site` to a missing file, or to an `#anchor` its target lacks."
    site = Path(site).resolve()
    _parse.cache_clear()
    problems = []
    for page in sorted(site.rglob('*.html')):
        rel = page.relative_to(site).as_posix()
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


_norm = lambda s: ' '.join(s.replace('`', '').split())

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


def _check_page(page, rel: str, base: str, pages: list, shot: Path | None) -> list:
    "Open one page and report what went wrong on it."
    problems = []

    def _console(m):
        if m.type == 'error': problems.append(f'{rel}: console error: {m.text} ({m.location.get("url", "")})')

    def _response(r):
        if r.status >= 400: problems.append(f'{rel}: HTTP {r.status} for {r.url.removeprefix(base)}')
    page.on('console', _console)
    page.on('response', _response)
    page.on('pageerror', lambda e: problems.append(f'{rel}: uncaught exception: {e}'))
    url = base + rel
    resp = page.goto(url, wait_until='load', timeout=60_000)
    if resp is None or not resp.ok: return problems  # the HTTP error is already reported
    problems += [f'{rel}: image not loaded: {src}' for src in page.evaluate(_IMAGES_JS)]
    problems += _sidebar_problems(rel, page.evaluate(_SIDEBAR_JS), pages, page.url, base)
    page.wait_for_load_state('networkidle', timeout=30_000)  # late requests and console errors
    if shot:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    return problems


def check_site(site: Path, pages: list, artifacts: Path | None = None, chromium: str | None = None) -> list:
    """Every problem found in the site at `site`; `pages` is (title, page path) of the landing page, then of
    every chapter in reading order. Screenshots of the landing page and the first chapter go to `artifacts`.
    """
    from playwright.sync_api import sync_playwright
    site = Path(site).resolve()
    problems = link_problems(site)
    server = _serve(site)
    base = f'http://127.0.0.1:{server.server_port}/'
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
            for i, (_, rel) in enumerate(pages):
                shot = artifacts / f'{i:02d}-{Path(rel).stem}.png' if artifacts and i < 2 else None
                page = ctx.new_page()
                n = len(external)
                problems += _check_page(page, rel, base, pages, shot)
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
    from docsite import site_pages
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_docs', help='the built site (default: _docs)')
    ap.add_argument('--artifacts', default='_artifacts/site', help='where the screenshots go')
    args = ap.parse_args()
    if not find_chromium(): sys.exit('site_check: no Chromium: install chromium, or set NANOVLM_CHROMIUM')
    found = check_site(Path(args.site), site_pages(), Path(args.artifacts))
    print('\n'.join(found) or f'{args.site}: no problems; screenshots in {args.artifacts}')
    sys.exit(1 if found else 0)
