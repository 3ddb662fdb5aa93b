"Appendix 1a (nanovlm.checkpoints): every loader decides 'Hub or path' alike, and fails alike for one cause."
from pathlib import Path
import pytest
import huggingface_hub.constants as hfc
from nanovlm.checkpoints import CheckpointFormatError, CheckpointNotFoundError, is_hub_id, find_checkpoint
from nanovlm.config import VLMConfig, get_preset
from nanovlm.vision_transformer import ViT
from nanovlm.language_model import LanguageModel
from nanovlm.vision_language_model import VisionLanguageModel
from nanovlm.data import get_tokenizer, shapes_tokenizer
from nanovlm.generate import load_for_inference

LOADERS = {
    'ViT.from_pretrained': lambda name: ViT.from_pretrained(VLMConfig(vit_model_type=name)),
    'LanguageModel.from_pretrained':
        lambda name: LanguageModel.from_pretrained(get_preset('tiny', lm_model_type=name)),
    'VisionLanguageModel.from_pretrained': lambda name: VisionLanguageModel.from_pretrained(name),
    'get_tokenizer': lambda name: get_tokenizer(name),
    'load_for_inference': lambda name: load_for_inference(name, device='cpu'),
}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    "Hub offline mode with an empty cache, in an empty working directory."
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(hfc, 'HF_HUB_OFFLINE', True)  # read once at import: patch the live value too
    monkeypatch.setattr(hfc, 'HF_HUB_CACHE', str(tmp_path / 'empty-cache'))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize('load', LOADERS.values(), ids=LOADERS)
def test_offline_and_not_cached_is_one_error(offline, load):
    "The same cause, the same type and message from every loader (it was a ConnectionError in one of them)."
    with pytest.raises(CheckpointNotFoundError) as e: load('nobody/not-cached')
    msg = str(e.value)
    assert "'nobody/not-cached' is not a local directory" in msg and 'offline mode is on' in msg
    assert 'no copy is in the local cache' in msg and 'hf download nobody/not-cached' in msg


@pytest.mark.parametrize('load', LOADERS.values(), ids=LOADERS)
def test_missing_local_path_is_one_error(offline, load, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match='nope\': no such local directory'):
        load(str(tmp_path / 'nope'))
    Path('runs').mkdir()                                  # owner/name-shaped, but runs/ is a folder here
    with pytest.raises(CheckpointNotFoundError, match="'runs/typo': no such local directory"):
        load('runs/typo')


def test_bad_weights_are_one_error(tmp_path):
    cfg = get_preset('tiny', vit_n_blocks=1, lm_n_blocks=1)
    VisionLanguageModel(cfg).save_pretrained(tmp_path)
    shapes_tokenizer(cfg.lm_vocab_size).save(tmp_path)
    w = tmp_path / 'model.safetensors'
    w.write_bytes(w.read_bytes()[:4096])
    for load in (VisionLanguageModel.from_pretrained, lambda d: load_for_inference(d, device='cpu')):
        with pytest.raises(CheckpointFormatError, match='model.safetensors is not a valid safetensors file'):
            load(tmp_path)
    assert issubclass(CheckpointFormatError, ValueError)
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


def test_one_rule_for_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id('HuggingFaceTB/SmolLM2-135M') and is_hub_id('lusxvr/nanoVLM-222M')
    for path in ('./x', '/abs/x', '~/x', 'a/b/c', 'gpt2', 'x y/z', 'owner/tok.json', Path('owner/name')):
        assert not is_hub_id(path), path
    (tmp_path / 'owner' / 'name').mkdir(parents=True)
    assert not is_hub_id('owner/name') and find_checkpoint('owner/name') == Path('owner/name')
