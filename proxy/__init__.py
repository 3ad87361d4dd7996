"""Marquee's asyncio load balancer (not built yet): it will front three app
instances on port 8000. See the load-balancer issue and DESIGN.md, "The proxy"."""
