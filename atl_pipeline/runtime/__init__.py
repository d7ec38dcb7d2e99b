"""The embedded local runtime: services as processes under supervisord, Caddy in front.

Everything lives under `.atl/runtime/`: supervisord's configuration, socket and logs,
one program group per service release, and Caddy's configuration, certificates and
local CA.
"""
