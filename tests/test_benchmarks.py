"`nanovlm-bench` end to end on the tiny preset: the JSON it writes, and the flags it refuses."
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch
from nanovlm.benchmarks import bench_cli, MEASUREMENT_KEYS
from nanovlm.training import native_bf16

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ('name', 'train_tokens_per_s', 'prefill_ms', 'decode_tokens_per_s_cache', 'decode_tokens_per_s_recompute',
            'peak_memory_mb', 'mfu', 'peak_flops', 'decode_mfu', 'decode_bytes_per_s', 'bandwidth_fraction')
PRECISIONS = ['fp32', 'bf16'] if native_bf16('cpu') else ['fp32']  # bf16 columns by default where it is native
TRAIN = ('step_ms', 'train_tokens_per_s', 'achieved_tflops')
GEN = ('prefill_ms', 'decode_tokens_per_s_cache', 'decode_tokens_per_s_recompute')


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp('bench') / 'bench.json'
    threads = torch.get_num_threads()
    assert bench_cli(['--preset', 'tiny', '--device', 'cpu', '--threads', '1', '--batch-size', '2', '--repeats', '2', '--warmup', '1',
                         '--new-tokens', '12', '--prompt-len', '8', '--gen-batch-sizes', '1,4', '--peak-size', '512',
                         '--json', str(path)]) is None  # a console script's exit status 0
    report = json.loads(path.read_text())
    assert torch.get_num_threads() == threads  # --threads applies to the run only
    assert [p.name for p in path.parent.iterdir()] == ['bench.json']  # no temporary file left behind
    return report


def test_top_level(report):
    assert report['device'] == 'cpu' and report['preset'] == 'tiny'
    assert isinstance(report['device_name'], str) and report['device_name']
    assert report['torch_version'] == torch.__version__
    assert len(report['date']) == 10 and report['date'][4] == '-'  # ISO date
    assert [m['name'] for m in report['measurements']] == ([f'train eager {p}' for p in PRECISIONS] +
                                                           [f'generate {p} b{B}' for p in PRECISIONS for B in (1, 4)])
    assert report['settings']['threads'] == 1 and '(1 thread)' in report['device_name']


def test_every_key_in_every_measurement(report):
    for m in report['measurements']:
        assert set(REQUIRED) <= set(m) and set(m) == set(MEASUREMENT_KEYS), m['name']


def test_yardsticks(report):
    "The matmul peak of every precision timed and the copy bandwidth, measured in the same run."
    peaks = report['peaks']
    assert list(peaks['matmul']) == PRECISIONS
    for m in peaks['matmul'].values(): assert m['n'] == 512 and 0 < m['flops_min'] <= m['flops'] <= m['flops_max']
    assert peaks['copy']['mib'] > 0 and peaks['copy']['bytes_per_s'] > 0


def test_values(report):
    n = len(PRECISIONS)
    trains, gen = report['measurements'][:n], report['measurements'][n:]
    for train, p in zip(trains, PRECISIONS):
        assert train['peak_flops'] == report['peaks']['matmul'][p]['flops']  # each precision against its own peak
        # No `mfu <= 1`: the peak and the step are timed at different moments, and on a busy machine a slowed
        # peak can put a fast step above it; the test checks the arithmetic, the benchmark reports the figures.
        assert 0 < train['mfu'] and train['mfu_min'] <= train['mfu'] <= train['mfu_max']
        assert train['mfu'] == pytest.approx(train['achieved_tflops'] * 1e12 / train['peak_flops'])
    train = trains[0]
    for k in TRAIN:
        assert isinstance(train[k], float) and train[k] > 0, k
        if k + '_min' in train: assert train[k + '_min'] <= train[k] <= train[k + '_max'], k
    assert train['tokens_per_sample'] == 16 + 48 and train['batch_size'] == 2
    assert train['prefill_ms'] is None and train['decode_tokens_per_s_cache'] is None
    assert train['peak_memory_mb'] > 0 and train['peak_memory_kind'] == 'process_peak_rss'
    for g, B in zip(gen, (1, 4) * n):
        assert g['batch_size'] == B and g['prompt_tokens'] == 16 + 8 and g['new_tokens'] == 12
        if g['dtype'] == 'fp32': assert g['tokens_identical'] is True  # bf16 may flip a near-tie (chapter 9)
        assert g['train_tokens_per_s'] is None and g['mfu'] is None
        assert g['copy_bytes_per_s'] == report['peaks']['copy']['bytes_per_s']
        if g['decode_tokens_per_s_cache'] is not None:
            assert 0 < g['decode_mfu'] and 0 < g['prefill_mfu'] and g['decode_bytes_per_s'] > 0
            assert g['bandwidth_fraction'] == pytest.approx(g['decode_bytes_per_s'] / g['copy_bytes_per_s'])
        for k in GEN:
            if g[k] is None: assert 'not measurable' in g['note'], (g['name'], k)  # only on a very busy machine
            else: assert isinstance(g[k], float) and g[k_min := k + '_min'] <= g[k] <= g[k + '_max'] and g[k_min] > 0, k
        assert g['peak_memory_mb'] > 0


def test_mfu_with_peak_flops(tmp_path, capsys):
    "--peak-flops replaces the measured peak (a datasheet figure, say) for every precision."
    bench_cli(['--preset', 'tiny', '--device', 'cpu', '--threads', '1', '--skip-generate', '--batch-size', '1', '--repeats', '1',
               '--warmup', '0', '--no-bf16', '--peak-flops', '1e12', '--json', str(tmp_path / 'b.json')])
    out = capsys.readouterr().out
    assert out.startswith('nanovlm-bench: preset tiny on cpu') and '| train eager fp32 | 1 | 64 |' in out
    assert 'yardsticks: matmul peak fp32 1 TFLOP/s (given)' in out
    r = json.loads((tmp_path / 'b.json').read_text())
    m = r['measurements'][0]
    assert r['peaks'] == {'matmul': {'fp32': {'flops': 1e12, 'given': True}}, 'copy': None}
    assert m['mfu'] == pytest.approx(m['achieved_tflops'])


@pytest.mark.parametrize('argv, msg', [
    (['--preset', 'huge'], "unknown preset 'huge'"),
    (['--batch-size', '0'], 'argument --batch-size: must be >= 1, got 0'),
    (['--batch-size', 'four'], "argument --batch-size: expected a whole number, got 'four'"),
    (['--gen-batch-sizes', '1,0'], 'argument --gen-batch-sizes: must be >= 1, got 0'),
    (['--device', 'gpu'], "unknown device 'gpu'"),
    (['--new-tokens', '1'], 'must be >= 2'),
    (['--peak-size', '0'], 'argument --peak-size: must be >= 1, got 0'),
    (['--new-tokens', '300'], "exceed the preset's lm_max_position_embeddings=256"),
    (['--skip-train', '--skip-generate'], 'leave nothing to measure'),
    (['--json', '/nonexistent/dir/b.json'], 'directory /nonexistent/dir does not exist'),
])
def test_bad_flags(argv, msg, capsys):
    with pytest.raises(SystemExit) as e: bench_cli(argv)
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


def test_module_entry_point():
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, '-m', 'nanovlm.benchmarks', '--preset', 'huge'], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "nanovlm-bench: error: unknown preset 'huge'" in r.stderr


def test_gguf_decoding(tmp_path, capsys):
    "`--gguf FILE`: a Llama .gguf decoded at batch 1; the bytes per token are the file's decoder, read once."
    # a warm-up and 24 tokens: a cold prefill timed against warm decoding can leave no decode time on a busy machine
    pytest.importorskip('gguf')
    pytest.importorskip('transformers')
    from test_gguf import random_llama
    from nanovlm import gguf as G
    from nanovlm.benchmarks import decode_bytes_per_step
    from nanovlm.config import VLMConfig
    hf, config = random_llama()
    path = G.write_llama_gguf(tmp_path / 'tiny.gguf', config, hf.state_dict(), 'Q8_0')
    out = tmp_path / 'gguf.json'
    assert bench_cli(['--gguf', str(path), '--threads', '1', '--new-tokens', '24', '--prompt-len', '4', '--repeats', '2',
                      '--warmup', '1', '--peak-size', '256', '--json', str(out)]) is None
    report = json.loads(out.read_text())
    assert report['preset'] == 'tiny.gguf' and report['settings']['gguf'] == str(path)
    rows = report['measurements']
    assert [r['dtype'] for r in rows] == PRECISIONS and all(r['new_tokens'] == 24 for r in rows)
    c = config
    cfg = VLMConfig(lm_hidden_dim=c['hidden_size'], lm_inter_dim=c['intermediate_size'], lm_n_heads=c['num_attention_heads'],
                    lm_n_kv_heads=c['num_key_value_heads'], lm_n_blocks=c['num_hidden_layers'], lm_vocab_size=c['vocab_size'],
                    lm_tie_weights=c.get('tie_word_embeddings', True))
    for r in rows:
        assert r['decode_bytes_per_step'] == decode_bytes_per_step(cfg, 1, 4 + 12, 2 if r['dtype'] == 'bf16' else 4)
        assert r['decode_tokens_per_s_cache'] > 0 and 0 < r['bandwidth_fraction']
    assert 'tiny.gguf fp32' in capsys.readouterr().out


def test_gguf_refusals(tmp_path, capsys):
    "A missing .gguf is argparse's one-line error (exit 2); a damaged one is one line naming it (exit 1)."
    pytest.importorskip('gguf')
    with pytest.raises(SystemExit) as e: bench_cli(['--gguf', str(tmp_path / 'none.gguf')])
    assert e.value.code == 2 and 'argument --gguf: ' in capsys.readouterr().err
    bad = tmp_path / 'bad.gguf'
    bad.write_bytes(b'GGUF' + b'\0' * 12)
    with pytest.raises(SystemExit) as e: bench_cli(['--gguf', str(bad), '--threads', '1', '--peak-size', '64'])
    msg = str(e.value.code)
    assert msg.startswith('nanovlm-bench: error: ') and str(bad) in msg and '\n' not in msg
