"""Models: Flax bridges, the model zoo, weight import/export and checkpoints.

Every zoo constructor returns a :class:`xjax.typing.Model` (``model_fn``, ``params``,
``features_fn``, ``head_fn``, ``input_shape``, ``class_names``); ``model_fn`` takes images
``f32[B, H, W, C]`` in [0, 1] and applies the model's own normalization.
"""

from xjax.models._bridge import from_linen as from_linen
from xjax.models._bridge import from_nnx as from_nnx
from xjax.models._bridge import model_from_nnx as model_from_nnx
from xjax.models._checkpoint import restore_checkpoint as restore_checkpoint
from xjax.models._checkpoint import save_checkpoint as save_checkpoint
from xjax.models._efficientnet import efficientnet_lite0 as efficientnet_lite0
from xjax.models._efficientnet import efficientnet_lite1 as efficientnet_lite1
from xjax.models._efficientnet import efficientnet_lite2 as efficientnet_lite2
from xjax.models._efficientnet import imagenet_class_names as imagenet_class_names
from xjax.models._precision import with_precision as with_precision
from xjax.models._resnet import resnet18 as resnet18
from xjax.models._resnet import resnet50 as resnet50
from xjax.models._small_cnn import FASHION_MNIST_CLASSES as FASHION_MNIST_CLASSES
from xjax.models._small_cnn import small_cnn as small_cnn
from xjax.models._torch_reader import UnreadableCheckpointError as UnreadableCheckpointError
from xjax.models._torch_reader import UnsafeCheckpointError as UnsafeCheckpointError
from xjax.models._torch_reader import load_torch_checkpoint as load_torch_checkpoint
from xjax.models._vit import vit_tiny as vit_tiny
from xjax.models._weights import load_state_dict as load_state_dict
from xjax.models._weights import to_state_dict as to_state_dict
from xjax.models._zoo import ZOO as ZOO
from xjax.models._zoo import get_model as get_model

__all__ = [
    "FASHION_MNIST_CLASSES",
    "UnreadableCheckpointError",
    "UnsafeCheckpointError",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "from_linen",
    "from_nnx",
    "imagenet_class_names",
    "load_state_dict",
    "load_torch_checkpoint",
    "ZOO",
    "get_model",
    "model_from_nnx",
    "resnet18",
    "resnet50",
    "restore_checkpoint",
    "save_checkpoint",
    "small_cnn",
    "to_state_dict",
    "vit_tiny",
    "with_precision",
]
