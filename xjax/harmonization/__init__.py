"""Harmonization: train models whose saliency agrees with human feature importance."""

from xjax.harmonization._alignment import HUMAN_SPEARMAN_CEILING as HUMAN_SPEARMAN_CEILING
from xjax.harmonization._alignment import Alignment as Alignment
from xjax.harmonization._alignment import alignment as alignment
from xjax.harmonization._decoy import garment_maps as garment_maps
from xjax.harmonization._decoy import harmonize_decoy as harmonize_decoy
from xjax.harmonization._loss import binomial_pyramid as binomial_pyramid
from xjax.harmonization._loss import harmonization_loss as harmonization_loss
from xjax.harmonization._loss import make_train_step as make_train_step
from xjax.harmonization._loss import pyramidal_mse as pyramidal_mse
from xjax.harmonization._loss import standardize_cut as standardize_cut

__all__ = ["HUMAN_SPEARMAN_CEILING", "Alignment", "alignment", "binomial_pyramid",
           "garment_maps", "harmonization_loss", "harmonize_decoy", "make_train_step",
           "pyramidal_mse", "standardize_cut"]
