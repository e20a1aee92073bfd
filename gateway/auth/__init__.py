"""Request verification: Google's signed tokens and the admin bearer token."""
