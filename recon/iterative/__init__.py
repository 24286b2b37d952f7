"""Iterative reconstruction: operators, wavelets, TV, LLR, CG/FISTA/PDHG, pics front end."""
