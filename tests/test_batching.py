"""The block engine's progress reports (``xjax._internal.batching.progress``)."""

import jax
import jax.numpy as jnp
import numpy as np

import xjax
from tests.helpers import conv_model, conv_params, images
from xjax._internal.batching import progress


class Counter:
    def __init__(self):
        self.planned_blocks, self.done_blocks = 0, 0

    def planned(self, blocks):
        self.planned_blocks += blocks

    def done(self):
        self.done_blocks += 1


def test_progress_counts_every_block_of_a_jitted_explainer():
    params, x, y = conv_params(), images(3), jnp.array([0, 1, 2], jnp.int32)
    # sobol, Jansen design: 8 x (d + 2) = 48 rows per input (d = 2 x 2 cells); blocks of 5 rows
    # hold one input each, whose 48 rows take ceil(48 / 5) = 10 blocks: 3 x 10 = 30 blocks
    e = xjax.attributions.sobol(conv_model, grid_size=2, nb_design=8, batch_size=5)
    f = jax.jit(lambda p, a, b: e(p, a, b))
    plain = f(params, x, y)                     # traced outside: reports nothing
    sink = Counter()
    g = jax.jit(lambda p, a, b: e(p, a, b))
    with progress(sink):
        reported = g(params, x, y)
        jax.effects_barrier()
    assert sink.planned_blocks == 30 and sink.done_blocks == 30
    np.testing.assert_array_equal(reported, plain)   # reporting does not change the result
    g(params, x, y)                               # compiled once; still reports outside
    jax.effects_barrier()
    assert sink.done_blocks == 60 and sink.planned_blocks == 30
    f(params, x, y)
    jax.effects_barrier()
    assert sink.done_blocks == 60


def test_progress_counts_chunked_calls():
    sink = Counter()
    e = xjax.attributions.grad_cam(lambda p, a: a * p["w"], lambda p, a: a.mean((1, 2)),
                                   batch_size=2)
    x = jnp.full((5, 4, 4, 3), 0.5)
    with progress(sink):
        jax.jit(lambda a: e({"w": jnp.ones(())}, a, jnp.zeros(5, jnp.int32)))(x)
        jax.effects_barrier()
    assert sink.planned_blocks == 3 and sink.done_blocks == 3   # ceil(5 / 2) chunks
