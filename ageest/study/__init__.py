"""The study: what the workflow plans, each fold's outputs, gather, statistics, plots."""
