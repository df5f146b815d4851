"""Regenerate ``sobol_direction_numbers.npz`` (run once; needs scipy, a dev dependency).

    python -m xjax.gsa._make_direction_numbers

The primitive polynomials and initial direction numbers are Joe & Kuo's ``new-joe-kuo-6.21201``
table (S. Joe, F. Y. Kuo, "Constructing Sobol sequences with better two-dimensional
projections", SIAM J. Sci. Comput. 30, 2008), as scipy ships it. This script expands them into
the 30-bit direction integers ``V[dim, bit]`` by the Bratley-Fox recurrence

    m_k = m_{k-s} XOR (m_{k-s} << s) XOR  XOR_{i=1}^{s-1} c_i (m_{k-i} << i),   V_k = m_k << (30 - 1 - k)

for a polynomial ``x^s + c_1 x^{s-1} + ... + c_{s-1} x + 1``; dimension 0 is van der Corput.
"""

import os

import numpy as np

DIMS = 4096
BITS = 30


def expand(poly: np.ndarray, vinit: np.ndarray, dims: int = DIMS, bits: int = BITS) -> np.ndarray:
    v = np.zeros((dims, bits), np.uint64)
    v[0] = np.uint64(1) << (bits - 1 - np.arange(bits, dtype=np.uint64))
    for j in range(1, dims):
        p = int(poly[j])
        s = p.bit_length() - 1
        m = [int(a) for a in vinit[j, :s]]
        for k in range(s, bits):
            new = m[k - s] ^ (m[k - s] << s)
            for i in range(1, s):
                if (p >> (s - i)) & 1:
                    new ^= m[k - i] << i
            m.append(new)
        v[j] = [m[k] << (bits - 1 - k) for k in range(bits)]
    return v.astype(np.uint32)


if __name__ == "__main__":
    import scipy.stats

    table = np.load(os.path.join(os.path.dirname(scipy.stats.__file__),
                                 "_sobol_direction_numbers.npz"))
    v = expand(table["poly"], table["vinit"])
    out = os.path.join(os.path.dirname(__file__), "sobol_direction_numbers.npz")
    np.savez_compressed(out, v=v)
    print(out, v.shape)
