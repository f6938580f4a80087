"""Evaluation: the stages that evaluate a run (encode, fit samplers, generate, FID/KID,
precision/recall, latent geometry, figures) over one context, the metrics themselves,
the feature backbones (domain classifier, Inception-v3) and the metric-key registry.

Layer 5: imports :mod:`spherevae.training` and everything below it.
"""

from spherevae.evaluation.context import (
    EvalConfig,
    EvalContext,
    check_sample_memory,
    fid_unavailable,
    samplers_for,
)
from spherevae.evaluation.diagnostics import (
    collapse_stats,
    posterior_sigma_summary,
    reconstruction_metrics,
)
from spherevae.evaluation.domain import DomainClassifier, domain_backbone
from spherevae.evaluation.features import (
    FEATURE_BACKBONES,
    BackboneSpec,
    BackboneUnavailableError,
    backbone_extractor,
    check_backbone,
    extract_features,
)
from spherevae.evaluation.fid import (
    FID,
    KID,
    FeatureStats,
    fid_sample_warning,
    frechet_distance,
    frechet_distance_from_stats,
    kid,
)
from spherevae.evaluation.figures import draw_figures
from spherevae.evaluation.inception import (
    FID_WEIGHTS_URL,
    WEIGHTS_ENV,
    InceptionV3Features,
    InceptionWeightsNotFoundError,
    WrongWeightsError,
    inception_backbone,
    load_inception_weights,
)
from spherevae.evaluation.knn import PR_MAX_POINTS, knn_accuracy, precision_recall
from spherevae.evaluation.metric_info import (
    GROUPS,
    KEYS,
    METRICS,
    MetricInfo,
    better,
    comparable_keys,
    describe,
    format_table,
    metric_key,
)
from spherevae.evaluation.pipeline import (
    PIPELINE,
    TANGENT_NOISE_SCALES,
    Stage,
    encode,
    evaluate_run,
    fit_samplers,
    generate,
    generation_metrics,
    latent_geometry,
    load_context,
    tangent_noise_fids,
)

__all__ = [
    "FEATURE_BACKBONES",
    "FID",
    "FID_WEIGHTS_URL",
    "GROUPS",
    "KEYS",
    "KID",
    "METRICS",
    "PIPELINE",
    "PR_MAX_POINTS",
    "TANGENT_NOISE_SCALES",
    "WEIGHTS_ENV",
    "BackboneSpec",
    "BackboneUnavailableError",
    "DomainClassifier",
    "EvalConfig",
    "EvalContext",
    "FeatureStats",
    "InceptionV3Features",
    "InceptionWeightsNotFoundError",
    "MetricInfo",
    "Stage",
    "WrongWeightsError",
    "backbone_extractor",
    "better",
    "check_backbone",
    "check_sample_memory",
    "collapse_stats",
    "comparable_keys",
    "describe",
    "domain_backbone",
    "draw_figures",
    "encode",
    "evaluate_run",
    "extract_features",
    "fid_sample_warning",
    "fid_unavailable",
    "fit_samplers",
    "format_table",
    "frechet_distance",
    "frechet_distance_from_stats",
    "generate",
    "generation_metrics",
    "inception_backbone",
    "kid",
    "knn_accuracy",
    "latent_geometry",
    "load_context",
    "load_inception_weights",
    "metric_key",
    "posterior_sigma_summary",
    "precision_recall",
    "reconstruction_metrics",
    "samplers_for",
    "tangent_noise_fids",
]
