#!/usr/bin/env python3
"""Checks fvc's Keras reader and writer against files written the way Keras 2.0.4 writes them.

The fixtures are written with h5py and json alone, so that they do not share a
mistake with fvc. There are two small channels_last networks:
  tiny        a Sequential: Conv2D 'same', MaxPooling2D, Conv2D 'valid' without
              bias, BatchNormalization, Flatten, Dropout, two Dense layers
  functional  a branchless functional Model: Conv2D with stride 2 and 'same'
              padding, Activation, AveragePooling2D 'same' (padded cells left out
              of the average), a 1x1 Conv2D, GlobalAveragePooling2D, Dense
Each is stored several ways that Keras loads to the same model: save_weights
(NAME.json + NAME.h5) or model.save (one NAME.h5 with /model_weights and a
model_config attribute), backend 'tensorflow' or 'theano' (every Conv2D kernel
turned by 180 degrees, which Keras undoes on loading), and string attributes as
fixed-length bytes or as variable-length str (and in one case single strings
as plain uint8 byte arrays).

The expected outputs come from a numpy float64 forward pass that convolves
directly, loop by loop over the kernel offsets, following Keras' definition of
each layer. Controls (Flatten fed in channel-height-width order, kernels turned
by 180 degrees, padded cells counted in the average) must move the output by
far more than the tolerance, so that the comparison can tell the layouts apart.

The checker program reads DIR/cases.json, runs each case's input through fvc and
writes DIR/outputs.json with the outputs and the paths of the files fvc wrote
back (save_weights and model.save layouts). Those must hold the same layers, the
same computation-defining settings, Keras' weight names and exactly the weights
in TensorFlow's order, whatever layout the case was read from.

Usage: keras_fixtures.py CHECKER DIR      write, run CHECKER DIR, verify
       keras_fixtures.py --write-only DIR write the fixtures only
Exits 77 (skipped) when numpy or h5py is missing.
"""

import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import h5py
    import numpy as np
except ImportError as missing:
    print(f"skipped: {missing}; install python3-numpy and python3-h5py to run this check")
    sys.exit(77)

KERAS_VERSION = "2.0.4"
IMAGES = 5
# fvc computes in float32 and this reference in float64; on these small networks
# they agree far closer than this. A wrong layout moves the output by more than
# 100 times as much, which check_controls makes sure of.
TOLERANCE = 1e-5
CONTROL_FACTOR = 100
# The settings that define what a layer computes; a round trip must keep them.
DEFINING_KEYS = ("batch_input_shape", "filters", "kernel_size", "strides", "padding", "activation",
                 "use_bias", "units", "pool_size", "rate", "axis", "epsilon", "center", "scale")


class Mismatch(Exception):
    """A difference between what the checker produced and what Keras would hold."""


def require(condition, message):
    # Not `assert`: these checks must also run under python -O.
    if not condition:
        raise Mismatch(message)


# ---------------------------------------------------------------- layer configs
# Each layer is held as Keras' Sequential config holds it: {"class_name", "config"},
# with the keys Keras 2.0.4's get_config writes, in its order.

def initializer(class_name, **config):
    return {"class_name": class_name, "config": config}


def glorot_uniform():
    # Keras 2.0.4 serializes glorot_uniform as the VarianceScaling it is made of.
    return initializer("VarianceScaling", scale=1.0, mode="fan_avg", distribution="uniform", seed=None)


def layer(class_name, name, **config):
    return {"class_name": class_name, "config": {"name": name, "trainable": True, **config}}


def input_layer(name, shape):
    config = {"batch_input_shape": [None, *shape], "dtype": "float32", "sparse": False, "name": name}
    return {"class_name": "InputLayer", "config": config}


def weighted(use_bias):
    return {"use_bias": use_bias, "kernel_initializer": glorot_uniform(),
            "bias_initializer": initializer("Zeros"), "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def conv2d(name, filters, size, stride, padding, activation, use_bias=True):
    return layer("Conv2D", name, filters=filters, kernel_size=[size, size], strides=[stride, stride],
                 padding=padding, data_format="channels_last", dilation_rate=[1, 1],
                 activation=activation, **weighted(use_bias))


def pooling(class_name, name, size, stride, padding):
    return layer(class_name, name, pool_size=[size, size], padding=padding,
                 strides=[stride, stride], data_format="channels_last")


def batch_normalization(name):
    return layer("BatchNormalization", name, axis=-1, momentum=0.99, epsilon=0.001, center=True,
                 scale=True, beta_initializer=initializer("Zeros"),
                 gamma_initializer=initializer("Ones"),
                 moving_mean_initializer=initializer("Zeros"),
                 moving_variance_initializer=initializer("Ones"), beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None)


def dense(name, units, activation):
    return layer("Dense", name, units=units, activation=activation, **weighted(True))


def layer_name(spec):
    return spec["config"]["name"]


# ---------------------------------------------------------------- the networks

class Network:
    """A network's Keras class, layers, TensorFlow-order weights and fixed input."""

    def __init__(self, name, model_class, layers, weights, images):
        self.name, self.model_class, self.layers = name, model_class, layers
        self.weights, self.images = weights, images

    def weight_names(self, name):
        # Keras names each weight after its layer's name scope and TensorFlow's ':0'.
        return [f"{name}/{param}:0" for param in self.weights.get(name, {})]


def uniform(rng, shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, shape).astype(np.float32)


def tiny_network():
    rng = np.random.default_rng(20170504)
    layers = [
        input_layer("input_1", [10, 10, 2]),
        conv2d("conv_a", 4, 3, 1, "same", "relu"),
        pooling("MaxPooling2D", "pool_a", 2, 2, "valid"),
        conv2d("conv_b", 5, 3, 1, "valid", "tanh", use_bias=False),
        batch_normalization("bn_b"),
        layer("Flatten", "flat"),
        layer("Dropout", "drop", rate=0.25),
        dense("dense_a", 6, "relu"),
        dense("out", 3, "softmax"),
    ]
    # Dicts keep Keras' weight order: kernel, bias; gamma, beta, moving_mean, moving_variance.
    weights = {
        "conv_a": {"kernel": uniform(rng, (3, 3, 2, 4)), "bias": uniform(rng, (4,), -0.2, 0.2)},
        "conv_b": {"kernel": uniform(rng, (3, 3, 4, 5))},
        "bn_b": {"gamma": uniform(rng, (5,), 0.5, 1.5), "beta": uniform(rng, (5,), -0.5, 0.5),
                 "moving_mean": uniform(rng, (5,), -0.3, 0.3),
                 "moving_variance": uniform(rng, (5,), 0.2, 1.2)},
        "dense_a": {"kernel": uniform(rng, (45, 6), -0.5, 0.5), "bias": uniform(rng, (6,), -0.2, 0.2)},
        "out": {"kernel": uniform(rng, (6, 3), -1.5, 1.5), "bias": uniform(rng, (3,), -0.2, 0.2)},
    }
    images = rng.uniform(0.0, 1.0, (IMAGES, 10, 10, 2)).astype(np.float32)
    return Network("tiny", "Sequential", layers, weights, images)


def functional_network():
    rng = np.random.default_rng(20170505)
    layers = [
        input_layer("input_1", [9, 9, 3]),
        conv2d("c1", 4, 3, 2, "same", "linear"),
        layer("Activation", "act", activation="sigmoid"),
        pooling("AveragePooling2D", "avg", 2, 2, "same"),
        conv2d("c2", 6, 1, 1, "valid", "relu"),
        layer("GlobalAveragePooling2D", "gap", data_format="channels_last"),
        dense("logits", 4, "softmax"),
    ]
    weights = {
        "c1": {"kernel": uniform(rng, (3, 3, 3, 4)), "bias": uniform(rng, (4,), -0.5, 0.5)},
        "c2": {"kernel": uniform(rng, (1, 1, 4, 6), -2.0, 2.0), "bias": uniform(rng, (6,), -0.5, 0.5)},
        "logits": {"kernel": uniform(rng, (6, 4), -3.0, 3.0), "bias": uniform(rng, (4,), -0.2, 0.2)},
    }
    images = rng.uniform(0.0, 1.0, (IMAGES, 9, 9, 3)).astype(np.float32)
    return Network("functional", "Model", layers, weights, images)


# ---------------------------------------------------------------- numpy reference

def tf_padding(size, window, stride, padding):
    """(before, after, output size) along one axis, as TensorFlow pads."""
    if padding == "valid":
        return 0, 0, (size - window) // stride + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    # TensorFlow puts the smaller half before (top/left).
    return total // 2, total - total // 2, out


def pad_and_windows(x, window, strides, padding, fill=0.0):
    """Pads x (N, H, W, C) and lists, per window offset, the strided slice of it."""
    top, bottom, rows = tf_padding(x.shape[1], window[0], strides[0], padding)
    left, right, cols = tf_padding(x.shape[2], window[1], strides[1], padding)
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    slices = {}
    for i in range(window[0]):
        for j in range(window[1]):
            slices[i, j] = padded[:, i:i + strides[0] * (rows - 1) + 1:strides[0],
                                  j:j + strides[1] * (cols - 1) + 1:strides[1], :]
    return slices


def convolve(x, kernel, bias, strides, padding):
    # Keras' Conv2D is a correlation: output[r, c] = sum over offsets (i, j) of
    # input[r * stride + i, c * stride + j] times kernel[i, j].
    out = 0.0
    for (i, j), window in pad_and_windows(x, kernel.shape[:2], strides, padding).items():
        out = out + window @ kernel[i, j]
    return out if bias is None else out + bias


def max_pool(x, config):
    windows = pad_and_windows(x, config["pool_size"], config["strides"], config["padding"], -np.inf)
    return np.max(np.stack(list(windows.values())), axis=0)


def average_pool(x, config, count_padding=False):
    # TensorFlow divides by the number of real cells in each window, not by its size.
    args = config["pool_size"], config["strides"], config["padding"]
    total = sum(pad_and_windows(x, *args).values())
    cells = sum(pad_and_windows(np.ones_like(x), *args).values())
    if count_padding:
        cells = np.full_like(cells, np.prod(config["pool_size"]))
    return total / cells


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "softmax": softmax,
}


def forward(network, flatten_channels_first=False, flip_kernels=False, count_padding=False):
    """The network's output in float64; the keyword arguments give the controls."""
    x = network.images.astype(np.float64)
    for spec in network.layers[1:]:
        kind, config = spec["class_name"], spec["config"]
        params = {k: v.astype(np.float64) for k, v in network.weights.get(layer_name(spec), {}).items()}
        if kind == "Conv2D":
            kernel = params["kernel"][::-1, ::-1] if flip_kernels else params["kernel"]
            x = convolve(x, kernel, params.get("bias"), config["strides"], config["padding"])
            x = ACTIVATIONS[config["activation"]](x)
        elif kind == "MaxPooling2D":
            x = max_pool(x, config)
        elif kind == "AveragePooling2D":
            x = average_pool(x, config, count_padding)
        elif kind == "BatchNormalization":
            # Inference uses the moving statistics.
            scale = params["gamma"] / np.sqrt(params["moving_variance"] + config["epsilon"])
            x = (x - params["moving_mean"]) * scale + params["beta"]
        elif kind == "Flatten":
            if flatten_channels_first:
                x = x.transpose(0, 3, 1, 2)
            x = x.reshape(len(x), -1)
        elif kind == "Dropout":
            pass  # the identity outside training
        elif kind == "Dense":
            x = ACTIVATIONS[config["activation"]](x @ params["kernel"] + params["bias"])
        elif kind == "Activation":
            x = ACTIVATIONS[config["activation"]](x)
        elif kind == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        else:
            raise ValueError(f"no reference for {kind}")
    return x


def check_controls(tiny, functional):
    """Each control must differ from the expected output by far more than the tolerance."""
    controls = [
        (tiny, "Flatten fed channel-height-width", {"flatten_channels_first": True}),
        (tiny, "conv kernels turned 180 degrees", {"flip_kernels": True}),
        (functional, "conv kernels turned 180 degrees", {"flip_kernels": True}),
        (functional, "padded cells counted in the average", {"count_padding": True}),
    ]
    expected = {network.name: forward(network) for network in (tiny, functional)}
    for network, label, options in controls:
        difference = np.abs(forward(network, **options) - expected[network.name]).max()
        print(f"control {network.name}, {label}: differs by {difference:.2e}")
        if difference <= CONTROL_FACTOR * TOLERANCE:
            sys.exit(f"control {network.name}, {label} differs by only {difference:.2e}; "
                     f"the tolerance {TOLERANCE} could not tell the layouts apart")


# ---------------------------------------------------------------- writing files

def set_text(node, key, text, strings):
    if strings == "vlen":
        node.attrs.create(key, text, dtype=h5py.special_dtype(vlen=str))
    elif strings == "raw":
        # A plain byte array, as tools other than Keras sometimes leave a single string.
        node.attrs[key] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    else:
        node.attrs[key] = np.bytes_(text.encode("utf-8"))


def set_text_list(node, key, texts, strings):
    if strings == "vlen":
        node.attrs.create(key, texts, dtype=h5py.special_dtype(vlen=str))
    else:
        node.attrs[key] = np.array([t.encode("utf-8") for t in texts], dtype=np.bytes_)


def write_weights(group, network, backend, strings):
    """Keras 2's save_weights_to_hdf5_group, into a file's root or /model_weights."""
    set_text_list(group, "layer_names", [layer_name(spec) for spec in network.layers], strings)
    set_text(group, "backend", backend, strings)
    set_text(group, "keras_version", KERAS_VERSION, strings)
    for spec in network.layers:
        name = layer_name(spec)
        layer_group = group.create_group(name)
        names = network.weight_names(name)
        if names:
            set_text_list(layer_group, "weight_names", names, strings)
        else:
            # Keras assigns an empty list, which h5py stores as an empty float64 array.
            layer_group.attrs["weight_names"] = np.zeros(0, dtype=np.float64)
        for weight_name, (param, value) in zip(names, network.weights.get(name, {}).items()):
            if backend == "theano" and spec["class_name"] == "Conv2D" and param == "kernel":
                # Theano convolves for real, so its kernels are TensorFlow's turned by 180 degrees.
                value = np.ascontiguousarray(value[::-1, ::-1])
            # The slash in the name makes h5py nest it: <layer>/<layer>/kernel:0.
            layer_group.create_dataset(weight_name, data=value)


def model_config(network):
    """{"class_name", "config"} as Keras' get_config gives it for the model."""
    if network.model_class == "Sequential":
        return {"class_name": "Sequential", "config": network.layers}
    layers = []
    previous = None
    for spec in network.layers:
        inbound = [] if previous is None else [[[previous, 0, 0, {}]]]
        layers.append({"name": layer_name(spec), "class_name": spec["class_name"],
                       "config": spec["config"], "inbound_nodes": inbound})
        previous = layer_name(spec)
    config = {"name": "model_1", "layers": layers,
              "input_layers": [[layer_name(network.layers[0]), 0, 0]],
              "output_layers": [[previous, 0, 0]]}
    return {"class_name": "Model", "config": config}


def write_case(folder, network, storage, backend, strings):
    name = f"{network.name}-{storage}-{backend}-{strings}"
    config = model_config(network)
    weights_file = folder / f"{name}.h5"
    architecture = None
    with h5py.File(weights_file, "w") as out:
        if storage == "weights":
            # model.to_json() adds the version and backend; model.save's model_config does not.
            architecture = f"{name}.json"
            text = json.dumps({**config, "keras_version": KERAS_VERSION, "backend": backend})
            (folder / architecture).write_text(text)
            write_weights(out, network, backend, strings)
        else:
            set_text(out, "model_config", json.dumps(config), strings)
            set_text(out, "keras_version", KERAS_VERSION, strings)
            set_text(out, "backend", backend, strings)
            write_weights(out.create_group("model_weights"), network, backend, strings)
    # float32 values printed as Python floats read back exactly as the same float32.
    return {"name": name, "architecture": architecture, "weights": weights_file.name,
            "input": network.images.tolist()}


def case_plan():
    """(network, storage, backend, strings) for every case."""
    tiny = [("tiny", *options) for options in itertools.product(
        ("weights", "model"), ("tensorflow", "theano"), ("bytes", "vlen"))]
    return tiny + [("functional", "weights", "tensorflow", "bytes"),
                   ("functional", "model", "theano", "vlen"),
                   ("functional", "model", "theano", "raw")]


def write_fixtures(folder):
    """Writes every case, cases.json and expected.json; returns {case name: network}."""
    networks = {n.name: n for n in (tiny_network(), functional_network())}
    check_controls(networks["tiny"], networks["functional"])
    folder.mkdir(parents=True, exist_ok=True)
    cases, owners = [], {}
    for network_name, *options in case_plan():
        case = write_case(folder, networks[network_name], *options)
        cases.append(case)
        owners[case["name"]] = networks[network_name]
    (folder / "cases.json").write_text(json.dumps({"cases": cases}))
    # Not read by the checker: the expected outputs, for debugging it by hand.
    expected = {name: forward(network).tolist() for name, network in owners.items()}
    (folder / "expected.json").write_text(json.dumps(expected, indent=1))
    print(f"wrote {len(cases)} cases to {folder}")
    return owners


# ---------------------------------------------------------------- verifying

def text_value(value, what):
    # Keras reads these with .decode(), so a scalar is needed; bytes or str are both fine here.
    if isinstance(value, bytes):
        return value.decode("utf-8")
    require(isinstance(value, str), f"{what} is {value!r}, not a scalar string")
    return str(value)


def text_list(value, what):
    # Keras iterates these, so a one-dimensional array is needed (an empty one when no names).
    require(isinstance(value, np.ndarray) and value.ndim == 1,
            f"{what} is {value!r}, not a one-dimensional array")
    return [text_value(item, what) for item in value]


def attribute(node, key, where):
    require(key in node.attrs, f"{where}: no '{key}' attribute")
    return node.attrs[key]


def same_value(got, expected):
    if isinstance(expected, list):
        return (isinstance(got, list) and len(got) == len(expected)
                and all(same_value(g, e) for g, e in zip(got, expected)))
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, float):
        # A float32 epsilon printed in full (0.0010000000474974513) is still 0.001.
        return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6)
    return got == expected


def model_layers(model):
    """(name, class_name, config) per layer, from a Sequential or a functional Model config."""
    config = model["config"]
    if isinstance(config, list):
        return [(spec["config"]["name"], spec["class_name"], spec["config"]) for spec in config]
    return [(spec["name"], spec["class_name"], spec["config"]) for spec in config["layers"]]


def check_architecture(model, network, where):
    layers = model_layers(model)
    got = [(name, kind) for name, kind, _ in layers]
    expected = [(layer_name(spec), spec["class_name"]) for spec in network.layers]
    require(got == expected, f"{where}: layers {got}, expected {expected}")
    for (name, _, config), spec in zip(layers, network.layers):
        for key in DEFINING_KEYS:
            if key in spec["config"]:
                value = config.get(key, "(missing)")
                require(same_value(value, spec["config"][key]),
                        f"{where}: {name} {key} is {value}, expected {spec['config'][key]}")


def check_weight_values(dataset, value, where):
    require(dataset.dtype == np.float32, f"{where}: dtype {dataset.dtype}, expected float32")
    require(dataset.shape == value.shape, f"{where}: shape {dataset.shape}, expected {value.shape}")
    data = dataset[()]
    if not np.array_equal(data, value):
        turned = data.ndim == 4 and np.array_equal(data, value[::-1, ::-1])
        require(False, f"{where}: " + ("turned 180 degrees (Theano's order)" if turned else
                                       f"values differ by up to {np.abs(data - value).max():.2e}"))


def check_weights(group, network, where):
    """A save_weights layout in TensorFlow's order, at a file's root or /model_weights."""
    backend = text_value(attribute(group, "backend", where), f"{where} backend")
    require(backend == "tensorflow", f"{where}: backend '{backend}', expected 'tensorflow'")
    version = text_value(attribute(group, "keras_version", where), f"{where} keras_version")
    require(version.startswith("2."), f"{where}: keras_version '{version}' is not 2.x")
    names = text_list(attribute(group, "layer_names", where), f"{where} layer_names")
    expected_names = [layer_name(spec) for spec in network.layers]
    require(names == expected_names, f"{where}: layer_names {names}, expected {expected_names}")
    for name in expected_names:
        require(name in group, f"{where}: no group for layer {name}")
        layer_group = group[name]
        weight_names = text_list(attribute(layer_group, "weight_names", f"{where}/{name}"),
                                 f"{where}/{name} weight_names")
        expected_weights = network.weight_names(name)
        require(weight_names == expected_weights,
                f"{where}/{name}: weight_names {weight_names}, expected {expected_weights}")
        for weight_name, value in zip(expected_weights, network.weights.get(name, {}).values()):
            require(weight_name in layer_group, f"{where}/{name}: no dataset {weight_name}")
            check_weight_values(layer_group[weight_name], value, f"{where}/{name}/{weight_name}")


def check_model_file(out, network, where):
    """The model.save layout: /model_weights plus model_config, keras_version, backend on the root."""
    config = text_value(attribute(out, "model_config", where), f"{where} model_config")
    check_architecture(json.loads(config), network, f"{where} model_config")
    backend = text_value(attribute(out, "backend", where), f"{where} backend")
    require(backend == "tensorflow", f"{where}: backend '{backend}', expected 'tensorflow'")
    version = text_value(attribute(out, "keras_version", where), f"{where} keras_version")
    require(version.startswith("2."), f"{where}: keras_version '{version}' is not 2.x")
    require("model_weights" in out, f"{where}: no /model_weights group")
    check_weights(out["model_weights"], network, f"{where}:/model_weights")


def check_case(folder, network, result):
    """Returns the largest output difference, or raises Mismatch."""
    require(isinstance(result, dict), "missing from outputs.json")
    for key in ("output", "roundtrip_architecture", "roundtrip_weights", "roundtrip_model"):
        require(key in result, f"outputs.json has no '{key}'")
    expected = forward(network)
    output = np.asarray(result["output"], dtype=np.float64)
    require(output.shape == expected.shape, f"output shape {output.shape}, expected {expected.shape}")
    difference = np.abs(output - expected).max()
    require(difference < TOLERANCE,
            f"output differs from the numpy reference by {difference:.2e} (tolerance {TOLERANCE})")

    architecture = json.loads((folder / result["roundtrip_architecture"]).read_text())
    check_architecture(architecture, network, result["roundtrip_architecture"])
    with h5py.File(folder / result["roundtrip_weights"], "r") as weights:
        check_weights(weights, network, result["roundtrip_weights"])
    with h5py.File(folder / result["roundtrip_model"], "r") as model:
        check_model_file(model, network, result["roundtrip_model"])
    return difference


def verify(folder, owners):
    outputs = json.loads((folder / "outputs.json").read_text())
    failures = 0
    for name, network in owners.items():
        try:
            difference = check_case(folder, network, outputs.get(name))
            print(f"{name}: output within {difference:.2e} of the reference; round trip matches")
        except (Mismatch, OSError, KeyError, TypeError, ValueError) as problem:
            failures += 1
            print(f"FAIL {name}: {problem}")
    if failures:
        sys.exit(f"{failures} of {len(owners)} cases failed")
    print("ok")


def main():
    args = sys.argv[1:]
    if len(args) != 2 or (args[0].startswith("-") and args[0] != "--write-only"):
        sys.exit("usage: keras_fixtures.py CHECKER DIR | keras_fixtures.py --write-only DIR")
    folder = Path(args[1])
    owners = write_fixtures(folder)
    if args[0] == "--write-only":
        return
    # Stale results from an earlier run must not pass for this one's.
    (folder / "outputs.json").unlink(missing_ok=True)
    shutil.rmtree(folder / "roundtrip", ignore_errors=True)
    (folder / "roundtrip").mkdir()
    subprocess.run([args[0], str(folder)], check=True)
    verify(folder, owners)


if __name__ == "__main__":
    main()
