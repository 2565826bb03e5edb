"""mpitrain: distributed SGD methods from recent papers, over MPI.

Local SGD (Stich 2019), biased compression with error feedback (Beznosikov et al.
2020) and asynchronous SGD with clipping (Erickson and Johansson 2026).
"""
__version__ = "0.1.0"
