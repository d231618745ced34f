"""Rewrites of exported ONNX graphs for onnxruntime's speed (no torch needed)."""

from __future__ import annotations

from typing import Any

__all__ = ["prelu_as_depthwise"]


def prelu_as_depthwise(proto: Any) -> int:
    """Rewrite every per-channel ``PRelu`` of an ONNX graph with ops that stay in onnxruntime's
    blocked (NCHWc) layout; return how many were rewritten.

    ``prelu(y) = y + dwconv(1 - a)(relu(dwconv(-1)(y)))``, the two 1x1 depthwise convolutions
    multiplying each channel by -1 and by one minus its slope. Where ``y >= 0`` the second term is
    0 and the result is ``y``, bit for bit; elsewhere it is ``y + (1 - a) (-y)``, ``a y`` to within
    three float32 roundings (``1 - a``, the product, the sum: 4e-7 of ``|y|``). onnxruntime fuses
    the first depthwise convolution with its ``Relu`` and the second with the ``Add``, so an
    activation costs two passes over the tensor. Its ``PRelu`` kernel took 52 % of the network's time on this CPU
    (40 ms for a 32 x 532 x 532 tensor, ``LeakyRelu`` 2 ms); an elementwise rewrite
    (``Max(y, a * y)``) still left 23 % in layout reorders around it, and the exact
    ``relu(y) + dwconv(-a)(relu(-y))`` took three passes: this one is 7 to 10 % faster than that.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    prelus = [n for n in graph.node if n.op_type == "PRelu"]
    if any(n.input[1] not in values for n in prelus):
        return 0
    nodes, dropped = [], set()
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        y, slope_name = node.input
        slope = values[slope_name].reshape(-1).astype(np.float32)
        c, out = slope.size, node.output[0]
        minus_one = numpy_helper.from_array(np.full((c, 1, 1, 1), -1, np.float32), out + "_m1")
        one_minus_a = numpy_helper.from_array(
            (np.float32(1) - slope).reshape(c, 1, 1, 1), out + "_1ma"
        )
        graph.initializer.extend([minus_one, one_minus_a])
        dropped.add(slope_name)
        dw = {"group": c, "kernel_shape": [1, 1]}
        nodes += [
            helper.make_node(
                "Conv", [y, minus_one.name], [out + "_neg"], name=node.name + "_neg", **dw
            ),
            helper.make_node("Relu", [out + "_neg"], [out + "_negpos"], name=node.name + "_negpos"),
            helper.make_node(
                "Conv",
                [out + "_negpos", one_minus_a.name],
                [out + "_tail"],
                name=node.name + "_tail",
                **dw,
            ),
            helper.make_node("Add", [y, out + "_tail"], [out], name=node.name + "_sum"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    still = [i for i in graph.initializer if i.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(still)
    return len(prelus)
