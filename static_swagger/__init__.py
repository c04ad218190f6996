"""Vendored Swagger UI assets (swagger-ui-dist), shipped as package data; see README.md."""
