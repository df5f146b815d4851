"""Real data available offline (sample photos from installed wheels, Fashion-MNIST from IDX files) and
readers of datasets the user holds (ImageNet, ClickMe, FRSign)."""

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
from xjax.data._frsign import FRSIGN_URL as FRSIGN_URL
from xjax.data._frsign import FRSignAnnotations as FRSignAnnotations
from xjax.data._frsign import frsign as frsign
from xjax.data._frsign import read_frsign_annotations as read_frsign_annotations
from xjax.data._frsign import write_synthetic_frsign as write_synthetic_frsign
from xjax.data._hdfstore import Frame as Frame
from xjax.data._hdfstore import UnreadableStoreError as UnreadableStoreError
from xjax.data._hdfstore import UnsafeStoreError as UnsafeStoreError
from xjax.data._hdfstore import read_frame as read_frame
from xjax.data._imagenet import IMAGENET_URL as IMAGENET_URL
from xjax.data._imagenet import ImageFolder as ImageFolder
from xjax.data._imagenet import ImageNetClass as ImageNetClass
from xjax.data._imagenet import class_index as class_index
from xjax.data._imagenet import image_folder as image_folder
from xjax.data._imagenet import imagenet_classes as imagenet_classes
from xjax.data._photos import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from xjax.data._photos import SAMPLE_PHOTOS as SAMPLE_PHOTOS
from xjax.data._photos import Photo as Photo
from xjax.data._photos import decode_image as decode_image
from xjax.data._photos import image_files as image_files
from xjax.data._photos import load_images as load_images
from xjax.data._photos import read_image as read_image
from xjax.data._photos import resize_center_crop as resize_center_crop
from xjax.data._photos import sample_photos as sample_photos

__all__ = [
    "IMAGENET_URL",
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "ImageNetClass",
    "class_index",
    "decode_image",
    "image_folder",
    "imagenet_classes",
    "image_files",
    "read_image",
    "CLICKME_URL",
    "FASHION_MNIST_DIR",
    "FRSIGN_URL",
    "FRSignAnnotations",
    "Frame",
    "SAMPLE_PHOTOS",
    "Photo",
    "UnreadableStoreError",
    "UnsafeStoreError",
    "clickme",
    "clickme_preprocess",
    "decoy_patch",
    "decoy_swatch",
    "encode_example",
    "fashion_mnist",
    "fashion_mnist_arrays",
    "frsign",
    "load_images",
    "parse_example",
    "read_tfrecord",
    "read_frame",
    "read_frsign_annotations",
    "read_idx",
    "resize_center_crop",
    "sample_photos",
    "write_synthetic_frsign",
    "write_tfrecord",
]
