"""Concepts: dictionary learning on activations (NMF, PCA, ICA, k-means, sparse coding, TopK
SAE), CRAFT (concept extraction, Sobol importance, recursion, concept attribution maps), concept
metrics and the holistic comparison of extractors.

Every factorization is a factory returning a :class:`Factorization` of pure functions
``fit(a: f32[M, F], *, key=None) -> bank`` (a frozen NamedTuple with ``components: f32[R, F]``),
``transform(bank, a) -> f32[..., R]`` and ``inverse(bank, u) -> f32[..., F]``.
"""

from xjax.concepts._craft import Craft as Craft
from xjax.concepts._craft import CraftBank as CraftBank
from xjax.concepts._craft import craft as craft
from xjax.concepts._craft import crop_boxes as crop_boxes
from xjax.concepts._factorization import Factorization as Factorization
from xjax.concepts._kmeans import KMeansBank as KMeansBank
from xjax.concepts._kmeans import kmeans as kmeans
from xjax.concepts._linear import ICABank as ICABank
from xjax.concepts._linear import PCABank as PCABank
from xjax.concepts._linear import ica as ica
from xjax.concepts._linear import pca as pca
from xjax.concepts._metrics import concept_deletion as concept_deletion
from xjax.concepts._metrics import concept_insertion as concept_insertion
from xjax.concepts._metrics import concept_mufidelity as concept_mufidelity
from xjax.concepts._metrics import frechet_distance as frechet_distance
from xjax.concepts._metrics import hoyer as hoyer
from xjax.concepts._metrics import linear_assignment as linear_assignment
from xjax.concepts._metrics import ood_score as ood_score
from xjax.concepts._metrics import r2_score as r2_score
from xjax.concepts._metrics import relative_l2 as relative_l2
from xjax.concepts._metrics import sparsity as sparsity
from xjax.concepts._metrics import stability as stability
from xjax.concepts._nmf import NMFBank as NMFBank
from xjax.concepts._nmf import nmf as nmf
from xjax.concepts._nmf import nndsvd as nndsvd
from xjax.concepts._nmf import nnls as nnls
from xjax.concepts._report import StrategicClusters as StrategicClusters
from xjax.concepts._report import holistic_report as holistic_report
from xjax.concepts._report import report_markdown as report_markdown
from xjax.concepts._report import strategic_clusters as strategic_clusters
from xjax.concepts._sparse import SAEBank as SAEBank
from xjax.concepts._sparse import SparseCodingBank as SparseCodingBank
from xjax.concepts._sparse import lasso_codes as lasso_codes
from xjax.concepts._sparse import sparse_coding as sparse_coding
from xjax.concepts._sparse import topk_sae as topk_sae

__all__ = [
    "Craft",
    "CraftBank",
    "Factorization",
    "ICABank",
    "KMeansBank",
    "NMFBank",
    "PCABank",
    "SAEBank",
    "SparseCodingBank",
    "StrategicClusters",
    "concept_deletion",
    "concept_insertion",
    "concept_mufidelity",
    "craft",
    "crop_boxes",
    "frechet_distance",
    "holistic_report",
    "hoyer",
    "ica",
    "kmeans",
    "lasso_codes",
    "linear_assignment",
    "nmf",
    "nndsvd",
    "nnls",
    "ood_score",
    "pca",
    "r2_score",
    "relative_l2",
    "report_markdown",
    "sparse_coding",
    "sparsity",
    "stability",
    "strategic_clusters",
    "topk_sae",
]
