"""1-Lipschitz networks in Flax nnx: constrained layers, 1-Lipschitz activations and pooling,
HKR losses, certificates, and the export to plain Dense/Conv networks."""

from xjax.lipschitz._layers import FrobeniusDense as FrobeniusDense
from xjax.lipschitz._layers import FullSort as FullSort
from xjax.lipschitz._layers import GroupSort as GroupSort
from xjax.lipschitz._layers import GroupSort2 as GroupSort2
from xjax.lipschitz._layers import InvertibleDownSampling as InvertibleDownSampling
from xjax.lipschitz._layers import L2NormPool as L2NormPool
from xjax.lipschitz._layers import OrthogonalConv as OrthogonalConv
from xjax.lipschitz._layers import PowerIterate as PowerIterate
from xjax.lipschitz._layers import ScaledGlobalL2NormPool as ScaledGlobalL2NormPool
from xjax.lipschitz._layers import SpectralConv as SpectralConv
from xjax.lipschitz._layers import SpectralDense as SpectralDense
from xjax.lipschitz._layers import export as export
from xjax.lipschitz._layers import full_sort as full_sort
from xjax.lipschitz._layers import group_sort as group_sort
from xjax.lipschitz._layers import group_sort2 as group_sort2
from xjax.lipschitz._layers import invertible_downsampling as invertible_downsampling
from xjax.lipschitz._layers import l2_norm_pool as l2_norm_pool
from xjax.lipschitz._layers import power_update as power_update
from xjax.lipschitz._layers import scaled_global_l2_norm_pool as scaled_global_l2_norm_pool
from xjax.lipschitz._losses import certificate as certificate
from xjax.lipschitz._losses import certified_accuracy as certified_accuracy
from xjax.lipschitz._losses import hinge as hinge
from xjax.lipschitz._losses import hkr as hkr
from xjax.lipschitz._losses import kr as kr
from xjax.lipschitz._losses import multiclass_hkr as multiclass_hkr
from xjax.lipschitz._losses import tau_cce as tau_cce
from xjax.lipschitz._models import LipschitzCNN as LipschitzCNN
from xjax.lipschitz._models import lipschitz_cnn as lipschitz_cnn
from xjax.lipschitz._normalizers import bjorck as bjorck
from xjax.lipschitz._normalizers import conv_lipschitz_factor as conv_lipschitz_factor
from xjax.lipschitz._normalizers import frobenius_normalize as frobenius_normalize
from xjax.lipschitz._normalizers import operator_norm as operator_norm
from xjax.lipschitz._normalizers import power_iteration as power_iteration
from xjax.lipschitz._normalizers import spectral_norm_bound as spectral_norm_bound
from xjax.lipschitz._normalizers import spectral_normalize as spectral_normalize

__all__ = [
    "FrobeniusDense",
    "FullSort",
    "GroupSort",
    "GroupSort2",
    "InvertibleDownSampling",
    "L2NormPool",
    "LipschitzCNN",
    "OrthogonalConv",
    "PowerIterate",
    "ScaledGlobalL2NormPool",
    "SpectralConv",
    "SpectralDense",
    "bjorck",
    "certificate",
    "certified_accuracy",
    "conv_lipschitz_factor",
    "export",
    "frobenius_normalize",
    "full_sort",
    "group_sort",
    "group_sort2",
    "hinge",
    "hkr",
    "invertible_downsampling",
    "kr",
    "l2_norm_pool",
    "lipschitz_cnn",
    "multiclass_hkr",
    "operator_norm",
    "power_iteration",
    "power_update",
    "scaled_global_l2_norm_pool",
    "spectral_norm_bound",
    "spectral_normalize",
    "tau_cce",
]
