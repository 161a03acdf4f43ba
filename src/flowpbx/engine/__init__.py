"""The call engine: events in, (state, actions, call events) out; the service runs it per call."""
