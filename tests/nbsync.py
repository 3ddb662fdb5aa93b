"""Checks that the notebooks, the exported library and the README agree (CI fails on drift).

`python tests/nbsync.py readme` regenerates README.md from nbs/index.ipynb;
`python tests/nbsync.py check` prints any drift and exits non-zero if there is some.
"""
import json, posixpath, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_SKIP = {'.git', '.venv', 'venv', '__pycache__', '.pytest_cache', '.ipynb_checkpoints', '_proc', '_docs', 'runs'}


def _files(root: Path) -> list:
    "Files of the project: what git tracks or would track, else everything outside build/venv folders."
    try:
        out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=root, capture_output=True, check=True)
        return [p for p in out.stdout.decode().split('\0') if p and (root / p).is_file()]
    except (subprocess.CalledProcessError, FileNotFoundError):
        return [str(p.relative_to(root)) for p in root.rglob('*')
                if p.is_file() and not _SKIP & set(p.relative_to(root).parts) and not p.name.endswith('.egg-info')]


def scratch_copy(root: Path, dest: Path) -> Path:
    "Copy the project at `root` into `dest` (which must not exist)."
    for rel in _files(root):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)
    return dest


def _run(tool: str, cwd: Path):
    r = subprocess.run([str(BIN / tool)], cwd=cwd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'{tool} failed in {cwd}:\n{r.stdout}\n{r.stderr}')


def _ours(root: Path, pattern: str) -> set:
    "Paths under `root` matching `pattern`, relative to it, outside build, cache and Jupyter checkpoint folders."
    return {p.relative_to(root) for p in root.glob(pattern) if not _SKIP & set(p.relative_to(root).parts)}


def chapter_notebooks(root: Path = ROOT) -> list:
    "The chapter notebooks (nbs/NN_*.ipynb, not index.ipynb), never JupyterLab's .ipynb_checkpoints copies."
    return sorted(root / 'nbs' / p for p in _ours(root / 'nbs', '*.ipynb') if p.name != 'index.ipynb')


def _diff(a: Path, b: Path, pattern: str) -> list:
    "Relative paths matching `pattern` that differ between trees `a` and `b` (or exist in one only)."
    fa, fb = _ours(a, pattern), _ours(b, pattern)
    return sorted(str(p) for p in fa ^ fb) + sorted(str(p) for p in fa & fb if (a / p).read_bytes() != (b / p).read_bytes())


def _tool_drift(root: Path, tool: str, folder: str, pattern: str) -> list:
    "Files under `folder` that running `tool` on a clean copy of `root` would change."
    with tempfile.TemporaryDirectory() as d:
        tmp = scratch_copy(root, Path(d) / 'repo')
        _run(tool, tmp)
        return [f'{folder}/{p}' for p in _diff(root / folder, tmp / folder, pattern)]


def export_drift(root: Path = ROOT) -> list:
    "Library files that `nbdev_export` on a clean copy of `root` would change."
    return _tool_drift(root, 'nbdev_export', 'nanovlm', '**/*.py')


def clean_drift(root: Path = ROOT) -> list:
    "Notebooks that `nbdev_clean` on a clean copy of `root` would change."
    return _tool_drift(root, 'nbdev_clean', 'nbs', '**/*.ipynb')


def _from_root(markdown: str) -> str:
    "`markdown` of a notebook in nbs/ with its relative link and picture targets made relative to the root instead."
    return re.sub(r'(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)',
                  lambda m: m[1] + posixpath.normpath(posixpath.join('nbs', m[2])), markdown)


def render_readme(root: Path = ROOT) -> str:
    "README.md as generated from nbs/index.ipynb: markdown cells (links made relative to the root), shown code fenced."
    nb = json.loads((root / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))
    parts = ['<!-- Generated from nbs/index.ipynb by `python tests/nbsync.py readme`: edit the notebook, not this file. -->']
    for cell in nb['cells']:
        src = ''.join(cell['source']).strip()
        if cell['cell_type'] == 'markdown': parts.append(_from_root(src))
        elif cell['cell_type'] == 'code' and src and not src.startswith(('#| hide', '#|hide')):
            parts.append(f'```python\n{src}\n```')
    return '\n\n'.join(parts) + '\n'


def readme_drift(root: Path = ROOT) -> list:
    "['README.md'] if README.md is not what nbs/index.ipynb generates."
    readme = root / 'README.md'
    return [] if readme.is_file() and readme.read_text(encoding='utf-8') == render_readme(root) else ['README.md']


if __name__ == '__main__':
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'check'
    if cmd == 'readme':
        (ROOT / 'README.md').write_text(render_readme(), encoding='utf-8'); print('wrote README.md')
    elif cmd == 'check':
        drift = export_drift() + clean_drift() + readme_drift()
        print('\n'.join(drift) or 'in sync'); sys.exit(1 if drift else 0)
    else: sys.exit(f'usage: python tests/nbsync.py [check|readme], got {cmd!r}')
