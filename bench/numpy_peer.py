#!/usr/bin/python3
"""The numpy side of fvc-bench-data: the same step on the same file, done the fast numpy way.

Usage: numpy_peer.py STEP FILE [CACHE]. Prints `seconds <s>` and `check <values>` lines; the
parent process compares the checks with fvc's and reads this process's peak memory itself.

CSV parsing is vectorized over whole blocks of rows (no Python loop per row or per pixel):
every number in FER2013's pixel field has 1 to 3 digits and ends at a space or at the field's
comma, so the bytes just before each end give its value directly. The rows are validated as
strictly as that allows: three fields, label 0..6, 2304 pixels of 0..255, a known Usage.
"""
import sys
import time
import zlib

import numpy as np

HEADER = b"emotion,pixels,Usage"
PIXELS = 48 * 48
USAGES = {b"Training": 0, b"PublicTest": 1, b"PrivateTest": 2}
ROWS_PER_BLOCK = 256


def fail(message):
    raise SystemExit(f"numpy_peer: {message}")


def parse_block(buf, starts, ends, images, labels, splits, first_row):
    """Parses the rows [starts[i], ends[i]) of `buf` (a uint8 array) into row first_row on."""
    count = starts.size
    lo, hi = starts[0], ends[-1]
    chunk = buf[lo:hi]
    rel_starts = starts - lo
    rel_ends = ends - lo

    commas = np.flatnonzero(chunk == 44)
    if commas.size != 2 * count:
        fail(f"a row in rows {first_row + 1}..{first_row + count} lacks 3 fields")
    commas = commas.reshape(count, 2)
    if not (np.all(commas[:, 0] == rel_starts + 1) and np.all(commas[:, 1] < rel_ends)):
        fail(f"a row in rows {first_row + 1}..{first_row + count} has a label of other than one digit")

    label = chunk[rel_starts].astype(np.int64) - 48
    if label.min() < 0 or label.max() > 6:
        fail("label outside 0..6")

    # Number ends: every space, and the comma closing each pixel field.
    is_end = chunk == 32
    is_end[commas[:, 1]] = True
    num_ends = np.flatnonzero(is_end)
    if num_ends.size != count * PIXELS:
        fail(f"rows {first_row + 1}..{first_row + count} do not hold {PIXELS} pixels each")
    per_row = np.searchsorted(num_ends, commas[:, 1], side="right")
    if not np.all(np.diff(per_row, prepend=0) == PIXELS):
        fail(f"a row in rows {first_row + 1}..{first_row + count} has other than {PIXELS} pixels")

    d1 = chunk[num_ends - 1] - np.uint8(48)
    d2 = chunk[num_ends - 2] - np.uint8(48)
    d3 = chunk[num_ends - 3] - np.uint8(48)
    d4 = chunk[num_ends - 4] - np.uint8(48)
    has2 = d2 < 10
    has3 = has2 & (d3 < 10)
    if np.any(d1 >= 10) or np.any(has3 & (d4 < 10)):
        fail("a pixel is not an integer of 1 to 3 digits")
    value = d1.astype(np.uint16)
    value += has2 * (d2.astype(np.uint16) * 10)
    value += has3 * (d3.astype(np.uint16) * 100)
    if value.max() > 255:
        fail("a pixel is above 255")
    images[first_row:first_row + count] = value.astype(np.uint8).reshape(count, 48, 48)
    labels[first_row:first_row + count] = label

    for i in range(count):
        usage = bytes(chunk[commas[i, 1] + 1:rel_ends[i]])
        split = USAGES.get(usage)
        if split is None:
            fail(f"row {first_row + i + 1} has Usage {usage!r}")
        splits[first_row + i] = split


def parse_csv(data):
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    if data.endswith(b"\n") is False:
        newlines = np.append(newlines, buf.size)
    line_ends = newlines.copy()
    has_cr = buf[np.maximum(line_ends - 1, 0)] == 13
    line_ends[has_cr] -= 1
    line_starts = np.concatenate(([0], newlines[:-1] + 1))
    header = data[line_starts[0]:line_ends[0]].removeprefix(b"\xef\xbb\xbf")
    if header != HEADER:
        fail(f"header is {header[:24]!r}")
    starts, ends = line_starts[1:], line_ends[1:]
    # Trailing blank lines are allowed; blank lines elsewhere are not.
    blank = ends == starts
    keep = np.flatnonzero(~blank)
    if keep.size and np.any(blank[:keep[-1]]):
        fail("blank line between rows")
    starts, ends = starts[keep], ends[keep]

    rows = starts.size
    images = np.empty((rows, 48, 48), np.uint8)
    labels = np.empty(rows, np.int64)
    splits = np.empty(rows, np.uint8)
    for first in range(0, rows, ROWS_PER_BLOCK):
        last = min(first + ROWS_PER_BLOCK, rows)
        parse_block(buf, starts[first:last], ends[first:last], images, labels, splits, first)
    return images, labels, splits


def read_gzip(path):
    with open(path, "rb") as file:
        compressed = file.read()
    # wbits 47 = gzip or zlib header; several members are read one after another as fvc does.
    parts = []
    while compressed:
        inflater = zlib.decompressobj(47)
        parts.append(inflater.decompress(compressed))
        if not inflater.eof:
            fail("gzip stream ends early")
        compressed = inflater.unused_data
        if compressed[:2] != b"\x1f\x8b":
            break
    return b"".join(parts)


def read_cache(path):
    import h5py

    with h5py.File(path, "r") as file:
        images = file["images"][()]
        labels = file["labels"][()]
        splits = file["splits"][()]
    # fvc checks the images against a stored CRC-64; zlib's CRC-32 is the stdlib's closest.
    zlib.crc32(images)
    return images, labels, splits


def checks(images, labels, splits):
    return (f"check rows {images.shape[0]} pixel_sum {int(images.sum(dtype=np.int64))} "
            f"label_sum {int(labels.sum())} split_sum {int(splits.sum(dtype=np.int64))}")


def main():
    step, path = sys.argv[1], sys.argv[2]
    if step == "baseline":
        import h5py  # noqa: F401  (the cache steps have it loaded too)
        print("seconds 0")
        return
    if step == "epoch":
        images, labels, _ = read_cache(path)
        start = time.perf_counter()
        order = np.random.default_rng(1).permutation(images.shape[0])
        label_sum = 0
        batches = 0
        for first in range(0, order.size, 250):
            index = order[first:first + 250]
            batch = images[index].astype(np.float32)
            batch *= np.float32(1 / 255)
            batch = np.repeat(batch[:, None], 3, axis=1)
            label_sum += int(labels[index].sum())
            batches += 1
        print(f"seconds {time.perf_counter() - start:.6f}")
        print(f"check batches {batches} label_sum {label_sum}")
        return

    if step == "zlib-inflate":
        start = time.perf_counter()
        text = read_gzip(path)
        print(f"seconds {time.perf_counter() - start:.6f}")
        print(f"check bytes {len(text)}")
        return

    start = time.perf_counter()
    if step == "csv-gz":
        result = parse_csv(read_gzip(path))
    elif step == "csv":
        with open(path, "rb") as file:
            result = parse_csv(file.read())
    elif step == "cache-load":
        result = read_cache(path)
    elif step == "read-cached":
        # fvc's fresh-cache path: fingerprint the source, load the cache.
        with open(sys.argv[3], "rb") as file:
            zlib.crc32(file.read())
        result = read_cache(path)
    else:
        fail(f"unknown step {step}")
    print(f"seconds {time.perf_counter() - start:.6f}")
    print(checks(*result))


if __name__ == "__main__":
    main()
