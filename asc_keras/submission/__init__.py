"""DCASE 2025 Task 1 submissions: the inference package (`package`) and the code it ships
(`runtime`)."""
