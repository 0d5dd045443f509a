"""Feature pyramid (top-down path) with matterport's layer names.

    P5 = fpn_c5p5(C5)                                  1x1 conv
    P4 = fpn_p4add(fpn_p5upsampled(P5), fpn_c4p4(C4))  nearest x2 + 1x1 conv
    P3 = fpn_p3add(fpn_p4upsampled(P4), fpn_c3p3(C3))
    P2 = fpn_p2add(fpn_p3upsampled(P3), fpn_c2p2(C2))
    P2..P5 = fpn_p2..fpn_p5 (3x3 conv, "same") of the sums above
    P6 = fpn_p6(P5): max pooling 1x1 with stride 2 (plain subsampling)
"""

from keras import layers


def build_fpn(C2, C3, C4, C5, pyramid_size=256):
    """Build the pyramid on backbone features.

    C2..C5: KerasTensors [B, H/s, W/s, channels] at strides s = 4, 8, 16, 32
        (each exactly twice the size of the next).
    pyramid_size: channels of every pyramid level (matterport's
        TOP_DOWN_PYRAMID_SIZE, 256).

    Returns [P2, P3, P4, P5, P6], each [B, H/s, W/s, pyramid_size] at strides
    4, 8, 16, 32, 64. P6 feeds only the RPN.
    """
    # Top-down: each level is its lateral 1x1 conv plus the level above, doubled.
    merged = {5: layers.Conv2D(pyramid_size, (1, 1), name="fpn_c5p5")(C5)}
    for level, features in ((4, C4), (3, C3), (2, C2)):
        above = layers.UpSampling2D(size=(2, 2), name=f"fpn_p{level + 1}upsampled")(
            merged[level + 1])
        lateral = layers.Conv2D(pyramid_size, (1, 1), name=f"fpn_c{level}p{level}")(features)
        merged[level] = layers.Add(name=f"fpn_p{level}add")([above, lateral])
    # A 3x3 conv smooths every merged level; P6 only subsamples P5 for the RPN.
    p2, p3, p4, p5 = (
        layers.Conv2D(pyramid_size, (3, 3), padding="same", name=f"fpn_p{level}")(
            merged[level])
        for level in (2, 3, 4, 5))
    p6 = layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
