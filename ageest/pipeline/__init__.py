"""From images to batches: the shared preprocessing cache, batch augmentation, the batch sources."""
