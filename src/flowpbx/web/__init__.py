"""The HTTP layer: routes that parse, verify, call the engine's service and answer."""
