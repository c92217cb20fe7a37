"""From image bytes to class probabilities: the model contract, preprocessing, the engine and its batcher,
and the repository of served models. Nothing here knows about HTTP."""
