"""The Open Inference Protocol v2 (KServe, Triton): its messages and wire encoding, and its routes."""
