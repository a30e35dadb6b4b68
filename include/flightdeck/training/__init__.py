"""Training, evaluation, ONNX export and registration: the stages of `train_register`."""
