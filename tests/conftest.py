import sys
import pytest
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers (nbsync) by name


@pytest.fixture
def users_tree(tmp_path_factory, monkeypatch):
    """A directory of the test's own, made the working directory, holding a user's finished run in runs/tiny (what the
    README's first command leaves): a test that uses it may depend neither on that run nor on the repository's tree."""
    d = tmp_path_factory.mktemp('cwd')
    (d / 'runs' / 'tiny').mkdir(parents=True)
    (d / 'runs' / 'tiny' / 'model.safetensors').write_text("the user's own run")
    monkeypatch.chdir(d)
    return d
