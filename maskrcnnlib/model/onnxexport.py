"""The dense part of an inference model (backbone, FPN, RPN) written as an ONNX graph
from its Keras layers, for ONNX Runtime (model.quantized).

Each layer of the Keras graph becomes the ONNX operators that compute the same
thing; the weights are read from the layers' variables (their dtype policy does
not matter). Maps are kept channels-first inside the graph (ONNX's convolutions
and pools are), with one transpose after the input and one before each map output.
'same' padding is written out as explicit pads, TensorFlow's way: for stride s and
window k on n cells, max((ceil(n / s) - 1) * s + k - n, 0) cells in all, the extra
one at the end. So the graph is made for one molded height and width (the batch
size is free).

It covers the layers our dense part is built from: ZeroPadding2D, Conv2D (linear
or ReLU), BatchNorm in inference (moving statistics), Activation (ReLU, softmax),
Add, MaxPooling2D, nearest UpSampling2D, Reshape, Concatenate and nested models
(the shared RPN); anything else is refused by name.
Memory: the weights once more (about 170 MB for a ResNet-101); a few seconds.
"""
import math

import keras
import numpy as np

from maskrcnnlib.model.compat import walk_functional

INPUT_NAME = "input_image"
OPSET = 17


class _Value:
    """A tensor of the graph being written: its ONNX name and its Keras shape
    (batch first, None for the batch). Maps [B, H, W, C] are stored [B, C, H, W]."""

    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(shape)

    @property
    def is_map(self):
        return len(self.shape) == 4


def _same_pads(size, window, stride):
    """(before, after) cells of TensorFlow's 'same' padding along one axis."""
    total = max((math.ceil(size / stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _window(layer_padding, shape, window, strides):
    """ONNX pads [top, left, bottom, right] and the output height and width."""
    height, width = shape[1:3]
    if layer_padding == "valid":
        return [0, 0, 0, 0], ((height - window[0]) // strides[0] + 1,
                              (width - window[1]) // strides[1] + 1)
    top, bottom = _same_pads(height, window[0], strides[0])
    left, right = _same_pads(width, window[1], strides[1])
    return [top, left, bottom, right], (math.ceil(height / strides[0]),
                                        math.ceil(width / strides[1]))


class _Writer:
    """Collects the nodes and constant tensors of the graph."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self._helper, self._numpy = helper, numpy_helper
        self.nodes, self.constants = [], []
        self._count = 0

    def fresh(self, hint):
        self._count += 1
        return "{}__{}".format(hint, self._count)

    def constant(self, array, hint):
        name = self.fresh(hint)
        self.constants.append(self._numpy.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, hint, **attributes):
        output = self.fresh(hint)
        self.nodes.append(self._helper.make_node(op, inputs, [output], name=output,
                                                 **attributes))
        return output

    # ---------------------------------------------------------------- layers

    def convert(self, layer, inputs):
        """The _Value(s) a layer gives for these input values."""
        kind = type(layer).__name__
        if isinstance(layer, keras.Model):
            return walk_functional(layer, inputs, self.operation)
        handler = getattr(self, "_" + kind, None)
        if handler is None or (kind == "BatchNorm" and layer.train_bn is True):
            raise ValueError("cannot write layer {} ({}) as ONNX".format(layer.name, kind))
        return handler(layer, inputs)

    def operation(self, layer):
        """For keras' graph walk: a callable computing the layer on _Values."""
        return lambda *args, **kwargs: self.convert(layer, args[0] if len(args) == 1 else args)

    def _activation(self, name, value, layer):
        if name == "linear":
            return value
        if name == "relu":
            return _Value(self.node("Relu", [value.name], layer.name + "_relu"), value.shape)
        if name == "softmax" and not value.is_map:
            return _Value(self.node("Softmax", [value.name], layer.name, axis=-1), value.shape)
        raise ValueError("cannot write activation {} of layer {} as ONNX".format(
            name, layer.name))

    def _ZeroPadding2D(self, layer, x):
        (top, bottom), (left, right) = layer.padding
        pads = self.constant(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64),
                             layer.name + "_pads")
        batch, height, width, depth = x.shape
        return _Value(self.node("Pad", [x.name, pads], layer.name),
                      (batch, height + top + bottom, width + left + right, depth))

    def _Conv2D(self, layer, x):
        if (layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1)
                or layer.groups != 1):
            raise ValueError("cannot write conv {} as ONNX (only channels-last, "
                             "undilated, one group)".format(layer.name))
        kernel = np.asarray(layer.kernel, dtype=np.float32)
        window, strides = tuple(layer.kernel_size), tuple(layer.strides)
        pads, (height, width) = _window(layer.padding, x.shape, window, strides)
        inputs = [x.name, self.constant(kernel.transpose(3, 2, 0, 1), layer.name + "_kernel")]
        if layer.use_bias:
            inputs.append(self.constant(np.asarray(layer.bias, np.float32),
                                        layer.name + "_bias"))
        out = _Value(self.node("Conv", inputs, layer.name, kernel_shape=list(window),
                               strides=list(strides), pads=pads),
                     (x.shape[0], height, width, kernel.shape[3]))
        return self._activation(layer.activation.__name__, out, layer)

    def _BatchNorm(self, layer, x):
        if not x.is_map or layer.axis not in (-1, 3, [-1], [3]):
            raise ValueError("cannot write batch norm {} as ONNX (channels-last maps "
                             "only)".format(layer.name))
        depth = x.shape[3]
        gamma = np.asarray(layer.gamma, np.float32) if layer.scale else np.ones(depth, "f4")
        beta = np.asarray(layer.beta, np.float32) if layer.center else np.zeros(depth, "f4")
        names = [self.constant(value, layer.name + suffix) for value, suffix in (
            (gamma, "_gamma"), (beta, "_beta"),
            (np.asarray(layer.moving_mean, np.float32), "_mean"),
            (np.asarray(layer.moving_variance, np.float32), "_variance"))]
        return _Value(self.node("BatchNormalization", [x.name] + names, layer.name,
                                epsilon=float(layer.epsilon)), x.shape)

    def _Activation(self, layer, x):
        return self._activation(layer.activation.__name__, x, layer)

    def _Add(self, layer, values):
        total = values[0]
        for value in values[1:]:
            total = _Value(self.node("Add", [total.name, value.name], layer.name), total.shape)
        return total

    def _MaxPooling2D(self, layer, x):
        window, strides = tuple(layer.pool_size), tuple(layer.strides)
        pads, (height, width) = _window(layer.padding, x.shape, window, strides)
        return _Value(self.node("MaxPool", [x.name], layer.name, kernel_shape=list(window),
                                strides=list(strides), pads=pads),
                      (x.shape[0], height, width, x.shape[3]))

    def _UpSampling2D(self, layer, x):
        if layer.interpolation != "nearest":
            raise ValueError("cannot write {} as ONNX (nearest only)".format(layer.name))
        rows, cols = layer.size
        scales = self.constant(np.array([1, 1, rows, cols], np.float32), layer.name + "_scales")
        # asymmetric coordinates and floor: each cell repeated rows x cols times
        return _Value(self.node("Resize", [x.name, "", scales], layer.name, mode="nearest",
                                coordinate_transformation_mode="asymmetric",
                                nearest_mode="floor"),
                      (x.shape[0], x.shape[1] * rows, x.shape[2] * cols, x.shape[3]))

    def _Reshape(self, layer, x):
        name = x.name
        if x.is_map:  # back to Keras' channels-last order before the cells are joined
            name = self.node("Transpose", [name], layer.name + "_nhwc", perm=[0, 2, 3, 1])
        target = list(layer.target_shape)
        known = int(np.prod(x.shape[1:]))
        shape = [known // -int(np.prod(target)) if v == -1 else v for v in target]
        new = self.constant(np.array([0] + list(layer.target_shape), np.int64),
                            layer.name + "_shape")
        return _Value(self.node("Reshape", [name, new], layer.name), (x.shape[0],) + tuple(shape))

    def _Concatenate(self, layer, values):
        rank = len(values[0].shape)
        axis = layer.axis % rank
        if values[0].is_map:  # channels-last axis -> channels-first
            axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]
        shape = list(values[0].shape)
        shape[layer.axis % rank] = sum(v.shape[layer.axis % rank] for v in values)
        return _Value(self.node("Concat", [v.name for v in values], layer.name, axis=axis),
                      tuple(shape))


def dense_to_onnx(dense, input_shape):
    """An onnx.ModelProto of a dense model (maskrcnn.split_inference_model) for molded
    inputs of [height, width, bands]: input "input_image" [B, H, W, bands] float32,
    outputs in the model's order, maps [B, H, W, C] as in Keras."""
    from onnx import TensorProto, helper

    height, width, bands = (int(v) for v in input_shape)
    writer = _Writer()
    first = _Value(writer.node("Transpose", [INPUT_NAME], "input_nchw", perm=[0, 3, 1, 2]),
                   (None, height, width, bands))
    outputs = keras.tree.flatten(walk_functional(dense, [first], writer.operation))
    graph_outputs = []
    for index, value in enumerate(outputs):
        name = "output_{}".format(index)
        if value.is_map:
            writer.nodes.append(helper.make_node("Transpose", [value.name], [name],
                                                 name=name, perm=[0, 2, 3, 1]))
        else:
            writer.nodes.append(helper.make_node("Identity", [value.name], [name], name=name))
        graph_outputs.append(helper.make_tensor_value_info(
            name, TensorProto.FLOAT, ["batch"] + list(value.shape[1:])))
    graph = helper.make_graph(
        writer.nodes, "mask_rcnn_dense",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                       ["batch", height, width, bands])],
        graph_outputs, initializer=writer.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="i.ann.maskrcnn")
    return model
