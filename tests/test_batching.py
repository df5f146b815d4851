"""The block engine: progress reports, the item layout, canonical convolutions in loop bodies."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import xjax
from tests.helpers import conv_model, conv_params, images
from xjax._internal.batching import add_items, add_rows, item_layout, per_input, progress, scan_items
from xjax._internal.canonical import canonical_convs


class Counter:
    def __init__(self):
        self.planned_blocks, self.done_blocks = 0, 0

    def planned(self, blocks):
        self.planned_blocks += blocks

    def done(self):
        self.done_blocks += 1


def test_progress_counts_every_block_of_a_jitted_explainer():
    params, x, y = conv_params(), images(3), jnp.array([0, 1, 2], jnp.int32)
    # sobol, Jansen design: 8 x (d + 2) = 48 rows per input (d = 2 x 2 cells); blocks of 5
    # consecutive rows span inputs: 3 x 48 = 144 rows take ceil(144 / 5) = 29 blocks
    e = xjax.attributions.sobol(conv_model, grid_size=2, nb_design=8, batch_size=5)
    f = jax.jit(lambda p, a, b: e(p, a, b))
    plain = f(params, x, y)                     # traced outside: reports nothing
    sink = Counter()
    g = jax.jit(lambda p, a, b: e(p, a, b))
    with progress(sink):
        reported = g(params, x, y)
        jax.effects_barrier()
    assert sink.planned_blocks == 29 and sink.done_blocks == 29
    np.testing.assert_array_equal(reported, plain)   # reporting does not change the result
    g(params, x, y)                               # compiled once; still reports outside
    jax.effects_barrier()
    assert sink.done_blocks == 58 and sink.planned_blocks == 29
    f(params, x, y)
    jax.effects_barrier()
    assert sink.done_blocks == 58


def test_counting_progress_adds_nothing_to_the_program():
    """``report=False`` counts the blocks at trace time and leaves the program as traced outside
    (no host callback, so it can go to the persistent compilation cache)."""
    params, x, y = conv_params(), images(3), jnp.array([0, 1, 2], jnp.int32)
    e = xjax.attributions.sobol(conv_model, grid_size=2, nb_design=8, batch_size=5)
    def program():                    # a new function each time: traces are cached per function
        return str(jax.make_jaxpr(lambda p, a, b: e(p, a, b))(params, x, y))

    plain = program()
    counting, reporting = Counter(), Counter()
    with progress(counting, report=False):
        counted = program()
    with progress(reporting):
        reported = program()
    assert counting.planned_blocks == reporting.planned_blocks == 29   # as in the test above
    assert counted == plain and "callback" not in counted
    assert "callback" in reported and counting.done_blocks == 0


def test_progress_counts_chunked_calls():
    sink = Counter()
    e = xjax.attributions.grad_cam(lambda p, a: a * p["w"], lambda p, a: a.mean((1, 2)),
                                   batch_size=2)
    x = jnp.full((5, 4, 4, 3), 0.5)
    with progress(sink):
        jax.jit(lambda a: e({"w": jnp.ones(())}, a, jnp.zeros(5, jnp.int32)))(x)
        jax.effects_barrier()
    assert sink.planned_blocks == 3 and sink.done_blocks == 3   # ceil(5 / 2) chunks


# --- item layout: blocks that span inputs ---------------------------------------------------

def _brute_layout(n, s, block, blocks):
    """The inputs each block of ``block`` consecutive items touches, by enumeration."""
    items = n * s
    return [sorted({i // s for i in range(j * block, min((j + 1) * block, items))})
            for j in range(blocks)]


@pytest.mark.parametrize("n,s,b", [(1, 50, 32), (8, 50, 64), (3, 5, 7), (5, 1, 2), (4, 3, 100),
                                   (7, 13, 13), (2, 9, None), (6, 4, 1)])
def test_item_layout_matches_a_brute_force_enumeration(n, s, b):
    block, blocks, span, rows = item_layout(n, s, b)
    per_block = _brute_layout(n, s, block, blocks)
    cap = n * s if b is None else min(b, n * s)
    assert blocks * cap >= n * s > (blocks - 1) * cap           # as few calls as batch_size allows
    assert block <= cap and 0 <= blocks * block - n * s < blocks  # fewer padding items than blocks
    assert span == max(len(r) for r in per_block)
    # every block's inputs are consecutive, start at (j * block) // s and fit the accumulator
    for j, r in enumerate(per_block):
        assert r == list(range(r[0], r[-1] + 1)) and r[0] == (j * block) // s
        assert r[0] + span <= rows
    assert rows - span == per_block[-1][0]


def test_scan_items_visits_every_item_once():
    n, s, b = 5, 7, 6
    _, _, span, rows = item_layout(n, s, b)

    def step(acc, first, idx, smp, valid):
        hits = jax.ops.segment_sum(jnp.where(valid[:, None], jax.nn.one_hot(smp, s), 0.0),
                                   idx - first, num_segments=span)
        return add_rows(acc, first, hits)

    acc = jax.jit(lambda a: scan_items(step, a, n, s, b))(jnp.zeros((rows, s)))
    np.testing.assert_array_equal(acc[:n], np.ones((n, s)))
    np.testing.assert_array_equal(acc[n:], 0.0)


@pytest.mark.parametrize("offsets,span", [([0, 0, 0, 1, 1, 2], 3), ([0, 1, 2, 3], 4),
                                          ([1, 1, 1], 2)])
def test_per_input_sums_items_per_input_and_keeps_nan_in_its_row(offsets, span):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(len(offsets), 2, 3)).astype(np.float32)
    values[0, 1, 2] = np.nan                       # one item's NaN, at one pixel
    want = np.zeros((span, 2, 3), np.float64)
    for i, k in enumerate(offsets):                # float64 loop, NaN spreads only in its row
        want[k] += values[i]
    got = np.asarray(jax.jit(per_input, static_argnums=2)(jnp.asarray(offsets, jnp.int32),
                                                          jnp.asarray(values), span))
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert np.isnan(got).sum() == 1
    acc = add_items(jnp.ones((span + 3, 2, 3)), jnp.int32(2), jnp.asarray(offsets, jnp.int32),
                    jnp.asarray(values), span)
    np.testing.assert_allclose(np.asarray(acc)[2:2 + span], want + 1, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(np.asarray(acc)[:2], 1.0)


def test_per_input_builds_no_items_by_inputs_temporary():
    """64 items over 32 inputs of 64 x 64 values: the compiled sum needs no temporary as large
    as the values (a masked sum over items materializes 32 x 64 x 64 x 64 floats, 32 MB)."""
    offsets = jnp.repeat(jnp.arange(32, dtype=jnp.int32), 2)
    values = jnp.ones((64, 64, 64), jnp.float32)
    compiled = jax.jit(per_input, static_argnums=2).lower(offsets, values, 32).compile()
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < values.nbytes
    np.testing.assert_array_equal(compiled(offsets, values), np.full((32, 64, 64), 2.0))


def test_perturbation_blocks_span_inputs_and_run_at_the_full_batch():
    """3 images x 10 RISE masks at batch_size=8: 30 items in ceil(30 / 8) = 4 model calls of 8
    images (blocks cut across images), the same map as one unblocked call."""
    calls = []

    def model(p, x):
        calls.append(x.shape[0])                     # at trace time: rows per model call
        return conv_model(p, x)

    params, x, y = conv_params(), images(3), jnp.array([0, 1, 2], jnp.int32)
    sink = Counter()
    e = xjax.attributions.rise(model, nb_samples=10, grid_size=2, batch_size=8)
    with progress(sink, report=False):
        blocked = jax.jit(lambda p, a, b: e(p, a, b, key=jax.random.key(3)))(params, x, y)
    assert sink.planned_blocks == 4 and calls[-1] == 8
    whole = xjax.attributions.rise(model, nb_samples=10, grid_size=2, batch_size=None)(
        params, x, y, key=jax.random.key(3))
    assert calls[-1] == 30
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), rtol=1e-5, atol=1e-6)


def test_a_nan_score_stays_in_its_own_row_of_the_score_table():
    """Blocks of 4 items span inputs (3 inputs x 5 perturbations); the model's score is NaN on
    input 1 only (a finite image), and inputs 0 and 2 keep their exact scores."""
    from xjax.attributions._common import score_table

    def model(p, z):
        total = z.sum(axis=(1, 2, 3))
        return jnp.where(z[:, 0, 0, 0] > 0.5, jnp.nan, total)[:, None] * p

    x = jnp.full((3, 2, 2, 1), 0.1, jnp.float32).at[1, 0, 0, 0].set(0.9)
    y = jnp.zeros(3, jnp.int32)
    table = score_table(model, lambda logits, _: logits[:, 0], jnp.float32(1.0), x, y, 5,
                        lambda p: p.astype(jnp.float32), lambda xi, a: xi * (1.0 + a),
                        batch_size=4)
    want = 0.4 * (1.0 + np.arange(5.0))             # 4 pixels of 0.1, scaled by 1 + p
    np.testing.assert_allclose(np.asarray(table)[[0, 2]], [want, want], rtol=1e-6)
    assert np.isnan(np.asarray(table)[1]).all()


def test_gradient_blocks_spanning_inputs_keep_each_input_to_itself():
    # f(x) = sum(sqrt(x)) has an infinite gradient at 0; the input holding a 0 shares blocks
    # with its neighbours (S = 5 steps, blocks of 4 items) and must not spread inf or NaN.
    def model(p, x):
        return jnp.sqrt(x).sum(axis=(1, 2, 3))[:, None] * p

    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.0, (3, 2, 2, 1)), jnp.float32)
    x = x.at[1, 0, 0, 0].set(0.0)
    y = jnp.zeros(3, jnp.int32)
    e = xjax.attributions.integrated_gradients(model, steps=5, baseline=0.25, batch_size=4,
                                               rule="riemann_right", channel_reduction=None)
    maps = np.asarray(e(jnp.ones(()), x, y))
    # riemann_right: (x - x0) * mean_k 0.5 / sqrt(x0 + k/5 (x - x0)), k = 1..5, in float64
    x64 = np.asarray(x, np.float64)
    a = np.arange(1, 6)[:, None, None, None, None] / 5
    with np.errstate(divide="ignore"):
        want = (x64 - 0.25) * (0.5 / np.sqrt(0.25 + a * (x64 - 0.25))).mean(0)
    finite = np.isfinite(want)
    assert not finite[1, 0, 0, 0] and finite.sum() == want.size - 1
    np.testing.assert_allclose(maps[finite], want[finite], rtol=1e-5)
    assert np.isinf(maps[1, 0, 0, 0]) or np.isnan(maps[1, 0, 0, 0])
    unblocked = xjax.attributions.integrated_gradients(model, steps=5, baseline=0.25,
                                                       batch_size=None, rule="riemann_right",
                                                       channel_reduction=None)
    np.testing.assert_allclose(maps[finite], np.asarray(unblocked(jnp.ones(()), x, y))[finite],
                               rtol=1e-6)


# --- convolutions in canonical order inside block loops -------------------------------------

def _nchw_model(p, x):
    """A conv net written in NCHW / OIHW order (torch layout) with a strided and a grouped conv."""
    a = jnp.transpose(x, (0, 3, 1, 2))
    a = lax.conv_general_dilated(a, p["k1"], (2, 2), "SAME", dimension_numbers=("NCHW", "OIHW",
                                                                                 "NCHW"))
    a = jax.nn.relu(a)
    a = lax.conv_general_dilated(a, p["k2"], (1, 1), ((1, 1), (0, 2)), rhs_dilation=(1, 2),
                                 feature_group_count=2,
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return jnp.tanh(a).mean(axis=(2, 3))


def _nchw_params():
    rng = np.random.default_rng(4)
    return {"k1": jnp.asarray(rng.normal(size=(4, 3, 3, 3)), jnp.float32),
            "k2": jnp.asarray(rng.normal(size=(4, 2, 3, 3)), jnp.float32)}


def _conv_labels(hlo_text):
    return re.findall(r"convolution\([^\n]*dim_labels=([a-z0-9_>-]+)", hlo_text)


def test_canonical_convs_is_the_same_function_and_gradient():
    p, x = _nchw_params(), images(3)

    def g(z):
        return jax.grad(lambda a: _nchw_model(p, a)[:, 1].sum())(z)

    np.testing.assert_array_equal(jax.jit(canonical_convs(g))(x), jax.jit(g)(x))
    np.testing.assert_array_equal(canonical_convs(lambda a: _nchw_model(p, a))(x),
                                  _nchw_model(p, x))
    # second order through the rewrite (users differentiate through explainers) and vmap
    second = jax.grad(lambda q: canonical_convs(g)(x * q).sum())(jnp.float32(1.3))
    np.testing.assert_allclose(second, jax.grad(lambda q: g(x * q).sum())(jnp.float32(1.3)),
                               rtol=1e-5)
    np.testing.assert_array_equal(jax.vmap(canonical_convs(g))(x[:, None]),
                                  jax.vmap(g)(x[:, None]))


def test_canonical_convs_keeps_custom_derivative_rules():
    @jax.custom_jvp
    def f(a):
        return jnp.sin(a)

    f.defjvp(lambda primals, tangents: (f(primals[0]), 7.0 * tangents[0]))
    x = jnp.linspace(0.0, 1.0, 4)
    np.testing.assert_array_equal(jax.grad(lambda a: canonical_convs(f)(a).sum())(x), 7.0)


def test_block_loops_hand_xla_only_canonical_convolutions():
    # Inside a loop body XLA:CPU does not canonicalize convolutions (only the entry computation);
    # the backward pass of a conv puts the kernel in (spatial, O, I) order. After the rewrite
    # every convolution of the compiled explainer is NHWC x HWIO -> NHWC.
    p, x, y = _nchw_params(), images(4), jnp.array([0, 1, 2, 3], jnp.int32)
    e = xjax.attributions.smoothgrad(_nchw_model, nb_samples=6, batch_size=5)
    labels = _conv_labels(jax.jit(lambda a: e(p, a, y, key=jax.random.key(0))).lower(x)
                          .compile().as_text())
    assert labels and set(labels) == {"b01f_01io->b01f"}, labels

    def plain_scan(a):                        # the same loop without the rewrite
        g = jax.grad(lambda z: _nchw_model(p, z)[:, 0].sum())
        return jax.lax.map(g, a.reshape(2, 2, *a.shape[1:]))
    assert set(_conv_labels(jax.jit(plain_scan).lower(x).compile().as_text())) - {
        "b01f_01io->b01f"}
