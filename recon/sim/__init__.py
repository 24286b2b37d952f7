"""Simulated 7 T head acquisitions: phantom, receive array, noise, B0 map -> ISMRMRD files.

In-memory building blocks (all defined in physical space, LPS mm, so 2D/3D/oblique agree):

- :func:`recon.sim.phantom.brain_phantom` / :func:`~recon.sim.phantom.field_map`
- :func:`recon.sim.coils.coil_sensitivities`
- :func:`recon.sim.noise.noise_covariance` / :func:`~recon.sim.noise.correlated_noise`
- trajectories in :mod:`recon.noncart.trajectory`
"""

from recon.sim.coils import coil_sensitivities
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import brain_phantom, field_map

__all__ = [
    "brain_phantom",
    "coil_sensitivities",
    "correlated_noise",
    "field_map",
    "noise_covariance",
]
