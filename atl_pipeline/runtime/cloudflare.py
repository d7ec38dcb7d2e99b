"""The address ranges Cloudflare's edge connects to origins from.

Published at https://www.cloudflare.com/ips-v4 and https://www.cloudflare.com/ips-v6 (and
the API's /client/v4/ips); unchanged from 2021 to the check made for this list (2026-11).
They are pinned here, reviewed like code, because the pipeline runs without the internet
on some machines. When Cloudflare adds a range, its edge addresses there are refused by
the routers (403) until this list is updated: fetch both pages and replace the tuples.
"""

CLOUDFLARE_RANGES = (
    "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
    "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
    "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
    "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32", "2a06:98c0::/29",
    "2c0f:f248::/32",
)
