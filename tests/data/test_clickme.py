"""ClickMe reader: TFRecord framing, tf.train.Example parsing, conversion, without TensorFlow."""

import io

import numpy as np
import pytest
from PIL import Image

import xjax

D = xjax.data


def _jpeg(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _record(rng, label):
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    heat = np.zeros((16, 16), np.uint8)
    heat[4:10, 2:8] = 200
    return D.encode_example({"image": _jpeg(image), "heatmap": _jpeg(heat), "label": label}), \
        image, heat


def test_tfrecord_and_example_round_trip(tmp_path):
    payloads = [D.encode_example({"a": b"xyz", "b": [3, -2, 1 << 40], "c": [0.5, -1.25]}),
                D.encode_example({"label": 7})]
    path = str(tmp_path / "x.tfrecords")
    D.write_tfrecord(path, payloads)
    back = list(D.read_tfrecord(path, verify_data=True))
    assert back == payloads
    ex = D.parse_example(back[0])
    assert ex == {"a": [b"xyz"], "b": [3, -2, 1 << 40], "c": [0.5, -1.25]}
    assert D.parse_example(back[1]) == {"label": [7]}
    # a flipped byte in a length is detected by its CRC32C
    raw = bytearray((tmp_path / "x.tfrecords").read_bytes())
    raw[0] ^= 1
    (tmp_path / "x.tfrecords").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        list(D.read_tfrecord(path))


def test_crc32c_known_value():
    from xjax.data._clickme import _crc32c

    assert _crc32c(b"123456789") == 0xE3069283                # the CRC-32C check value


def test_clickme_conversion(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "clickme"
    src.mkdir()
    records = [_record(rng, i) for i in range(5)]
    D.write_tfrecord(str(src / "val-0.tfrecords"), [r[0] for r in records[:3]])
    D.write_tfrecord(str(src / "val-1.tfrecords"), [r[0] for r in records[3:]])
    ds = D.clickme("val", source_dir=str(src), data_dir=str(tmp_path / "tfds"), image_size=16)
    assert len(ds) == 5
    for i, (_, image, _) in enumerate(records):
        item = ds[i]
        assert item["label"] == i and item["image"].shape == (16, 16, 3)
        decoded = np.asarray(Image.open(io.BytesIO(_jpeg(image))).convert("RGB"))
        np.testing.assert_array_equal(item["image"], decoded)
        assert abs(int(item["heatmap"][6, 4, 0]) - 200) < 8 and int(item["heatmap"][0, 15, 0]) < 8
    img, hm = D.clickme_preprocess(np.stack([ds[0]["image"]]), np.stack([ds[0]["heatmap"]]),
                                   size=32)
    assert img.shape == (1, 32, 32, 3) and hm.shape == (1, 32, 32)
    assert float(img.max()) <= 1.0 and float(hm[0, 14, 10]) > float(hm[0, 2, 30])


def test_missing_directory_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="storage.googleapis.com"):
        D.clickme("val", source_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="val-<i>.tfrecords"):
        D.clickme("val", source_dir=str(tmp_path))
