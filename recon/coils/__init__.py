"""Coil pipeline: noise prewhitening, coil compression, sensitivity maps, combination.

The functions the pipeline calls, on NumPy or CuPy arrays with the coils on axis 0 unless
told otherwise:

- :mod:`~recon.coils.prewhiten`: ``noise_covariance``, ``scale_covariance``,
  ``whitening_matrix``, ``prewhiten``; whole files: :mod:`~recon.coils.whiten_file`.
- :mod:`~recon.coils.compress`: ``svd_compression_matrix``, ``gcc_matrices``,
  ``apply_compression``, ``apply_gcc``; whole files: :mod:`~recon.coils.compress_file`.
- :mod:`~recon.coils.sensitivity`: ``espirit_maps``, ``walsh_maps``, ``inati_maps``,
  ``calibration_images``, ``noncartesian_calibration``; per file:
  :mod:`~recon.coils.sensmap_file`.
- :mod:`~recon.coils.combine`: ``combine_rss``, ``combine_roemer``, ``adaptive_combine``.
"""

from recon.coils.combine import adaptive_combine, combine_roemer, combine_rss
from recon.coils.compress import (
    apply_compression,
    apply_gcc,
    gcc_matrices,
    svd_compression_matrix,
)
from recon.coils.prewhiten import (
    noise_covariance,
    prewhiten,
    scale_covariance,
    whitening_matrix,
)
from recon.coils.sensitivity import espirit_maps, inati_maps, walsh_maps

__all__ = [
    "adaptive_combine",
    "apply_compression",
    "apply_gcc",
    "combine_roemer",
    "combine_rss",
    "espirit_maps",
    "gcc_matrices",
    "inati_maps",
    "noise_covariance",
    "prewhiten",
    "scale_covariance",
    "svd_compression_matrix",
    "walsh_maps",
    "whitening_matrix",
]
