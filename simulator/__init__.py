"""A stand-in for Discord on loopback: REST, gateway, CDN and control endpoints."""
