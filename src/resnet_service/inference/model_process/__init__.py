"""RESNET_MODEL_PROCESS: one process holds the models, and every HTTP worker's batches run on them.

``host`` is that process; each worker's ``RemoteEngine`` stands in for an ``Engine`` and sends its batches there.
The rows and the probabilities travel through shared memory, the small messages around them over a Unix socket.
"""
