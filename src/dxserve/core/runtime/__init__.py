"""Model runtime: the model repository, manifests and ONNX Runtime sessions."""
