"""Marquee's load balancer: an asyncio HTTP/1.1 reverse proxy in front of the app
instances (``python -m proxy``). DESIGN.md, "The proxy", lists its duties; README.md
says how to run and operate it."""
