"""Lens: a browsable concept atlas (CRAFT concepts, importance, crops, feature visualizations,
attribution maps, strategic clusters) built for any model and dataset, as a static site."""

from xjax.lens._build import build_lens as build_lens
from xjax.lens._build import class_slug as class_slug
from xjax.lens._build import dataset_arrays as dataset_arrays
from xjax.lens._build import sample_crops as sample_crops
from xjax.lens._serve import serve as serve

__all__ = ["build_lens", "class_slug", "dataset_arrays", "sample_crops", "serve"]
