"""Optional integrations with other packages, each imported only by the sites that use it."""
