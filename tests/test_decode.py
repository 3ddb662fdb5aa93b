"""The one decode path (chapter 4's `decode_tokens` and `decode_step`) against the reference path.

The reference is the uncached loop in eager fp32 (`use_cache=False`: the whole sequence again at every
step). Every speed change of the decode path (a static KV cache written at a tensor slot, fused q/k/v and
gate/up weights, the one-query attention, `torch.compile`) must give the same greedy tokens, for the LM alone
and inside the VLM.
"""
import copy
import pytest
import torch
from torch._dynamo.testing import CompileCounter
from safetensors.torch import load_file

from nanovlm.config import get_preset
from nanovlm import language_model as L
from nanovlm.language_model import LanguageModel, decode_tokens, is_fused
from nanovlm.vision_language_model import VisionLanguageModel


def spread(model, std=0.3, seed=0):
    "Weights wider than the init's 0.02, so greedy tokens vary from step to step (a test that can fail)."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def batch(vocab, lengths, seed=1):
    "Left-padded random prompts: (B, T) ids and mask."
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids, am = torch.zeros(len(lengths), T, dtype=torch.long), torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, T - n:] = torch.randint(1, vocab, (n,), generator=g)
        am[i, T - n:] = 1
    return ids, am


@pytest.fixture(scope='module')
def lm():
    return spread(LanguageModel(get_preset('tiny', lm_use_tokens=True))).eval()


@pytest.fixture(scope='module')
def vlm():
    return spread(VisionLanguageModel(get_preset('tiny')), std=0.5).eval()


def test_lm_tokens_vary(lm):
    ids, am = batch(256, [7, 3, 5])
    out = lm.generate(ids, am, max_new_tokens=16, use_cache=False)
    assert all(len(set(row.tolist())) > 4 for row in out)  # varied tokens: the comparisons below can fail


@pytest.mark.parametrize('compile', [False, True])
def test_lm_fast_path_matches_reference(lm, compile):
    ids, am = batch(256, [7, 3, 5])
    ref = lm.generate(ids, am, max_new_tokens=16, use_cache=False)
    assert torch.equal(lm.generate(ids, am, max_new_tokens=16, compile=compile), ref)
    assert torch.equal(lm.generate(ids[:1], max_new_tokens=16, compile=compile), ref[:1])  # no mask, one row


@pytest.mark.parametrize('compile', [False, True])
def test_vlm_fast_path_matches_reference(vlm, compile):
    ids, am = batch(256, [6, 2])
    S = vlm.cfg.vit_img_size
    img = torch.rand(2, 3, S, S, generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=12, greedy=True, eos_token_id=-1)
    ref = vlm.generate(ids, img, am, use_cache=False, **kw)
    assert len(set(ref[0].tolist())) > 3
    assert torch.equal(vlm.generate(ids, img, am, compile=compile, **kw), ref)


def test_one_graph_for_every_step(lm):
    "The decode step compiles once (fullgraph: no graph break), whatever the step: no recompile per token."
    cnt = CompileCounter()
    step = torch.compile(L.decode_step, backend=cnt, fullgraph=True, dynamic=False)
    ids, am = batch(256, [7, 3])
    ref = lm.generate(ids, am, max_new_tokens=10)
    saved = dict(L._COMPILED)
    L._COMPILED['step'] = step
    try: out = lm.generate(ids, am, max_new_tokens=10, compile=True)
    finally:
        L._COMPILED.clear()
        L._COMPILED.update(saved)
    assert torch.equal(out, ref)
    assert cnt.frame_count == 1  # 9 decode steps, one compilation


def test_decode_tokens_stops_and_flags():
    "The loop's EOS stop and NaN flag, shared by both models: EOS after a row's own; bad logits flagged."
    lm = spread(LanguageModel(get_preset('tiny', lm_use_tokens=True))).eval()
    ids, am = batch(256, [4, 4])
    free, bad = decode_tokens(lm, ids, am, 12)
    assert not bad
    eos = int(free[0, 2])
    out, _ = decode_tokens(lm, ids, am, 12, eos_token_id=eos, stop_check_interval=1)
    stop = int((free[0] == eos).nonzero()[0])
    assert torch.equal(out[0, :stop + 1], free[0, :stop + 1]) and (out[0, stop:] == eos).all()
    with torch.no_grad(): lm.norm.weight.fill_(float('nan'))
    assert decode_tokens(lm, ids, am, 3)[1]


def test_fused_weights_are_the_parameters():
    "q/k/v and gate/up are stored as one matrix each; parameters, their names and the files are unchanged."
    lm = LanguageModel(get_preset('tiny', lm_use_tokens=True))
    a, m = lm.blocks[0].attn, lm.blocks[0].mlp
    assert a.q_proj.weight.data_ptr() == a.qkv_weight.data_ptr()
    assert is_fused(a.qkv_weight, a.q_proj, a.k_proj, a.v_proj)
    assert is_fused(m.gate_up_weight, m.gate_proj, m.up_proj)
    assert 'blocks.0.attn.q_proj.weight' in lm.state_dict() and not any('qkv' in k for k in lm.state_dict())
    with torch.no_grad(): a.k_proj.weight[0, 0] = 7.0
    assert a.qkv_weight[a.q_proj.weight.shape[0], 0] == 7.0  # one storage
    half = lm.to(torch.bfloat16)  # .to() makes new tensors: fused again
    assert half.blocks[0].attn.qkv_weight.dtype == torch.bfloat16
    assert is_fused(half.blocks[0].attn.qkv_weight, half.blocks[0].attn.q_proj, half.blocks[0].attn.k_proj,
                    half.blocks[0].attn.v_proj)


def test_checkpoint_round_trip_with_fused_weights(tmp_path):
    vlm = spread(VisionLanguageModel(get_preset('tiny')), std=0.5).eval()
    d = vlm.save_pretrained(tmp_path / 'ckpt')
    sd = load_file(d / 'model.safetensors')
    assert 'decoder.blocks.0.attn.q_proj.weight' in sd
    assert not any('qkv_weight' in k or 'gate_up' in k for k in sd)
    back = VisionLanguageModel.from_pretrained(d).eval()
    ids, am = batch(256, [5, 3])
    img = torch.rand(2, 3, vlm.cfg.vit_img_size, vlm.cfg.vit_img_size)
    kw = dict(max_new_tokens=8, greedy=True, eos_token_id=-1)
    assert torch.equal(back.generate(ids, img, am, **kw), vlm.generate(ids, img, am, **kw))


def test_stale_fusion_is_refused_and_rebuilt():
    "After a deepcopy the copy's parameters no longer view its fused matrices: decoding fuses them again."
    lm = spread(LanguageModel(get_preset('tiny', lm_use_tokens=True))).eval()
    twin = copy.deepcopy(lm)
    a = twin.blocks[0].attn
    assert not is_fused(a.qkv_weight, a.q_proj, a.k_proj, a.v_proj)
    with torch.no_grad():
        for p in twin.parameters(): p.mul_(1.5)  # trained, say: the stale fused copy would answer as `lm`
    ids, am = batch(256, [6, 4])
    ref = twin.generate(ids, am, max_new_tokens=10, use_cache=False)
    assert torch.equal(twin.generate(ids, am, max_new_tokens=10), ref)
    assert is_fused(a.qkv_weight, a.q_proj, a.k_proj, a.v_proj)


def test_training_gradients_reach_the_parameters():
    "Training uses the three projections, not the fused matrix: every weight gets a gradient."
    lm = LanguageModel(get_preset('tiny', lm_use_tokens=True)).train()
    ids = torch.randint(0, 256, (2, 6))
    lm(ids).float().pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lm.parameters())


def test_bf16_and_autocast_decode(lm):
    "bf16 weights, and fp32 weights under bf16 autocast (as evaluation in training): cached = uncached."
    ids, am = batch(256, [7, 3, 5])
    half = copy.deepcopy(lm).to(torch.bfloat16)
    ref = half.generate(ids, am, max_new_tokens=8, use_cache=False)
    assert torch.equal(half.generate(ids, am, max_new_tokens=8), ref)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = lm.generate(ids, am, max_new_tokens=8)
    assert out.shape == (3, 8)
