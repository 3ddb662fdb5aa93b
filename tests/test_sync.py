"The notebooks are the only source: the library and README must be exactly what they generate."
import json, shutil
from pathlib import Path
import pytest
from nbsync import ROOT, scratch_copy, export_drift, clean_drift, readme_drift


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
