"""Layer 4: the /v1 gateway, a lean ASGI app with no models of its own. Imports the layers below it (accounts,
catalog, billing), never the site."""
