"""Non-Cartesian reconstruction: NUFFT plans and backends, density compensation, Toeplitz
embedding, gridding and CG-SENSE reconstructions."""
