"""The TAU22 dataset: reader, waveform cache, augmentations, tf.data pipeline, synthetic data."""
