"""Would ONNX Runtime serve VGG16 faster than FaceDx's compiled tf.function? Same network, same run.

The network is written out as an ONNX graph (VGG16's convolutions and pooling, FaceDx's
preprocessing, the global average) and checked against Keras before anything is timed.
Not a dependency of FaceDx: `.venv/bin/pip install onnx onnxruntime`, then
`.venv/bin/python -m bench.onnx_runtime [--image-size 224]`.
"""
import argparse
import os

import keras
import numpy as np

from bench.training_and_serving import bench_batch_ceiling_of, make_task, timed_median
from ml.features.vgg import IMAGENET_MEAN, VGGBackbone


def onnx_graph(backbone):
    """Return the backbone (RGB pixels NHWC -> pooled features) as a serialised ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    size = backbone.input_size
    nodes = [helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Gather", ["nchw", "bgr"], ["swapped"], axis=1),
             helper.make_node("Sub", ["swapped", "mean"], ["x"])]
    weights = [numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr"),
               numpy_helper.from_array(np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "mean")]
    current = "x"
    for layer in backbone.base.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = (w.numpy() for w in layer.weights)
            weights += [numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), layer.name + "_w"),
                        numpy_helper.from_array(bias, layer.name + "_b")]
            nodes += [helper.make_node("Conv", [current, layer.name + "_w", layer.name + "_b"], [layer.name + "_z"],
                                       pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                      helper.make_node("Relu", [layer.name + "_z"], [layer.name])]
            current = layer.name
        elif isinstance(layer, keras.layers.MaxPooling2D):
            nodes.append(helper.make_node("MaxPool", [current], [layer.name], kernel_shape=[2, 2], strides=[2, 2]))
            current = layer.name
    weights.append(numpy_helper.from_array(np.array([0, backbone.feature_size], np.int64), "flat"))
    nodes += [helper.make_node("GlobalAveragePool", [current], ["pooled"]),
              helper.make_node("Reshape", ["pooled", "flat"], ["features"])]
    graph = helper.make_graph(
        nodes, "vgg16_features", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, size, size, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, backbone.feature_size])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main():
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    backbone = VGGBackbone.build("vgg16-imagenet", "none", args.image_size, ())
    settings = onnxruntime.SessionOptions()
    settings.intra_op_num_threads = os.cpu_count()
    session = onnxruntime.InferenceSession(onnx_graph(backbone), settings, providers=["CPUExecutionProvider"])
    crops, _ = make_task(8)

    def runtime(batch):
        return session.run(None, {"pixels": backbone.pixels(batch)})[0]
    ours, theirs = backbone.features(crops), runtime(crops)
    difference = float(np.abs(ours - theirs).max() / np.abs(ours).max())
    print(f"VGG16 at {args.image_size} px, features differ by at most {difference:.1e} of their largest value")
    print(f"{'':<34} {'tf.function':>12} {'ONNX Runtime':>13}")
    print(f"{'one image':<34} {timed_median(lambda: backbone.features(crops[:1])) * 1000:>9.1f} ms "
          f"{timed_median(lambda: runtime(crops[:1])) * 1000:>10.1f} ms")
    tf_batch, tf_singles = bench_batch_ceiling_of(backbone.features, crops)
    ort_batch, ort_singles = bench_batch_ceiling_of(runtime, crops)
    print(f"{'batch of 8, images/s':<34} {tf_batch:>12.1f} {ort_batch:>13.1f}")
    print(f"{'8 concurrent single calls, images/s':<34} {tf_singles:>12.1f} {ort_singles:>13.1f}")


if __name__ == "__main__":
    main()
