"""recon: GPU-accelerated MRI reconstruction for high-field (7 T) scanners.

Raw k-space in ISMRMRD/HDF5 goes through noise prewhitening, coil compression,
coil sensitivity estimation, parallel imaging and compressed sensing, on CuPy
when a GPU is present and on NumPy/SciPy/FINUFFT otherwise.
"""

__version__ = "0.1.0"
