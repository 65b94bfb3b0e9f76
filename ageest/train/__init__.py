"""Training one fold: the driver, the epoch engine, the resumable state, devices, the baselines."""
