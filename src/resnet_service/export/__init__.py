"""Keras → ONNX: the export and its checks, architectures, your own models, fp16 and INT8. Needs the export
extra (TensorFlow); the service never imports it."""
