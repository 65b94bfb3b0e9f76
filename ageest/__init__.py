"""ageest: leave-one-person-out age estimation on FG-NET (mean-variance loss vs softmax)."""

__version__ = "0.1.0"
