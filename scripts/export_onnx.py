#!/usr/bin/env python3
"""Export Keras ResNet50 to ONNX and verify it: a thin entry over resnet_service.export.convert."""

import sys

from resnet_service.export.convert import main

if __name__ == "__main__":
    sys.exit(main(prog="export_onnx.py"))
