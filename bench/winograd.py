"""Winograd F(2x2,3x3) and F(4x4,3x3) against the direct 3x3 convolution, per VGG-19 layer.

A measurement for issue 29's float32 target on CPUs without AVX-512 (oneDNN has no
Winograd convolution there): each of the 13 convolutions up to conv5_1, forward and input
gradient (weights frozen, as in style transfer), timed as the engine runs them
(channels-last `nn.Conv2d`) and as Winograd written with torch operations (transforms as
small matrix products, the tile products as one batched matrix multiply; the input
gradient is itself a Winograd convolution with the flipped, transposed kernel). Prints each
layer's time, its error against the direct convolution, and the total of a hybrid that
takes the faster of the two per layer. Not used by the engine (yet): see docs/benchmarks.md.

    python bench/winograd.py [--width 384 --height 288]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F
torch.manual_seed(0)

def mats(m):
    if m == 2:
        BT = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]
        G = [[1,0,0],[.5,.5,.5],[.5,-.5,.5],[0,0,1]]
        AT = [[1,1,1,0],[0,1,-1,-1]]
    else:
        BT = [[4,0,-5,0,1,0],[0,-4,-4,1,1,0],[0,4,-4,-1,1,0],[0,-2,-1,2,1,0],[0,2,-1,-2,1,0],[0,4,0,-5,0,1]]
        G = [[1/4,0,0],[-1/6,-1/6,-1/6],[-1/6,1/6,-1/6],[1/24,1/12,1/6],[1/24,-1/12,1/6],[0,0,1]]
        AT = [[1,1,1,1,1,0],[0,1,-1,2,-2,0],[0,1,1,4,4,0],[0,1,-1,8,-8,1]]
    d = torch.float64
    return torch.tensor(BT, dtype=d), torch.tensor(G, dtype=d), torch.tensor(AT, dtype=d)

def weight_transform(w, m):  # w (Cout, Cin, 3, 3) -> (a*a, Cin, Cout)
    BT, G, AT = mats(m)
    a = m + 2
    u = torch.einsum('ik,ockl,jl->ijco', G, w.double(), G)
    return u.reshape(a * a, w.shape[1], w.shape[0]).float().contiguous()

def wino(x, U, m):
    """x: (N,H,W,C) contiguous; U (a*a, C, Cout); 3x3 conv, padding 1 -> (N,H,W,Cout)"""
    BT, G, AT = (t.float() for t in mats(m))
    a = m + 2
    N, H, W, C = x.shape
    Th, Tw = -(-H // m), -(-W // m)
    xp = F.pad(x, (0, 0, 1, Tw * m + 1 - W, 1, Th * m + 1 - H))
    d = torch.stack([xp[:, k:k + m * Th:m] for k in range(a)])          # (a, N, Th, Wp, C)
    t = (BT @ d.view(a, -1)).view(d.shape)
    e = torch.stack([t[:, :, :, k:k + m * Tw:m] for k in range(a)], 1)  # (a, a, N, Th, Tw, C)
    v = (BT @ e.view(a, a, -1)).view(a * a, N * Th * Tw, C)
    mm = torch.bmm(v, U)                                                 # (a*a, T, Cout)
    Cout = U.shape[2]
    y = (AT @ mm.view(a, -1)).view(m, a, -1)
    y = (AT @ y).view(m, m, N, Th, Tw, Cout)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(N, Th * m, Tw * m, Cout)
    return y[:, :H, :W]

class WinoConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, U, UT, bias, m):
        ctx.UT, ctx.m = UT, m
        y = wino(x.contiguous(), U, m)
        return (y + bias).contiguous()
    @staticmethod
    def backward(ctx, g):
        return wino(g.contiguous(), ctx.UT, ctx.m), None, None, None, None

def make(w, m):
    return weight_transform(w, m), weight_transform(w.flip(2, 3).transpose(0, 1), m)

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--height", type=int, default=288)
    args = ap.parse_args()
    H0, W0 = args.height, args.width
    flags = sorted({f for f in open("/proc/cpuinfo").read().split() if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")})
    print(f"cpu flags: {' '.join(flags)}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; {W0}x{H0}; ms for forward + input gradient, median of 5")
    layers = [(3,64,1),(64,64,1),(64,128,2),(128,128,2),(128,256,4),(256,256,4),(256,256,4),(256,256,4),(256,512,8),(512,512,8),(512,512,8),(512,512,8),(512,512,16)]
    tot = {"conv": 0, 2: 0, 4: 0, "best": 0}
    for cin, cout, s in layers:
        H, W = H0 // s, W0 // s
        w = torch.randn(cout, cin, 3, 3) / math.sqrt(cin * 9)
        b = torch.randn(cout)
        x = torch.randn(1, cin, H, W).contiguous(memory_format=torch.channels_last)
        g = torch.randn(1, cout, H, W).contiguous(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).requires_grad_(False)
        conv.weight.data.copy_(w); conv.bias.data.copy_(b)
        conv = conv.to(memory_format=torch.channels_last)
        def run_conv():
            xi = x.detach().requires_grad_(True)
            y = conv(xi); y.backward(g); return y, xi.grad
        row = [f"{cin:>4}->{cout:<4} {W}x{H}"]
        ref_y, ref_g = run_conv()
        def timeit(f):
            f(); ts = []
            for _ in range(5):
                t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
            return sorted(ts)[2]
        tc = timeit(run_conv); tot["conv"] += tc; row.append(f"conv {tc*1e3:7.1f}")
        best = tc
        for m in (2, 4):
            U, UT = make(w, m)
            xh = x.permute(0, 2, 3, 1); gh = g.permute(0, 2, 3, 1)
            def run_w():
                xi = xh.detach().requires_grad_(True)
                y = WinoConv.apply(xi, U, UT, b, m); y.backward(gh); return y, xi.grad
            y, gr = run_w()
            err = ((y.permute(0, 3, 1, 2) - ref_y).abs().max() / ref_y.abs().max()).item()
            errg = ((gr.permute(0, 3, 1, 2) - ref_g).abs().max() / ref_g.abs().max()).item()
            tw = timeit(run_w); tot[m] += tw
            row.append(f"F{m} {tw*1e3:7.1f} ({tc/tw:4.2f}x err {err:.1e} {errg:.1e})")
            best = min(best, tw)
        tot["best"] += best
        print("  ".join(row), flush=True)
    print("total ms", {str(k): round(v * 1e3, 1) for k, v in tot.items()},
          f"direct/F2 {tot['conv'] / tot[2]:.2f}x, direct/F4 {tot['conv'] / tot[4]:.2f}x, "
          f"direct/(faster per layer) {tot['conv'] / tot['best']:.2f}x")
