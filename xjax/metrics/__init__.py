"""Metrics that judge explanations: fidelity, stability, complexity, randomization checks,
and MeGe/ReCo. Each factory returns a pure function of ``(params, x, y, maps)`` (or of an
explainer when the metric re-explains) giving one value per image, ``f32[N]``."""

from xjax.metrics._complexity import complexity as complexity
from xjax.metrics._complexity import sparseness as sparseness
from xjax.metrics._fidelity import average_drop as average_drop
from xjax.metrics._fidelity import average_gain as average_gain
from xjax.metrics._fidelity import average_increase as average_increase
from xjax.metrics._fidelity import deletion as deletion
from xjax.metrics._fidelity import insertion as insertion
from xjax.metrics._fidelity import mu_fidelity as mu_fidelity
from xjax.metrics._representativity import FoldModels as FoldModels
from xjax.metrics._representativity import MegeReco as MegeReco
from xjax.metrics._representativity import explain_folds as explain_folds
from xjax.metrics._representativity import mege_reco as mege_reco
from xjax.metrics._representativity import mege_reco_protocol as mege_reco_protocol
from xjax.metrics._representativity import train_folds as train_folds
from xjax.metrics._robustness import robustness_sr as robustness_sr
from xjax.metrics._stability import average_stability as average_stability
from xjax.metrics._stability import label_randomization as label_randomization
from xjax.metrics._stability import model_randomization as model_randomization
from xjax.metrics._stability import randomize_params as randomize_params
from xjax.metrics._stability import ssim as ssim
from xjax.metrics._utility import MetaPredictor as MetaPredictor
from xjax.metrics._utility import UtilityResult as UtilityResult
from xjax.metrics._utility import cnn_meta_predictor as cnn_meta_predictor
from xjax.metrics._utility import explanation_weights as explanation_weights
from xjax.metrics._utility import similarity_meta_predictor as similarity_meta_predictor
from xjax.metrics._utility import simulatability as simulatability
from xjax.metrics._utility import utility_protocol as utility_protocol
from xjax.metrics._utility import utility_score as utility_score

__all__ = [
    "FoldModels",
    "MegeReco",
    "MetaPredictor",
    "UtilityResult",
    "average_drop",
    "average_gain",
    "average_increase",
    "average_stability",
    "cnn_meta_predictor",
    "explanation_weights",
    "complexity",
    "deletion",
    "explain_folds",
    "insertion",
    "label_randomization",
    "mege_reco",
    "mege_reco_protocol",
    "model_randomization",
    "mu_fidelity",
    "randomize_params",
    "robustness_sr",
    "similarity_meta_predictor",
    "simulatability",
    "sparseness",
    "ssim",
    "train_folds",
    "utility_protocol",
    "utility_score",
]
