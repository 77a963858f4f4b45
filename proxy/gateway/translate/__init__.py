"""Pure translations between the APIs the gateway serves and the ones its upstreams speak."""
