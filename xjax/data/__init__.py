"""Real data available offline: sample photos from installed wheels, Fashion-MNIST from IDX files."""

from xjax.data._clickme import CLICKME_URL as CLICKME_URL
from xjax.data._clickme import clickme as clickme
from xjax.data._clickme import clickme_preprocess as clickme_preprocess
from xjax.data._clickme import encode_example as encode_example
from xjax.data._clickme import parse_example as parse_example
from xjax.data._clickme import read_tfrecord as read_tfrecord
from xjax.data._clickme import write_tfrecord as write_tfrecord
from xjax.data._decoy import decoy_patch as decoy_patch
from xjax.data._decoy import decoy_swatch as decoy_swatch
from xjax.data._fashion_mnist import FASHION_MNIST_DIR as FASHION_MNIST_DIR
from xjax.data._fashion_mnist import fashion_mnist as fashion_mnist
from xjax.data._fashion_mnist import fashion_mnist_arrays as fashion_mnist_arrays
from xjax.data._fashion_mnist import read_idx as read_idx
from xjax.data._photos import SAMPLE_PHOTOS as SAMPLE_PHOTOS
from xjax.data._photos import Photo as Photo
from xjax.data._photos import load_images as load_images
from xjax.data._photos import resize_center_crop as resize_center_crop
from xjax.data._photos import sample_photos as sample_photos

__all__ = [
    "CLICKME_URL",
    "FASHION_MNIST_DIR",
    "SAMPLE_PHOTOS",
    "Photo",
    "clickme",
    "clickme_preprocess",
    "decoy_patch",
    "decoy_swatch",
    "encode_example",
    "fashion_mnist",
    "fashion_mnist_arrays",
    "load_images",
    "parse_example",
    "read_tfrecord",
    "read_idx",
    "resize_center_crop",
    "sample_photos",
    "write_tfrecord",
]
