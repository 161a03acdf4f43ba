"""The REST API: JSON in and out, an API key on every request, one OpenAPI document.

Each body is declared once, as a msgspec Struct in `shapes`; the same declaration validates
requests, encodes responses and becomes the OpenAPI schema (`openapi`).
"""
