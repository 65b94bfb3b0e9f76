"""The network and the losses."""
