"Every chapter notebook runs top to bottom as a test (its cells assert with fastcore.test)."
import os, subprocess, sys
from pathlib import Path
import pytest
from nbsync import ROOT, chapter_notebooks

NOTEBOOKS = chapter_notebooks()


def test_every_chapter_is_found():
    assert [p.name for p in NOTEBOOKS][:2] == ['00a_shape_diagrams.ipynb', '01_config.ipynb']


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(nb):
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([str(Path(sys.executable).parent / 'nbdev_test'), '--path', str(nb)], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, f'{nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}'
