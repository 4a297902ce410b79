"""HTTP plumbing: strict bodies, request ids, security headers, logs, OpenAPI fixes, health."""
