"""Models: the ResNet VAE of the paper (encoder, decoder, presets, layers), the adapter
that lets any ``encode``/``decode`` module be trained and saved, model specs (JSON that
rebuilds a model without pickle), and batched inference (encode a data set, decode latents).

Layer 3: imports :mod:`spherevae.geometry` and :mod:`spherevae._utils`.
"""

from spherevae.models.adapter import ModelAdapter, VAEModel, as_vae_model, check_vae_like
from spherevae.models.config import MODEL_PRESETS, ModelConfig
from spherevae.models.inference import decode_samples, encode_dataset, model_method, sampler_latents
from spherevae.models.layers import BLOCKS, NORMS, UPSAMPLERS, PostActBlock, PreActBlock
from spherevae.models.source import class_path, import_model_class, is_importable, source_of
from spherevae.models.spec import model_from_spec, model_spec
from spherevae.models.vae import VAE, Decoder, Encoder, VAEOutput

__all__ = [
    "BLOCKS",
    "MODEL_PRESETS",
    "NORMS",
    "UPSAMPLERS",
    "VAE",
    "Decoder",
    "Encoder",
    "ModelAdapter",
    "ModelConfig",
    "PostActBlock",
    "PreActBlock",
    "VAEModel",
    "VAEOutput",
    "as_vae_model",
    "check_vae_like",
    "class_path",
    "decode_samples",
    "encode_dataset",
    "import_model_class",
    "is_importable",
    "model_from_spec",
    "model_method",
    "model_spec",
    "sampler_latents",
    "source_of",
]
