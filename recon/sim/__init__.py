"""Simulated 7 T head acquisitions: phantom, receive array, noise, B0 map -> ISMRMRD files.

In-memory building blocks (all defined in physical space, LPS mm, so 2D/3D/oblique agree):

- :func:`recon.sim.phantom.brain_phantom` / :func:`~recon.sim.phantom.field_map`
- :func:`recon.sim.coils.coil_sensitivities`
- :func:`recon.sim.noise.noise_covariance` / :func:`~recon.sim.noise.correlated_noise`
- trajectories in :mod:`recon.noncart.trajectory`
- simultaneous multi-slice data: :func:`recon.sim.sms.simulate_sms`; EPI files:
  :func:`recon.sim.epi.simulate_epi`

Files: :func:`simulate` (``recon.sim.simulate(path, SimSpec(...))``, :mod:`recon.sim.scan`)
writes a real ISMRMRD file and ``<file>.truth.npz`` and returns the :class:`GroundTruth`;
``recon simulate`` is its command line.
"""

from recon.sim.coils import coil_sensitivities
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import brain_phantom, field_map
from recon.sim.scan import GroundTruth, simulate
from recon.sim.sms import simulate_sms
from recon.sim.spec import SimSpec

__all__ = [
    "GroundTruth",
    "SimSpec",
    "brain_phantom",
    "coil_sensitivities",
    "correlated_noise",
    "field_map",
    "noise_covariance",
    "simulate",
    "simulate_sms",
]
