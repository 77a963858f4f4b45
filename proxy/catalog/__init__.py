"""Layer 2: the catalog of providers, models, prices and routes; its import from TOML, its services, and the
immutable snapshot the gateway serves from. Imports only portal.accounts."""
