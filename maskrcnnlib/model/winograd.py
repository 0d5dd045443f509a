"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3) and F(6x6, 3x3), for
CPU inference.

A "same"-padded, stride-1 3x3 convolution computed on (m+2)x(m+2) input tiles (stride
m, the output tile's side) as

    Y = A^T [ (G g G^T) * (B^T d B) ] A

summed over input channels: (m+2)^2 matrix products [tiles, C] x [C, K]. With m = 4,
per 4x4 output block and channel pair that is 36 multiplications where the direct
convolution does 16 x 9 = 144 (2.25 per output pixel instead of 9), 4 times fewer on
the multiplications that dominate; m = 6 takes 64 for a 6x6 block (1.78 per pixel).
The transforms are small constant matrices applied to every tile (three more matrix
products, cheap where XLA fuses the tile gathering around them: the detector
compiles the backbone, FPN and RPN with jit_compile on CPUs); they move (m+2)^2/m^2
times the data of the layer's input and output (2.25 for m = 4), so the gain per
layer is about 2 rather than 4. m = 6 moves less data and multiplies less but its
transforms are larger: it pays on large maps with many channels only (tile_for).
Results equal the direct convolution up to float32 rounding (relative error about
1e-5 with m = 4, 2e-5 with m = 6: the tests check it against numpy).

The matrices come from the Cook-Toom construction on the points 0, 1, -1, 2, -2
(and 1/2, -1/2 for m = 6) and infinity (Lavin & Gray 2016, "Fast algorithms for
convolutional neural networks"), computed exactly with fractions.

Written with keras.ops only. Shapes: channels last. The model files know nothing of
it: model.inference rewrites a built detector's dense part to use it on CPUs.
"""
from fractions import Fraction

import numpy as np
from keras import ops

OUTPUT_TILE = 4  # m: output tile side (the default)
KERNEL = 3  # r: filter side
POINTS = (0, 1, -1, 2, -2)  # plus infinity
LARGE_TILE = 6  # F(6x6, 3x3), on 8x8 input tiles
LARGE_TILE_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
# F(6x6) where the map has at least this many rows and columns and the input this
# many channels. Measured under XLA on a 2-core AVX-512 CPU: 128x128, 256 -> 512
# channels 55 ms against 60 ms with F(4x4), 256 -> 256 32 against 36 ms; but
# 64x64 (256 -> 512) 15.7 against 14.3 ms, and 128x128 with 64 channels 13.1
# against 12.8 ms (three convs).
LARGE_TILE_MIN_SIDE = 96
LARGE_TILE_MIN_DEPTH = 128
# Below this many output pixels per image, with the kernel transformed beforehand,
# reading it (4 to 7 times the kernel's size) outweighs the saving: direct convolution
# there. Measured on a 2-core AVX-512 CPU (Intel), 3 convs 512 -> 512: 16x16 11.9 ms
# against 17.5 ms direct, 8x8 8.7 against 6.2 ms.
MIN_PIXELS = 16 * 16


def _poly_times(p, q):
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def cook_toom(m=OUTPUT_TILE, r=KERNEL, points=POINTS):
    """Exact Winograd matrices of F(m, r) as float64 arrays.

    Returns (AT [m, a], G [a, r], BT [a, a]), a = m + r - 1, such that for any
    d [a] and g [r]: AT @ ((G @ g) * (BT @ d)) == [d[i:i + r] @ g for i in range(m)].
    points: the a - 1 finite interpolation points (infinity is the last one).
    """
    a = m + r - 1
    p = [Fraction(x) for x in points[:a - 1]]
    if len(p) != a - 1 or len(set(p)) != len(p):
        raise ValueError("F({}, {}) needs {} distinct finite points".format(m, r, a - 1))
    at = [[p[i] ** j for i in range(a - 1)] + [Fraction(int(j == m - 1))]
          for j in range(m)]
    g = []
    for i in range(a - 1):
        denominator = Fraction(1)
        for k in range(a - 1):
            if k != i:
                denominator *= p[i] - p[k]
        g.append([p[i] ** j / denominator for j in range(r)])
    g.append([Fraction(int(j == r - 1)) for j in range(r)])
    bt = []
    for i in range(a):
        poly = [Fraction(1)]
        for k in range(a - 1):
            if k != i:
                poly = _poly_times(poly, [-p[k], Fraction(1)])
        bt.append(poly + [Fraction(0)] * (a - len(poly)))
    as_array = lambda rows: np.array([[float(x) for x in row] for row in rows])  # noqa: E731
    return as_array(at), as_array(g), as_array(bt)


class _Transforms:
    """The float32 matrices of F(m x m, 3x3) as Kronecker products over a tile's
    flattened elements: (BT d BT^T) flattened row-major is kron(BT, BT) @ d
    flattened, and likewise for A and G. Applied as matrix products over all tiles
    and channels at once they read and write each tensor once (as sums of strided
    slices, XLA re-read the input once per tile element: 1.1 to 1.8 times slower
    per layer)."""

    def __init__(self, m, points):
        at, g, bt = cook_toom(m, KERNEL, points)
        self.m, self.a = m, m + KERNEL - 1
        self.input = np.kron(bt, bt).astype("float32")  # [a*a, a*a]
        self.output = np.kron(at, at).astype("float32")  # [m*m, a*a]
        self.kernel = np.kron(g, g).astype("float32")  # [a*a, 9]


TRANSFORMS = {OUTPUT_TILE: _Transforms(OUTPUT_TILE, POINTS),
              LARGE_TILE: _Transforms(LARGE_TILE, LARGE_TILE_POINTS)}


def tile_for(height, width, depth):
    """The output tile side m for a map of height x width x depth: LARGE_TILE on
    large maps with many channels, else OUTPUT_TILE."""
    if min(height, width) >= LARGE_TILE_MIN_SIDE and depth >= LARGE_TILE_MIN_DEPTH:
        return LARGE_TILE
    return OUTPUT_TILE


def transform_kernel(kernel, m=OUTPUT_TILE):
    """kernel [3, 3, C, K] -> U [a*a, C, K], U[a * u + v] = (G g G^T)[u, v], a = m + 2."""
    t = TRANSFORMS[m]
    depth, filters = kernel.shape[2], kernel.shape[3]
    flat = ops.reshape(kernel, (KERNEL * KERNEL, depth * filters))
    return ops.reshape(ops.matmul(ops.convert_to_tensor(t.kernel), flat),
                       (t.a * t.a, depth, filters))


def winograd_conv3x3(inputs, kernel, m=None, transformed=None):
    """'same' 3x3 convolution, stride 1, no bias, by F(m x m, 3x3).

    inputs: [B, H, W, C] with static H and W. kernel: [3, 3, C, K].
    m: output tile side, 4 or 6; None: tile_for(H, W, C).
    transformed: transform_kernel(kernel, m) made beforehand for the tile m this call
        uses, or None (transformed here).
    Returns [B, H, W, K], equal to the direct convolution up to rounding.
    """
    height, width = int(inputs.shape[1]), int(inputs.shape[2])
    depth, filters = kernel.shape[2], kernel.shape[3]
    t = TRANSFORMS[tile_for(height, width, depth) if m is None else m]
    m, a = t.m, t.a
    rows, cols = -(-height // m), -(-width // m)
    # one pixel of zeros before (the 'same' padding), enough after for whole tiles
    padded = ops.pad(inputs, ((0, 0), (1, rows * m + 1 - height),
                              (1, cols * m + 1 - width), (0, 0)))
    # tile element (i, j) of every tile, stacked: [a*a, B, rows, cols, C]
    d = ops.stack([padded[:, i:i + rows * m:m, j:j + cols * m:m, :]
                   for i in range(a) for j in range(a)])
    v = ops.matmul(ops.convert_to_tensor(t.input), ops.reshape(d, (a * a, -1)))
    v = ops.reshape(v, (a * a, -1, depth))  # [a*a, B * rows * cols, C]
    u = transform_kernel(kernel, m) if transformed is None else transformed
    product = ops.matmul(v, u)  # [a*a, tiles, K]
    y = ops.matmul(ops.convert_to_tensor(t.output), ops.reshape(product, (a * a, -1)))
    y = ops.reshape(y, (m, m, -1, rows, cols, filters))  # [p, q, B, rows, cols, K]
    y = ops.transpose(y, (2, 3, 0, 4, 1, 5))  # [B, rows, p, cols, q, K]
    y = ops.reshape(y, (-1, rows * m, cols * m, filters))
    return y[:, :height, :width, :]
