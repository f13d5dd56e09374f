"""Per-layer probe for issue 9 item 5: QLinearConv vs a bare MatMulInteger of the same im2col GEMM.

``python -m benchmarks.conv_vs_gemm``: Delta-IQA conv2..conv4 shapes, u8s8 with 7-bit weights, 1 thread,
GMAC/s medians of 30 interleaved runs. MatMulInteger here gets its im2col matrix for free, so it is an
upper bound for an im2col + MatMulInteger graph form of the convolution: where it is not faster than
QLinearConv, that form cannot win on this CPU.
"""

import statistics
import time

import numpy as np
import onnxruntime as ort

from onnx import TensorProto, helper, numpy_helper


def main() -> int:
    rng = np.random.default_rng(0)
    def sess(model, threads=1):
        o = ort.SessionOptions(); o.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), o, providers=['CPUExecutionProvider'])
    res = {}
    for name, (C, H, N, k, pad) in {'conv2': (96, 62, 256, 5, 2), 'conv3': (256, 30, 384, 3, 1), 'conv4': (384, 30, 384, 3, 1)}.items():
        w = rng.integers(-64, 65, (N, C, k, k)).astype(np.int8)
        inits = [numpy_helper.from_array(w, 'w'), numpy_helper.from_array(np.float32(0.01), 'xs'), numpy_helper.from_array(np.uint8(0), 'xz'),
                 numpy_helper.from_array(np.full(N, 0.001, np.float32), 'ws'), numpy_helper.from_array(np.zeros(N, np.int8), 'wz'),
                 numpy_helper.from_array(np.float32(0.5), 'ys'), numpy_helper.from_array(np.uint8(0), 'yz')]
        g = helper.make_graph([helper.make_node('QLinearConv', ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz'], ['y'], pads=[pad]*4)], 'c',
                              [helper.make_tensor_value_info('x', TensorProto.UINT8, [1, C, H, H])], [helper.make_tensor_value_info('y', TensorProto.UINT8, None)], inits)
        conv = sess(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]))
        K, M = C * k * k, H * H
        b = numpy_helper.from_array(w.transpose(2, 3, 1, 0).reshape(K, N).copy(), 'b')
        g2 = helper.make_graph([helper.make_node('MatMulInteger', ['a', 'b'], ['y'])], 'm',
                               [helper.make_tensor_value_info('a', TensorProto.UINT8, [M, K])], [helper.make_tensor_value_info('y', TensorProto.INT32, None)], [b])
        mm = sess(helper.make_model(g2, opset_imports=[helper.make_opsetid('', 13)]))
        x = rng.integers(0, 255, (1, C, H, H)).astype(np.uint8); a = rng.integers(0, 255, (M, K)).astype(np.uint8)
        t = {'qlinearconv': [], 'matmulinteger': []}
        for _ in range(3): conv.run(None, {'x': x}); mm.run(None, {'a': a})
        for _ in range(30):
            s = time.perf_counter(); conv.run(None, {'x': x}); t['qlinearconv'].append(time.perf_counter() - s)
            s = time.perf_counter(); mm.run(None, {'a': a}); t['matmulinteger'].append(time.perf_counter() - s)
        gmac = M * K * N / 1e9
        res[name] = {k2: round(gmac / statistics.median(v), 1) for k2, v in t.items()}
        print(name, 'GMAC', round(gmac, 2), 'GMAC/s at 1 thread:', res[name], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
