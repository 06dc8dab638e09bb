#!/usr/bin/env python3
"""Checks the Keras files fvc writes without using fvc to read them.

Writes a small FER2013-style CSV of random images, trains a narrow network on
it with fvc-finetune for one epoch, then reads model.json and weights.h5 with
json and h5py only. It checks the Keras 2 save_weights layout (layer names,
weight names, kernel shapes in TensorFlow's order) and recomputes every
PrivateTest prediction with a plain numpy forward pass written the way Keras
defines the layers (channels_last, 'same' correlation, 2x2 max-pool, flatten in
height-width-channel order). fvc's probabilities must agree to 1e-6, while the
same pass with convolution kernels turned by 180 degrees, or with fc7's kernel
transposed, must not.

A second network, trained with --batch-norm and --dropout, must hold each
BatchNormalization layer's gamma, beta, moving_mean and moving_variance in
Keras's order and shape, and the same numpy pass (inference: moving statistics,
no dropout) must reproduce its predictions.

Then it rewrites the first network's weights the ways other Keras files hold them, and
fvc-evaluate must give the same probabilities from each:
  theano   backend attribute 'theano', every kernel turned by 180 degrees
  model    the model.save layout: weights under /model_weights, model_config on the root
  vlen     layer_names and weight_names as variable-length strings

Usage: check_keras_files.py PATH_TO_FVC_FINETUNE PATH_TO_FVC_EVALUATE
Exits 77 (skipped) when numpy or h5py is missing.
"""

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import h5py
    import numpy as np
except ImportError as missing:
    print(f"skipped: {missing}; install python3-h5py to run this check")
    sys.exit(77)

SPLIT_SIZES = {"Training": 60, "PublicTest": 20, "PrivateTest": 30}
# fvc computes in float32 and numpy here in float64; they agree to about 3e-8.
# The tolerance sits well below the effect of a wrong kernel layout (about 1e-4
# here), which the control comparisons below make sure of.
TOLERANCE = 1e-6


def write_random_csv(path, rng):
    with open(path, "w", newline="") as out:
        out.write("emotion,pixels,Usage\n")
        for usage, count in SPLIT_SIZES.items():
            for _ in range(count):
                pixels = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
                out.write(f"{rng.integers(0, 7)},{pixels},{usage}\n")


def read_split(path, usage):
    images, labels = [], []
    with open(path) as source:
        for row in csv.DictReader(source):
            if row["Usage"] == usage:
                images.append(np.array(row["pixels"].split(), dtype=np.float64).reshape(48, 48))
                labels.append(int(row["emotion"]))
    return np.stack(images), np.array(labels)


def decoded(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def check_layout(weights, layers):
    assert decoded([weights.attrs["backend"]]) == ["tensorflow"], weights.attrs["backend"]
    assert decoded([weights.attrs["keras_version"]])[0].startswith("2."), "keras_version"
    names = decoded(weights.attrs["layer_names"])
    assert names == [layer["name"] for layer in layers], f"layer_names {names}"

    _, side, _, channels = layers[0]["config"]["batch_input_shape"]
    features = None
    for layer in layers[1:]:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        weight_names = decoded(weights[name].attrs["weight_names"])
        if kind == "MaxPooling2D":
            side //= 2
        elif kind == "Flatten":
            features = side * side * channels
        if kind == "BatchNormalization":
            expected = [f"{name}/{weight}:0"
                        for weight in ("gamma", "beta", "moving_mean", "moving_variance")]
            assert weight_names == expected, weight_names
            for weight in expected:
                shape = weights[name][weight].shape
                assert shape == (channels,), f"{weight} has shape {shape}, expected ({channels},)"
            continue
        if kind not in ("Conv2D", "Dense"):
            assert weight_names == [], f"{name} has weights {weight_names}"
            continue

        assert weight_names == [f"{name}/kernel:0", f"{name}/bias:0"], weight_names
        if kind == "Conv2D":
            expected = (3, 3, channels, config["filters"])
            channels = config["filters"]
        else:
            expected = (features, config["units"])
            features = config["units"]
        kernel = weights[name][f"{name}/kernel:0"]
        bias = weights[name][f"{name}/bias:0"]
        assert kernel.shape == expected, f"{name} kernel {kernel.shape}, expected {expected}"
        assert bias.shape == (expected[-1],), f"{name} bias {bias.shape}"
        assert kernel.dtype == np.float32, f"{name} kernel dtype {kernel.dtype}"
    return names


def forward(images, layers, weights, flip_kernels=False, transpose_fc7=False):
    x = np.repeat(images[..., None] / 255.0, 3, axis=3)
    for layer in layers[1:]:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        if kind == "Conv2D":
            kernel = weights[name][f"{name}/kernel:0"][()].astype(np.float64)
            if flip_kernels:
                kernel = kernel[::-1, ::-1]
            bias = weights[name][f"{name}/bias:0"][()].astype(np.float64)
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            height, width = x.shape[1], x.shape[2]
            out = np.zeros((x.shape[0], height, width, kernel.shape[3]))
            for i in range(3):
                for j in range(3):
                    out += padded[:, i:i + height, j:j + width, :] @ kernel[i, j]
            x = out + bias
            if config["activation"] == "relu":
                x = np.maximum(x, 0.0)
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = (
                weights[name][f"{name}/{weight}:0"][()].astype(np.float64)
                for weight in ("gamma", "beta", "moving_mean", "moving_variance"))
            x = (x - mean) / np.sqrt(variance + config["epsilon"]) * gamma + beta
        elif kind == "Activation":
            assert config["activation"] == "relu", config
            x = np.maximum(x, 0.0)
        elif kind == "Dropout":
            pass  # inference: Keras's Dropout passes its input on
        elif kind == "MaxPooling2D":
            n, height, width, c = x.shape
            x = x[:, : height // 2 * 2, : width // 2 * 2, :]
            x = x.reshape(n, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))
        elif kind == "Flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "Dense":
            kernel = weights[name][f"{name}/kernel:0"][()].astype(np.float64)
            bias = weights[name][f"{name}/bias:0"][()].astype(np.float64)
            if transpose_fc7 and name == "fc7":
                kernel = kernel.T
            x = x @ kernel + bias
            if config["activation"] == "relu":
                x = np.maximum(x, 0.0)
            elif config["activation"] == "softmax":
                x = np.exp(x - x.max(axis=1, keepdims=True))
                x /= x.sum(axis=1, keepdims=True)
        else:
            raise AssertionError(f"unexpected layer {name} ({kind})")
    return x


def copy_file_attributes(source, target):
    for key, value in source.attrs.items():
        target.attrs[key] = value


def write_theano_variant(source, path, layers):
    with h5py.File(path, "w") as out:
        for name in source:
            source.copy(name, out)
        copy_file_attributes(source, out)
        out.attrs["backend"] = np.bytes_("theano")
        for layer in layers:
            if layer["class_name"] == "Conv2D":
                kernel = out[layer["name"]][f"{layer['name']}/kernel:0"]
                kernel[...] = kernel[()][::-1, ::-1]


def write_model_save_variant(source, path, model):
    with h5py.File(path, "w") as out:
        group = out.create_group("model_weights")
        for name in source:
            source.copy(name, group)
        copy_file_attributes(source, group)
        out.attrs["model_config"] = np.bytes_(json.dumps(model))
        out.attrs["keras_version"] = source.attrs["keras_version"]
        out.attrs["backend"] = source.attrs["backend"]


def write_vlen_variant(source, path):
    text = h5py.special_dtype(vlen=str)
    with h5py.File(path, "w") as out:
        for name in source:
            source.copy(name, out)
        copy_file_attributes(source, out)
        out.attrs.create("layer_names", decoded(source.attrs["layer_names"]), dtype=text)
        for name in decoded(source.attrs["layer_names"]):
            weight_names = decoded(source[name].attrs["weight_names"])
            if weight_names:
                out[name].attrs.create("weight_names", weight_names, dtype=text)


def read_predictions(path):
    with open(path) as source:
        rows = list(csv.reader(source))
    header, body = rows[0], rows[1:]
    assert header[:3] == ["row", "emotion", "predicted"], header
    labels = np.array([int(r[1]) for r in body])
    probabilities = np.array([[float(v) for v in r[3:]] for r in body])
    return labels, probabilities


def main():
    finetune, evaluate = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20170501)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = folder / "random.csv"
        write_random_csv(data, rng)
        # float32 throughout: the probabilities are compared with numpy's to 1e-6.
        subprocess.run([finetune, "--recipe", "original", "--data", str(data), "--epochs", "1", "--batch-size", "20",
                        "--base-filters", "2", "--threads", "1", "--precision", "float32",
                        "--out", str(folder / "run")],
                       check=True, stdout=subprocess.DEVNULL)

        model = json.loads((folder / "run" / "model.json").read_text())
        assert model["class_name"] == "Model", model["class_name"]
        layers = model["config"]["layers"]
        with h5py.File(folder / "run" / "weights.h5", "r") as weights:
            names = check_layout(weights, layers)
            images, labels = read_split(data, "PrivateTest")
            expected = forward(images, layers, weights)
            # The same pass with every kernel turned by 180 degrees (Theano's order) must
            # disagree clearly, or the comparison below could not tell the layouts apart.
            flipped = forward(images, layers, weights, flip_kernels=True)
            transposed = forward(images, layers, weights, transpose_fc7=True)

        fvc_labels, fvc_probabilities = read_predictions(folder / "run" / "predictions_privatetest.csv")
        assert (fvc_labels == labels).all(), "true labels differ"
        difference = np.abs(fvc_probabilities - expected).max()
        control = min(np.abs(fvc_probabilities - flipped).max(),
                      np.abs(fvc_probabilities - transposed).max())
        print(f"{len(names)} layers checked; {len(labels)} PrivateTest images; "
              f"largest probability difference {difference:.2e} (tolerance {TOLERANCE}); "
              f"with a wrong layout at least {control:.2e}; probabilities span "
              f"{expected.min():.4f}..{expected.max():.4f}")
        assert difference < TOLERANCE, f"fvc and numpy disagree by {difference}"
        assert control > 10 * TOLERANCE, f"a wrong layout changes the output by only {control}"

        with h5py.File(folder / "run" / "weights.h5", "r") as source:
            write_theano_variant(source, folder / "theano.h5", layers)
            write_model_save_variant(source, folder / "model.h5", model)
            write_vlen_variant(source, folder / "vlen.h5")
        for variant in ("theano", "model", "vlen"):
            out = folder / f"evaluate-{variant}"
            subprocess.run([evaluate, "--model", str(folder / "run" / "model.json"),
                            "--weights", str(folder / f"{variant}.h5"), "--data", str(data),
                            "--split", "PrivateTest", "--threads", "1", "--precision", "float32",
                            "--out", str(out)],
                           check=True, stdout=subprocess.DEVNULL)
            _, probabilities = read_predictions(out / "predictions_privatetest.csv")
            variant_difference = np.abs(probabilities - expected).max()
            print(f"{variant} weights: largest probability difference {variant_difference:.2e}")
            assert variant_difference < TOLERANCE, f"{variant} weights disagree by {variant_difference}"

        check_not_finite_warning(evaluate, data, folder)
        check_batch_norm_dropout(finetune, data, folder)
    print("ok")


def check_not_finite_warning(evaluate, data, folder):
    """A weight set to NaN still loads, as in Keras, but fvc-evaluate names its layer."""
    nan_weights = folder / "nan.h5"
    nan_weights.write_bytes((folder / "run" / "weights.h5").read_bytes())
    with h5py.File(nan_weights, "r+") as weights:
        kernel = weights["conv4_3"]["conv4_3"]["kernel:0"]
        values = kernel[()]
        values.flat[0] = np.nan
        kernel[...] = values
    scored = subprocess.run([evaluate, "--model", str(folder / "run" / "model.json"),
                             "--weights", str(nan_weights), "--data", str(data),
                             "--threads", "1", "--out", str(folder / "evaluate-nan")],
                            check=True, capture_output=True, text=True)
    assert "warning: NaN or infinite weights in backbone.conv4_3.weight" in scored.stdout, \
        scored.stdout
    print("NaN weight: warned")


def check_batch_norm_dropout(finetune, data, folder):
    run = folder / "bn"
    subprocess.run([finetune, "--recipe", "original", "--data", str(data), "--epochs", "1", "--batch-size", "20",
                    "--base-filters", "2", "--threads", "1", "--batch-norm", "--dropout", "0.3",
                    "--precision", "float32", "--out", str(run)],
                   check=True, stdout=subprocess.DEVNULL)
    layers = json.loads((run / "model.json").read_text())["config"]["layers"]
    kinds = [layer["class_name"] for layer in layers]
    assert kinds.count("BatchNormalization") == 13 and kinds.count("Dropout") == 2, kinds
    with h5py.File(run / "weights.h5", "r") as weights:
        names = check_layout(weights, layers)
        images, _ = read_split(data, "PrivateTest")
        expected = forward(images, layers, weights)
    _, probabilities = read_predictions(run / "predictions_privatetest.csv")
    difference = np.abs(probabilities - expected).max()
    print(f"batch norm and dropout: {len(names)} layers checked; largest probability "
          f"difference {difference:.2e}")
    assert difference < TOLERANCE, f"fvc and numpy disagree by {difference}"


if __name__ == "__main__":
    main()
