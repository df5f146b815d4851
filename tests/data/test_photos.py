import socket

import numpy as np
import pytest

import xjax


def test_sample_photos_are_real_and_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("sample_photos tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    photos = xjax.data.sample_photos()
    names = [p.name for p in photos]
    assert {"coffee", "chelsea", "astronaut", "rocket", "camera", "china", "flower",
            "grace_hopper"} <= set(names)
    for p in photos:
        assert p.image.dtype == np.uint8 and p.image.ndim == 3 and p.image.shape[-1] == 3
        assert min(p.image.shape[:2]) >= 300 and p.image.std() > 10  # a real photo, not blank
    shapes = {p.name: p.image.shape for p in photos}
    assert shapes["coffee"] == (400, 600, 3) and shapes["chelsea"] == (300, 451, 3)
    assert shapes["china"] == (427, 640, 3) and shapes["grace_hopper"] == (600, 512, 3)


def test_resize_center_crop():
    img = np.zeros((300, 450, 3), np.uint8)
    img[:, 225:] = 255
    out = xjax.data.resize_center_crop(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out[:, :100].max() < 0.05 and out[:, -100:].min() > 0.95  # centred: left dark, right bright
    with pytest.raises(ValueError, match="image"):
        xjax.data.resize_center_crop(np.zeros((3, 32, 32)), 16)


def test_errors():
    with pytest.raises(ValueError, match="unknown names"):
        xjax.data.sample_photos(["lena"])
    with pytest.raises(FileNotFoundError, match="images"):
        xjax.data.load_images("/no/such/dir")
