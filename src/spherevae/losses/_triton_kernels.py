"""The Triton kernels behind :mod:`spherevae.losses.kernels` (imported only when they run,
so that triton stays optional). See that module for what each kernel computes."""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "backward_kernel",
    "finalize_kernel",
    "stats_kernel",
]


@triton.jit
def _tile(x_ptr, row0, n_rows, n_cols, stride_g, stride_b, ROWS: tl.constexpr,
          BLOCK_N: tl.constexpr):
    """Load one ``(ROWS, BLOCK_N)`` tile of group ``program_id(0)`` and compute
    ``xs = x / s``, ``1 / T_k`` (0 on zero tails), the cosines and ``|x|``."""
    g = tl.program_id(1)
    rows = row0 + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    offs = g * stride_g + rows[:, None] * stride_b + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.max(tl.abs(x), axis=1)
    s = tl.where(s > 0, s, 1.0)
    xs = x / s[:, None]
    tails = tl.cumsum(xs * xs, axis=1, reverse=True)
    pos = tails > 0
    inv_t = tl.where(pos, 1.0 / tl.sqrt(tl.where(pos, tails, 1.0)), 0.0)
    # A nonzero x_k whose square underflows has a "zero" tail: +-1, as torch's inf.
    cos = tl.where(pos, xs * inv_t, tl.where(xs < 0, -1.0, 1.0))
    radius = tl.sqrt(tl.sum(xs * xs, axis=1)) * s
    return rows, cols, mask, offs, xs, s, inv_t, cos, radius

@triton.jit
def _coords(cos, radius, cols, n_cols):
    """Columns ``0..n-2`` the cosines, column ``n-1`` the radius (``_FusedPriorLoss``)."""
    return tl.where(cols[None, :] == n_cols - 1, radius[:, None], cos)

@triton.jit
def stats_kernel(x_ptr, mean_ptr, m2_ptr, n_rows, n_cols, stride_g, stride_b, n_blocks,
                 ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    blk = tl.program_id(0)
    g = tl.program_id(1)
    _rows, cols, mask, _offs, _xs, _s, _inv_t, cos, radius = _tile(
        x_ptr, blk * ROWS, n_rows, n_cols, stride_g, stride_b, ROWS, BLOCK_N)
    c = _coords(cos, radius, cols, n_cols)
    valid = mask.to(tl.float32)
    count = tl.minimum(n_rows - blk * ROWS, ROWS).to(tl.float32)
    mean = tl.sum(c * valid, axis=0) / count
    dev = (c - mean[None, :]) * valid
    m2 = tl.sum(dev * dev, axis=0)
    out = (g * n_blocks + blk) * BLOCK_N + cols
    tl.store(mean_ptr + out, mean)
    tl.store(m2_ptr + out, m2)

@triton.jit
def finalize_kernel(mean_ptr, m2_ptr, a_ptr, b_ptr, alpha_ptr, beta_ptr, loss_ptr,
                    gmean_ptr, dmean_ptr, dvar_ptr, n_rows, n_cols, GROUPS: tl.constexpr,
                    N_BLOCKS: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr, TINY: tl.constexpr):
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < n_cols
    total = tl.sum(tl.zeros([BLOCK_N], tl.float32), axis=0)
    for g in tl.static_range(GROUPS):
        base = g * N_BLOCKS * BLOCK_N
        mean = tl.load(mean_ptr + base + cols)
        m2 = tl.load(m2_ptr + base + cols)
        count = tl.minimum(n_rows, ROWS).to(tl.float32)
        for blk in range(1, N_BLOCKS):
            nb = tl.minimum(n_rows - blk * ROWS, ROWS).to(tl.float32)
            mb = tl.load(mean_ptr + base + blk * BLOCK_N + cols)
            delta = mb - mean
            merged = count + nb
            mean = mean + delta * (nb / merged)
            m2 = m2 + tl.load(m2_ptr + base + blk * BLOCK_N + cols) + delta * delta * (count * nb / merged)
            count = merged
        var = m2 / count
        p = g * n_cols + cols
        a = tl.load(a_ptr + p, mask=cmask, other=0.0)
        b = tl.load(b_ptr + p, mask=cmask, other=0.0)
        alpha = tl.load(alpha_ptr + p, mask=cmask, other=0.0)
        beta = tl.load(beta_ptr + p, mask=cmask, other=0.0)
        std = tl.sqrt(tl.maximum(var, TINY))
        positive = b > 0
        err = tl.where(positive, (std - b) * (std - b), var)
        diff = mean - a
        total += tl.sum(tl.where(cmask, alpha * diff * diff + beta * err, 0.0), axis=0)
        tl.store(gmean_ptr + p, mean, mask=cmask)
        tl.store(dmean_ptr + p, 2.0 * alpha * diff, mask=cmask)
        tl.store(dvar_ptr + p, beta * tl.where(positive, 1.0 - b / std, 1.0), mask=cmask)
    tl.store(loss_ptr, total)

@triton.jit
def backward_kernel(x_ptr, grad_ptr, gout_ptr, gmean_ptr, dmean_ptr, dvar_ptr, n_rows,
                    n_cols, stride_g, stride_b, ROWS: tl.constexpr, BLOCK_N: tl.constexpr):
    blk = tl.program_id(0)
    g = tl.program_id(1)
    _rows, cols, mask, offs, xs, s, inv_t, cos, radius = _tile(
        x_ptr, blk * ROWS, n_rows, n_cols, stride_g, stride_b, ROWS, BLOCK_N)
    c = _coords(cos, radius, cols, n_cols)
    p = g * n_cols + cols
    cmask = cols < n_cols
    gmean = tl.load(gmean_ptr + p, mask=cmask, other=0.0)
    dmean = tl.load(dmean_ptr + p, mask=cmask, other=0.0)
    dvar = tl.load(dvar_ptr + p, mask=cmask, other=0.0)
    upstream = tl.load(gout_ptr).to(tl.float32) / n_rows
    dc = upstream * (dmean[None, :] + 2.0 * dvar[None, :] * (c - gmean[None, :]))
    is_angle = cols[None, :] < n_cols - 1
    w = tl.where(is_angle, dc * inv_t, 0.0)  # g_k / T_k
    prefix = tl.cumsum(w * inv_t * cos, axis=1)  # sum_{k <= j} g_k c_k / T_k^2
    grad = (w - xs * prefix) / s[:, None]
    # The radius column: r = s * T_1, so dr/dx = xs / T_1.
    g_r = tl.sum(tl.where(cols[None, :] == n_cols - 1, dc, 0.0), axis=1)
    t1 = tl.sum(tl.where(cols[None, :] == 0, inv_t, 0.0), axis=1)
    grad += xs * (g_r * t1)[:, None]
    tl.store(grad_ptr + offs, grad, mask=mask)
