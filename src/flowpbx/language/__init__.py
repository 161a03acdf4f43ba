"""The flow language: YAML text → located values → JSON Schema → typed nodes → checks → `Flow`."""
