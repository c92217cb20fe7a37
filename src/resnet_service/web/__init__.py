"""What the HTTP routes of the service and of the v2 protocol share: the runtime state, its dependencies, uploads,
request ids, keys, the access log and metrics, and error answers."""
