"""Batch-1 matrix-vector products in bf16, three ways: oneDNN, PyTorch's own one-row kernel, and the same product
written as a multiply and a sum that torch.compile (Inductor) turns into one generated C++ reduction loop.

    OMP_NUM_THREADS=1 taskset -c 1 python experiments/gemv_kernels.py

SmolLM2-135M's weight shapes (fused gate/up, down, fused q/k/v, the tied head); enough distinct weights of each
that they stream from memory, as in decoding. Prints GB/s of weights read (CPU time). Issue 28's question: is
there a stock route to llama.cpp's ~22 GB/s? Measured 2026-12-03 on the 2-core AMD EPYC with another job on the
other core: oneDNN 5-6.5, PyTorch's own kernel 10-12, Inductor's reduction 8-15 GB/s: no.
"""
import torch, time, torch.nn.functional as F
torch.set_num_threads(1)
torch.manual_seed(0)
def per_call(fn, ws, x, reps=5):
    for w in ws: fn(x,w)
    t=time.process_time()
    for _ in range(reps):
        for w in ws: fn(x,w)
    return (time.process_time()-t)/reps/len(ws)
lin=lambda x,w: F.linear(x,w)
red=torch.compile(lambda x,w: (w.float()*x.float()).sum(-1)[None].to(torch.bfloat16), dynamic=False)
for shape,n in [((3072,576),20),((576,1536),40),((960,576),60),((49152,576),2)]:
    ws=[torch.randn(*shape,dtype=torch.bfloat16) for _ in range(n)]
    x=torch.randn(1,shape[1],dtype=torch.bfloat16)
    nbytes=ws[0].numel()*2
    torch.backends.mkldnn.enabled=False
    t1=per_call(lin,ws,x)
    torch.backends.mkldnn.enabled=True
    t0=per_call(lin,ws,x)
    t2=per_call(red,ws,x)
    print(shape, f'oneDNN {nbytes/t0/1e9:.1f} GB/s, own kernel {nbytes/t1/1e9:.1f} GB/s, inductor mul+sum {nbytes/t2/1e9:.1f} GB/s')
